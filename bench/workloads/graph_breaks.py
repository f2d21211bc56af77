"""A function with three Dynamo graph breaks: four graphs, three resume functions."""
import math

import torch

from .base import Built, seeded

DESCRIPTION = "function with 3 graph breaks (4 graphs + 3 resume functions)"


def graph_breaks_fn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    h = torch.tanh(x @ w) * 2.0 + x
    torch._dynamo.graph_break()
    h = torch.softmax(h @ w.t(), dim=-1) + torch.sigmoid(h)
    torch._dynamo.graph_break()
    h = torch.nn.functional.layer_norm(h, h.shape[-1:]) * 0.5 + h.relu()
    torch._dynamo.graph_break()
    return h.sum(dim=-1, keepdim=True) + torch.cos(h)


def build(batch: int = 64, width: int = 256) -> Built:
    seeded()
    x = torch.randn(batch, width)
    w = torch.randn(width, width) / math.sqrt(width)
    return Built(graph_breaks_fn, (x, w))
