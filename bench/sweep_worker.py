"""One process of the sweep: runs a batch of families, compiled and eager, and prints one
``RESULT {json}`` line per family (bench/sweep.py starts it, cold then warm, against one
precompile cache).

    python bench/sweep_worker.py cold|warm FAMILY[,FAMILY...] [--backend aot_eager]

Per family: build it (seeded), deep-copy an eager twin, wrap the model in
``precompile.cached(torch.compile(model, backend=...))``, run the forward under ``no_grad`` in
eval mode, then (if the family has a head for it) one training step (forward with labels,
backward) in train mode; the twin does the same eagerly, just before. Recorded: the frames
Dynamo traced for this family (its ``_compile`` calls: what ``fail_on_recompile`` would refuse),
precompile's counters and new miss reasons, seconds of the compiled and of the eager calls,
and the largest difference to eager (outputs, loss, gradients). A warm process does not set
``fail_on_recompile``: a miss compiles, the row says why, and the next family still runs.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import traceback
from typing import Any

import torch
import torch._dynamo  # noqa: F401  (up front: the first family of a batch does not pay it)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import precompile  # noqa: E402
import sweep_families  # noqa: E402
import sweep_families_other  # noqa: E402,F401  (registers diffusers and timm)

# Families share a process; a resumed frame of a library function they all call (a
# graph break in transformers' utilities) would otherwise hit Dynamo's per-code limit
# after a few families, which a user compiling one model never meets.
torch._dynamo.config.recompile_limit = 64
torch._dynamo.config.accumulated_recompile_limit = 4096
TRACED: dict[str, Any] = {"frames": 0, "names": [], "failed": []}


def _count_traced_frames() -> None:
    """Count the frames Dynamo traces (its ``_compile``), the ones ``fail_on_recompile``
    would refuse. ``counters["frames"]["total"]`` also counts frames Dynamo looks at and
    skips (no tensor in the frame, a generator), which a warm process meets again."""
    from torch._dynamo import convert_frame

    original = convert_frame._compile

    def counted(*args: Any, **kwargs: Any) -> Any:
        TRACED["frames"] += 1
        TRACED["names"].append(getattr(args[0], "co_qualname", "?"))
        try:
            return original(*args, **kwargs)
        except Exception as e:  # Dynamo gives up on the frame: it runs eagerly this call
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            TRACED["failed"].append(f"{getattr(args[0], 'co_qualname', '?')}: "
                                    f"{type(e).__name__}: {why}")
            raise

    convert_frame._compile = counted


_count_traced_frames()
COUNTED = ("hits", "misses", "saves", "bypasses", "frames_traced", "load_errors")
RTOL, ATOL = 1e-3, 1e-4


def tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor in a model output (ModelOutput, tuple, list, dict), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if hasattr(value, "to_tuple"):
        value = value.to_tuple()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors(v)]
    return []


def default_loss(out: Any) -> torch.Tensor:
    loss = getattr(out, "loss", None)
    return loss if loss is not None else tensors(out)[0].float().pow(2).mean()


def run_model(model: torch.nn.Module, fn: Any, case: sweep_families.Case) -> list[torch.Tensor]:
    """The forward (eval, no_grad) and the training step (train, backward) through ``fn``;
    the tensors to compare: outputs, loss, gradients."""
    model.eval()
    with torch.no_grad():
        out = [t.detach() for t in tensors(fn(**case.inputs))]
    if case.train is not None:
        model.train()
        loss = (case.loss or default_loss)(fn(**case.train))
        loss.backward()
        out.append(loss.detach())
        out += [p.grad for p in model.parameters() if p.grad is not None]
    return out


def max_diff(got: list[torch.Tensor], want: list[torch.Tensor]) -> tuple[float, bool]:
    if len(got) != len(want):
        return float("inf"), False
    worst, same = 0.0, True
    for g, w in zip(got, want):
        if g.shape != w.shape or g.dtype != w.dtype:
            return float("inf"), False
        if g.is_floating_point() and g.numel():
            worst = max(worst, (g.float() - w.float()).abs().max().item())
            same = same and bool(torch.allclose(g, w, rtol=RTOL, atol=ATOL))
        elif not g.is_floating_point():
            same = same and bool(torch.equal(g, w))
    return worst, same


def run_family(family: sweep_families.Family, backend: str) -> dict[str, Any]:
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    case = family.build()
    sweep_families._no_dropout(case.model)
    twin = copy.deepcopy(case.model)
    before, traced0, failed0 = precompile.stats(), TRACED["frames"], len(TRACED["failed"])
    names0 = len(TRACED["names"])
    seen0 = counters["frames"].get("total", 0)
    t0 = time.perf_counter()
    want = run_model(twin, twin, case)
    eager_s = time.perf_counter() - t0
    compiled = precompile.cached(torch.compile(case.model, backend=backend))
    t0 = time.perf_counter()
    got = run_model(case.model, compiled, case)
    compiled_s = time.perf_counter() - t0
    frames, seen = TRACED["frames"] - traced0, counters["frames"].get("total", 0) - seen0
    precompile.flush()
    after = precompile.stats()
    diff, same = max_diff(got, want)
    return {
        "frames": frames, "frames_seen": int(seen),
        "frames_traced_names": list(dict.fromkeys(TRACED["names"][names0:])),
        "frames_failed": list(dict.fromkeys(TRACED["failed"][failed0:])),
        "frames_failed_count": len(TRACED["failed"]) - failed0,
        **{k: after[k] - before[k] for k in COUNTED},
        "miss_reasons": after["miss_reasons"][len(before["miss_reasons"]):],
        "recompile_reasons": after["recompile_reasons"][len(before["recompile_reasons"]):],
        "compiled_s": compiled_s, "eager_s": eager_s, "max_diff": diff, "same": same,
        "train": case.train is not None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["cold", "warm"])
    ap.add_argument("families")
    ap.add_argument("--backend", default="aot_eager")
    args = ap.parse_args()
    by_name = {f.name: f for f in sweep_families.FAMILIES}
    for name in args.families.split(","):
        t0 = time.perf_counter()
        try:
            row = run_family(by_name[name], args.backend)
        except ModuleNotFoundError as e:
            if e.name != by_name[name].library:
                raise
            row = {"not_run": f"not run: {e.name} is not installed"}
        except Exception as e:  # noqa: BLE001 - one family's failure is its row, not the batch's
            row = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:400],
                   "traceback": traceback.format_exc()[-2000:]}
        row.update(family=name, phase=args.phase, wall_s=time.perf_counter() - t0,
                   process_cpu_s=time.process_time())
        print("RESULT " + json.dumps(row, default=str), flush=True)


if __name__ == "__main__":
    main()
