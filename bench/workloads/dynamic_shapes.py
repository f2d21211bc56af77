"""Dynamic shapes: one module called with 4 batch sizes under torch.compile's default
``dynamic=None`` (the first size compiles a static graph, the second recompiles with a
dynamic batch dimension, the rest reuse it). The output is the list of the 4 outputs, so
"time to first output" is the time until all four calls have returned."""
import torch
from torch import nn

from .base import Built, infer, seeded

DESCRIPTION = "LayerNorm-MLP called with batch 8, 16, 24, 40 (default dynamic=None)"
SIZES = (8, 16, 24, 40)


class Net(nn.Module):
    def __init__(self, width: int = 256) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc2(torch.nn.functional.silu(self.fc1(self.ln(x))))
        return torch.softmax(h + x, dim=-1)


def build(width: int = 256) -> Built:
    seeded()
    model = Net(width).eval()
    inputs = tuple(torch.randn(n, width) for n in SIZES)
    return Built(model, inputs, run=lambda fn, xs: [infer(fn, (x,)) for x in xs])
