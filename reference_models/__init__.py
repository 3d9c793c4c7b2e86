"""PyTorch reference models of FactorQVAE and its baselines, datasets and training."""
