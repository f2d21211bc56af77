"""Benchmark workloads, one module each. This registry does not import torch (the suite's
parent process never does); ``get(name)`` imports the workload's module.

A workload module defines ``DESCRIPTION`` and ``build() -> Built`` (see ``base.py``). To
add one, write the module and add its name to ``NAMES``. ``build()`` may raise
``base.Skip`` when an optional dependency is missing.
"""
from __future__ import annotations

import importlib
from types import ModuleType

# name -> module (in bench/workloads/)
NAMES: dict[str, str] = {
    "mlp": "mlp",
    "transformer": "transformer",
    "convnet": "convnet",
    "graph_breaks": "graph_breaks",
    "train_step": "train_step",
    "dynamic_shapes": "dynamic_shapes",
    "gpt2": "gpt2",  # optional: needs transformers
    "bert": "bert",  # optional: needs transformers
}
OPTIONAL = {"gpt2", "bert"}


def module(name: str) -> ModuleType:
    if name not in NAMES:
        raise SystemExit(f"unknown workload {name!r}; known: {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{NAMES[name]}")


def build(name: str):
    return module(name).build()
