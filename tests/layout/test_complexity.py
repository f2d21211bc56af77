"""Contract: the library stays simple to read, measured as radon measures it (cyclomatic
complexity: 1 + the branches of a function, method or class): the average over
``precompile/`` and ``cache_backends/`` stays at or under 3.0 and no block ranks C (over 10
branches) or worse. JAX's compilation cache and filelock sit at 2.3-2.6; a new branch that
pushes past either line wants a function of its own or a table instead."""
from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_rank, cc_visit

ROOT = Path(__file__).resolve().parents[2]
MAX_AVERAGE = 3.0
WORST_RANK = "B"  # at most 10


def _blocks() -> list[tuple[str, str, int]]:
    """(file, name, complexity) for every function, method and class radon reports."""
    return [(str(path.relative_to(ROOT)), block.fullname, block.complexity)
            for package in ("precompile", "cache_backends")
            for path in sorted((ROOT / package).rglob("*.py"))
            for block in cc_visit(path.read_text())]


def test_average_complexity_stays_at_or_under_three() -> None:
    blocks = _blocks()
    average = sum(c for _, _, c in blocks) / len(blocks)
    worst = sorted(blocks, key=lambda b: -b[2])[:10]
    assert average <= MAX_AVERAGE, (
        f"average cyclomatic complexity {average:.3f} over {len(blocks)} blocks is above "
        f"{MAX_AVERAGE}; the most complex now:\n" + "\n".join(f"  {b}" for b in worst))


def test_no_function_ranks_worse_than_b() -> None:
    too_complex = [b for b in _blocks() if cc_rank(b[2]) > WORST_RANK]
    assert not too_complex, ("split these into named steps or tables (radon rank above "
                             f"{WORST_RANK}):\n" + "\n".join(f"  {b}" for b in too_complex))
