"""A convolutional beta-VAE for small images (16x16 digits by default).

The loss is the negative ELBO with a weighted KL term,

    BCE(x, decoder(z)) + beta_t * KL(N(mu, sigma^2) || N(0, I)),   z = mu + sigma * eps,

with the KL term computed in closed form from the encoder's (mu, log sigma^2), so that it
regularises the encoder through its gradient (the Defuse reference code computes it on
samples drawn without gradient, which leaves the latent space unregularised). beta_t rises
linearly from 0 to beta over the first `warmup` epochs (KL annealing), which keeps the
decoder from ignoring z early on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from faultlines.data.sources import Source
from faultlines.errors import SettingsError
from faultlines.train import fit, reset_weights


class VAE(nn.Module):
    """Convolutional beta-VAE.

    Args:
        latent_dim: size of z (8 for 16x16 digits).
        in_channels, size: image shape; size must be divisible by 4.
        width: channels of the first conv layer (the second has twice as many).
        beta: weight of the KL term after warm-up.
    """

    def __init__(self, latent_dim: int = 8, in_channels: int = 1, size: int = 16, width: int = 32, beta: float = 1.0):
        super().__init__()
        if size % 4 or latent_dim < 1:
            raise SettingsError(f"the VAE needs an image size divisible by 4 and latent_dim >= 1 (got {size}, {latent_dim})")
        self.config = dict(latent_dim=latent_dim, in_channels=in_channels, size=size, width=width, beta=beta)
        self.latent_dim, self.beta, self.kl_weight = latent_dim, beta, beta
        flat = 2 * width * (size // 4) ** 2
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(), nn.Linear(128, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, flat), nn.ReLU(),
            nn.Unflatten(1, (2 * width, size // 4, size // 4)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, in_channels, 4, 2, 1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x), each (N, latent_dim)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] for latent codes z."""
        return torch.sigmoid(self.decoder(z))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of BCE reconstruction (summed over pixels) + kl_weight * KL."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum") / len(x)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / len(x)
        return recon + self.kl_weight * kl

    def fit(self, data: Source, epochs: int = 80, batch_size: int = 64, lr: float = 2e-3, warmup: int = 10, seed: int = 0, quiet: bool = True) -> VAE:
        """Train from scratch on `data`'s inputs (labels unused) with KL annealing; returns self.

        The weights are re-initialised from `seed` first, so the same call gives the same VAE.
        """

        def anneal(epoch: int) -> None:
            self.kl_weight = self.beta * min(1.0, epoch / max(warmup, 1))

        reset_weights(self, seed)
        fit(self, data, None, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0, seed=seed,
            loss_fn=lambda m, x, y: m.loss(x), on_epoch=anneal, quiet=quiet, description="training VAE")
        self.kl_weight = self.beta
        return self

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder output at the posterior mean: the VAE's reconstruction of x."""
        self.eval()
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """n images decoded from the prior N(0, I)."""
        self.eval()
        z = torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))
        return self.decode(z).numpy()
