"""The fuzz/soak job (bench/soak.py) runs, briefly: every target, no finding. CI runs it
for two minutes (.ci/run)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def test_a_short_soak_finds_nothing() -> None:
    proc = subprocess.run([sys.executable, str(SOAK), "--seconds", "8", "--seed", "7"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    for target in ("decode", "archive"):
        assert f"{target}:" in proc.stdout and "0 findings" in proc.stdout, proc.stdout


def test_a_soak_finding_fails_the_job(tmp_path: Path) -> None:
    """A reader that raises an untyped error is reported, with the seed to replay it."""
    script = tmp_path / "broken_soak.py"
    script.write_text(SOAK.read_text().replace(
        "TARGETS: dict[str, Callable[[], Target]] = {",
        "def _broken() -> Target:\n"
        "    def read(data: bytes) -> None:\n"
        "        raise KeyError('untyped')\n"
        "    return Target(lambda rng: b'x', read, (ValueError,), lambda n: 1 << 30)\n\n\n"
        "TARGETS: dict[str, Callable[[], Target]] = {'broken': _broken, "))
    proc = subprocess.run([sys.executable, str(script), "--seconds", "1", "--seed", "3",
                           "--targets", "broken"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 1 and "KeyError" in proc.stdout and "seed 3" in proc.stdout, (
        proc.stdout + proc.stderr)
