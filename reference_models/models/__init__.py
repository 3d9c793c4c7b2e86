"""reference_models.models"""
