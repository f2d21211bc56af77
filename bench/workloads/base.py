"""Benchmark workloads: small, deterministic models and functions to compile.

Every workload is a ``Workload`` with a ``build()`` that returns a ``Built``: the thing to
compile (an ``nn.Module`` or a plain function), the example inputs, and how to run it. Models
are built under a fixed seed, so every fresh process gets the same weights and inputs and the
outputs of different processes (and of eager) can be compared.

To add a workload (say, a training step), write a ``build_*`` function that returns a
``Built`` and register it in ``WORKLOADS``. A training step would compile a *function*
``step(x, y)`` that runs forward and backward and returns the loss and the gradients; set
``Built.run`` if calling it takes more than ``target(*inputs)``, and ``Built.reset`` if a call
changes state that a second (eager reference) call must start from again.

This module imports torch; bench/warm_start.py only imports it inside the child processes,
after starting the clock.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SEED = 0


@dataclasses.dataclass
class Built:
    """One ready-to-run instance of a workload."""

    target: Any  # what gets compiled: an nn.Module or a function
    inputs: tuple[Any, ...]
    # How to produce an output from a callable (the compiled target or the eager target).
    # The default is inference: ``fn(*inputs)`` under torch.no_grad().
    run: Callable[[Callable[..., Any], tuple[Any, ...]], Any] = (
        lambda fn, inputs: _infer(fn, inputs))
    # Called before the eager reference run, to undo state the compiled run changed.
    reset: Callable[[], None] | None = None


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    description: str
    build: Callable[[], Built]


def _infer(fn: Callable[..., Any], inputs: tuple[Any, ...]) -> Any:
    with torch.no_grad():
        return fn(*inputs)


def _seeded() -> None:
    torch.manual_seed(SEED)


# --------------------------------------------------------------------------- MLP


def build_mlp(layers: int = 8, width: int = 512, batch: int = 32) -> Built:
    _seeded()
    mods: list[nn.Module] = []
    for _ in range(layers):
        mods += [nn.Linear(width, width), nn.GELU()]
    model = nn.Sequential(*mods).eval()
    x = torch.randn(batch, width)
    return Built(model, (x,))


# ------------------------------------------------------------------- transformer


class Attention(nn.Module):
    """Hand-written causal multi-head self-attention (matmul + softmax, no SDPA)."""

    def __init__(self, d_model: int, n_heads: int, max_len: int) -> None:
        super().__init__()
        assert d_model % n_heads == 0
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        mask = torch.tril(torch.ones(max_len, max_len, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)
        q = q.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~self.mask[:t, :t], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(b, t, c)
        return self.proj(out)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: attention and a GELU MLP, each with a residual."""

    def __init__(self, d_model: int, n_heads: int, max_len: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, max_len)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return x


class TransformerStack(nn.Module):
    def __init__(self, n_blocks: int, d_model: int, n_heads: int, max_len: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(d_model, n_heads, max_len) for _ in range(n_blocks))
        self.ln_f = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)


def build_transformer(n_blocks: int = 4, d_model: int = 256, n_heads: int = 4,
                      seq: int = 64, batch: int = 4) -> Built:
    _seeded()
    model = TransformerStack(n_blocks, d_model, n_heads, seq).eval()
    x = torch.randn(batch, seq, d_model)
    return Built(model, (x,))


# ------------------------------------------------------------------- graph break


def graph_break_fn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Two tensor computations with one Dynamo graph break between them (two graphs plus a
    resume function)."""
    h = torch.tanh(x @ w) * 2.0 + x
    torch._dynamo.graph_break()
    return torch.softmax(h @ w.t(), dim=-1) + torch.sigmoid(h).sum(dim=-1, keepdim=True)


def build_graph_break(batch: int = 64, width: int = 256) -> Built:
    _seeded()
    x = torch.randn(batch, width)
    w = torch.randn(width, width) / math.sqrt(width)
    return Built(graph_break_fn, (x, w))


# ---------------------------------------------------------------------- registry


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("mlp", "MLP, 8 x Linear(512) + GELU, batch 32", build_mlp),
        Workload("transformer", "4 hand-written transformer blocks, d=256, 4 heads, "
                 "seq 64, batch 4", build_transformer),
        Workload("graph_break", "function with one graph break (torch._dynamo.graph_break)",
                 build_graph_break),
    )
}


def get(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise SystemExit(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None
