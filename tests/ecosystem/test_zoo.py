"""The models and loops people compile, cold then warm in fresh processes (tests/zoo/).

Each scenario is a user program: its cold process compiles and stores, its warm process (a
new process, same cache) must trace nothing (``fail_on_recompile``), store nothing new and
match eager. Backend ``aot_eager`` (see tests/zoo/_zoo.py); bench/zoo.py runs the same
programs with Inductor and reports times beside PyTorch's own options.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import Run, Scenario

ZOO = Path(__file__).resolve().parents[1] / "zoo"
HF = ["llama", "qwen2", "mistral", "mixtral", "mamba", "t5", "vit", "bert_train", "generate"]
PLAIN = ["optimizer", "autocast", "recursion"]


def _scenario(tmp_path: Path, name: str) -> Scenario:
    for f in ZOO.glob("*.py"):
        shutil.copy(f, tmp_path / f.name)
    return Scenario(tmp_path, name)


def _cold_then_warm(tmp_path: Path, name: str, **env: str) -> tuple[Run, Run]:
    sc = _scenario(tmp_path, name)
    sc.path = tmp_path / f"{name}.py"
    cold = sc.run("cold", **env)
    if "SKIP transformers" in cold.stdout:
        pytest.skip("transformers is not installed")
    cold.assert_ok()
    assert cold.stats["bypasses"] == 0, cold.describe()
    assert sc.packages(), cold.describe()
    return cold, sc.run("warm", **env)


@pytest.mark.parametrize("name", HF + PLAIN)
def test_warm_start(tmp_path: Path, name: str) -> None:
    _, warm = _cold_then_warm(tmp_path, name)
    warm.assert_warm()
    assert warm.stats["saves"] == 0 and warm.stats["misses"] == 0, warm.describe()
    assert warm.result["extra"]["max_diff"] <= 1e-4, warm.describe()


def test_copies_of_a_compiled_model(tmp_path: Path) -> None:
    """deepcopy / pickle / torch.save / state_dict work before and after the first call (the
    cold run also copies before it); the warm first call is a hit."""
    _, warm = _cold_then_warm(tmp_path, "copies", ZOO_COPIES_BEFORE="1")
    warm.assert_ok()
    assert warm.stats["hits"] == 1 and warm.stats["misses"] == 0, warm.describe()


def test_first_optimizer_step_of_a_fresh_job(tmp_path: Path) -> None:
    """AdamW, Adam and SGD with momentum with no state yet (a new job): Dynamo creates the
    state while it traces the first step, and a warm process makes the same state before the
    stored entry's guards look at it (precompile/record/first_step.py)."""
    _, warm = _cold_then_warm(tmp_path, "optimizer", ZOO_FRESH_STATE="1")
    warm.assert_warm()
    assert warm.stats["misses"] == 0 and warm.stats["recompile_reasons"] == [], warm.describe()


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_ddp_two_ranks(tmp_path: Path, backend: str) -> None:
    """DDPOptimizer splits the graph at bucket boundaries; with Inductor each piece is its
    own compiled graph in the package."""
    _, warm = _cold_then_warm(tmp_path, "ddp", ZOO_BACKEND=backend)
    warm.assert_ok()
    for rank, stats in warm.result["extra"]["ranks"].items():
        assert stats["frames_traced"] == 0 and stats["hits"] >= 1, (rank, warm.describe())
