"""MLP: 8 x (Linear(512) + GELU), batch 32, inference."""
from torch import nn
import torch

from .base import Built, seeded

DESCRIPTION = "MLP, 8 x Linear(512) + GELU, batch 32"


def build(layers: int = 8, width: int = 512, batch: int = 32) -> Built:
    seeded()
    mods: list[nn.Module] = []
    for _ in range(layers):
        mods += [nn.Linear(width, width), nn.GELU()]
    model = nn.Sequential(*mods).eval()
    return Built(model, (torch.randn(batch, width),))
