"""disentangle-eval: disentanglement metrics for latents from any encoder."""
__version__ = "0.1.0"
