"""reference_models.training"""
