"""A model with no nn.Linear at all, for the tests: built by a factory, as a user's would be."""

import torch.nn as nn


class AllConv(nn.Module):
    """Convolutions, then a global average over the image: logits are the 10 channels' means."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(32, 10, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.head(self.features(x))).flatten(1)


def build() -> AllConv:
    return AllConv()
