"""Generative models of the inputs: the VAE whose latent space Defuse searches."""

from faultlines.generative.vae import VAE

__all__ = ["VAE"]
