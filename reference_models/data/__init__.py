"""reference_models.data"""
