"""A small conv net (conv + BatchNorm + ReLU x3, pooling, linear head), inference."""
import torch
from torch import nn

from .base import Built, seeded

DESCRIPTION = "conv net: 3 x (Conv3x3 + BN + ReLU), avg-pool, Linear; 8 x 3 x 32 x 32"


def build(batch: int = 8) -> Built:
    seeded()
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).eval()
    return Built(model, (torch.randn(batch, 3, 32, 32),))
