"""Contract: one verdict per package, for the library and the command line.

``precompile verify``/``ls``/``prune``/``explain`` judge a stored package with the functions
the load path uses (``precompile.read.verdict``): a package is usable here exactly when a
first call would load it, the GPU check included (no GPU on this machine says so),
and ``prune --stale`` deletes only what no process here would ever load. Shared kernels
follow one retention rule (``cache_backends.blobs.kernel_may_go``) in eviction and pruning.
"""
from __future__ import annotations

import time

import pytest

from cache_backends.blobs import YOUNG_BLOB_SECONDS, kernel_may_go
from precompile import _torch
from precompile.errors import IncompatibleError
from precompile.format import envelope as fmt
from precompile.package import keys
from precompile.read import loading, verdict

H100 = {"cuda": {"gpu_name": "NVIDIA H100", "capability": [9, 0]}}


def _stored(meta: dict) -> verdict.StoredPackage:
    return verdict.StoredPackage("k", None, 1, None, None,
                                 env=fmt.Envelope(meta=meta, manifest={}, blobs={}))


def test_a_package_for_a_gpu_this_machine_lacks_is_incompatible() -> None:
    if _torch.gpu_info("cuda"):
        pytest.skip("this machine has a CUDA GPU")
    judged = verdict.judge(_stored({"factors": keys.system_factors(), "gpus": H100}))
    assert judged.status == "incompatible" and not judged.ok
    assert "this machine has no GPU" in judged.problems[0] and "H100" in judged.problems[0]


def test_the_load_path_and_the_verdict_say_the_same_thing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_torch, "gpu_info", lambda device: None)
    factors = {**keys.system_factors(), "torch": "0.0.1"}
    judged = verdict.judge(_stored({"factors": factors, "gpus": H100}))
    with pytest.raises(IncompatibleError) as raised:
        loading._check_system(factors, keys.system_factors(), H100)
    assert str(raised.value) == judged.problems[0]
    assert len(judged.problems) == 2  # torch and the GPU: every problem, not the first


def test_a_usable_package_is_ok_with_nothing_to_prune() -> None:
    pkg = _stored({"factors": keys.system_factors()})
    assert verdict.judge(pkg).status == "ok"
    assert verdict.never_loads(pkg) is None


def test_prune_stale_spares_a_gpu_package_but_not_another_torch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared cache serves machines with other GPUs; no machine here runs another torch."""
    monkeypatch.setattr(_torch, "gpu_info", lambda device: None)
    assert verdict.never_loads(_stored({"factors": keys.system_factors(), "gpus": H100})) is None
    other = _stored({"factors": {**keys.system_factors(), "torch": "0.0.1"}})
    assert "torch 0.0.1" in verdict.never_loads(other)


def test_statuses_are_one_vocabulary() -> None:
    refused = verdict.StoredPackage("k", None, 1, None, None, error="truncated")
    assert verdict.judge(refused).status == "corrupt"
    unsigned = _stored({"factors": keys.system_factors()})
    unsigned.signature_ok, unsigned.signature = False, "UNSIGNED"
    assert verdict.judge(unsigned).status == "bad-signature"
    assert {verdict.judge(refused).status, verdict.judge(unsigned).status} <= set(
        verdict.STATUSES)


def test_the_kernel_retention_rule() -> None:
    now = time.time()
    old, young = now - YOUNG_BLOB_SECONDS - 1, now - 1
    assert kernel_may_go("blob-a", set(), old, now)
    assert kernel_may_go("blob-a", set(), None, now)  # unknown age counts as old
    assert not kernel_may_go("blob-a", {"blob-a"}, old, now)  # a package names it
    assert not kernel_may_go("blob-a", set(), young, now)  # its package may be being written
