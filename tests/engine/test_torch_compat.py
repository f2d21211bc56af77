"""The per-release decisions of precompile/_torch/compat.py, on stand-in torch classes: each
difference takes the path its feature says, and a torch with neither feature gets the careful
one. (Each path runs for real in CI on the release that has it: .ci/run.)"""
from __future__ import annotations

import torch

from precompile._torch import compat


def test_release_is_read_from_any_version_string() -> None:
    assert compat.torch_release("2.15.0+cu132") == (2, 15)
    assert compat.torch_release("2.13.0+cpu") == (2, 13)
    assert compat.torch_release("2.16.0.dev20270101") == (2, 16)
    assert compat.torch_release("nightly") is None
    assert compat.torch_release() == compat.torch_release(torch.__version__)


def test_light_loads_only_on_checked_releases(monkeypatch) -> None:
    for version, checked in (("2.13.0+cpu", True), ("2.14.1", True), ("2.15.0+cu132", True),
                             ("2.16.0", False), ("2.12.1", False)):
        monkeypatch.setattr(torch, "__version__", version)
        assert compat.light_loads_checked() is checked, version
