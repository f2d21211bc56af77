"""DistributedDataParallel with Inductor, as a user runs it: a script that starts its ranks
with ``torch.multiprocessing.spawn`` (tests/zoo/ddp_spawn.py), cold then warm in fresh
processes against one cache. The wrapped module's ``forward`` is the frame that holds the
model's compute: Dynamo compiles it through DDPOptimizer (precompile/_torch/ddp.py), and
the spawned ranks run the script as ``__mp_main__`` (names.module_globals)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ZOO = Path(__file__).resolve().parents[1] / "zoo"


def _run(tmp_path: Path, phase: str, **extra: str) -> dict[str, Any]:
    env = dict(os.environ, **extra, PRECOMPILE_CACHE_DIR=str(tmp_path / "cache"),
               TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PRECOMPILE_CACHE_URL", None)
    proc = subprocess.run([sys.executable, str(tmp_path / "ddp_spawn.py"), phase],
                          capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{phase}: rc={proc.returncode}\n{proc.stderr[-6000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def test_ddp_inductor_spawned_ranks_warm_start(tmp_path: Path) -> None:
    shutil.copy(ZOO / "ddp_spawn.py", tmp_path / "ddp_spawn.py")
    cold = _run(tmp_path, "cold")
    assert all(r["same"] and r["bypasses"] == 0 for r in cold.values()), cold
    warm = _run(tmp_path, "warm")
    for rank, report in warm.items():
        assert report["same"], (rank, warm)
        assert report["frames"] == 0 and report["hits"] >= 1, (rank, warm)
        assert report["misses"] == 0 and report["saves"] == 0, (rank, warm)


def test_ddp_split_by_buckets_warm_starts_as_one_graph(tmp_path: Path) -> None:
    """A model larger than one gradient bucket: DDPOptimizer splits its graph, which torch
    never caches, and the reason says so with the fix (``_torch/ddp.py``); with that fix,
    ``optimize_ddp = False``, both ranks warm-start with nothing traced and eager's results."""
    for where in (tmp_path / "split", tmp_path / "whole"):
        where.mkdir()
        shutil.copy(ZOO / "ddp_spawn.py", where / "ddp_spawn.py")
    split = _run(tmp_path / "split", "cold", BUCKETS="many")
    assert all(r["same"] and r["bypasses"] >= 1 for r in split.values()), split
    assert all(any("optimize_ddp = False" in why for why in r["miss_reasons"])
               for r in split.values()), split
    cold = _run(tmp_path / "whole", "cold", BUCKETS="many", OPTIMIZE_DDP="0")
    assert all(r["same"] and r["bypasses"] == 0 for r in cold.values()), cold
    warm = _run(tmp_path / "whole", "warm", BUCKETS="many", OPTIMIZE_DDP="0")
    for rank, report in warm.items():
        assert report["same"] and report["frames"] == 0 and report["hits"] >= 1, (rank, warm)
