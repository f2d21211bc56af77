#!/usr/bin/env python3
"""`make demo`: a cold start, then a warm start that traces nothing.

    python bench/demo.py [--workload transformer] [--keep] [-v]

1. A fresh Python process compiles a small stack of hand-written transformer blocks with
   ``precompile.cached`` into an empty temporary cache (fresh PRECOMPILE_CACHE_DIR,
   TORCHINDUCTOR_CACHE_DIR and TMPDIR), and saves the package.
2. A second fresh process, with ``torch.compiler.set_stance("fail_on_recompile")``, loads the
   package from the same cache dir and runs the model without tracing a single frame.

Prints both times to first output, the speed-up, whether outputs match eager, and the frames
the warm process traced. Exits non-zero if the warm process traced anything, a child failed,
or an output did not match eager. The temporary directory is removed unless --keep.
"""
import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import warm_start  # (does not import torch in this process)


def _plural(n, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _work(res: dict) -> str:
    return (f"{_plural(res.get('frames_traced'), 'frame')} traced, "
            f"{_plural(res.get('codegens'), 'Inductor codegen')}, "
            f"{_plural(res.get('cpp_builds'), 'C++ build')}")


def _match(res: dict) -> str:
    if res.get("matches_eager") is None:
        return "not checked"
    diff = res.get("max_abs_diff")
    diff_s = f"max abs diff {diff:.1e}" if isinstance(diff, float) else "no diff"
    return f"{'yes' if res['matches_eager'] else 'NO'} ({diff_s})"


def _failure(res: dict, verbose: bool) -> None:
    print(f"      FAILED: {res.get('error') or 'output does not match eager'}")
    tail = res.get("traceback") or res.get("stderr_tail")
    if tail:
        lines = tail.rstrip().splitlines()
        shown = lines if verbose else lines[-15:]
        print("      " + "\n      ".join(shown))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="transformer",
                    help="workload from bench/workloads.py (default: transformer)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary cache directory")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per process")
    ap.add_argument("-v", "--verbose", action="store_true", help="full tracebacks on failure")
    args = ap.parse_args(argv)

    cold_mode = warm_start.MODES["precompile_cold"]
    warm_mode = warm_start.MODES["precompile_warm"]
    scratch = tempfile.mkdtemp(prefix="precompile_demo_")
    dirs = warm_start.slot_dirs(scratch, [cold_mode, warm_mode])
    problems: list[str] = []

    print("precompile demo: torch.compile warm starts that trace nothing\n")
    print(f"  model:      {args.workload} "
          f"({'4 hand-written transformer blocks, d=256, 4 heads, seq 64, batch 4' if args.workload == 'transformer' else 'see bench/workloads/'})")
    print("  backend:    inductor (CPU)")
    print(f"  cache dir:  {dirs['precompile:' + cold_mode.precompile]}")
    print(f"              ({'kept' if args.keep else 'removed at the end; --keep keeps it'})\n")
    try:
        print("[1/2] Cold start: a fresh process compiles the model with precompile.cached,")
        print("      starting from empty caches. Dynamo traces, Inductor generates and builds")
        print("      C++ kernels; on a small machine this takes a while (20-40 s) ...", flush=True)
        cold = warm_start.run_child(cold_mode, args.workload,
                                    warm_start.child_env(cold_mode, dirs), args.timeout)
        if cold.get("error") or cold.get("ttfo_s") is None:
            _failure(cold, args.verbose)
            print("\nThe cold start failed; nothing to warm-start from.")
            return 1
        saves = (cold.get("precompile_stats") or {}).get("saves", 0)
        print(f"      first output after {cold['ttfo_s']:.1f} s ({_work(cold)})")
        print(f"      package saved: {'yes' if saves else 'NO'}\n", flush=True)
        if not saves:
            problems.append("the cold process saved no package")

        print("[2/2] Warm start: a second fresh process loads the package from the same cache")
        print('      dir, with torch.compiler.set_stance("fail_on_recompile") on ...', flush=True)
        warm = warm_start.run_child(warm_mode, args.workload,
                                    warm_start.child_env(warm_mode, dirs), args.timeout)
        if warm.get("error") or warm.get("ttfo_s") is None:
            _failure(warm, args.verbose)
            problems.append(f"the warm process failed: {warm.get('error')}")
        else:
            print(f"      first output after {warm['ttfo_s']:.1f} s ({_work(warm)})\n")
    finally:
        if args.keep:
            print(f"(kept {scratch})")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    if warm.get("ttfo_s") is not None:
        speedup = cold["ttfo_s"] / warm["ttfo_s"]
        floor = warm.get("import_torch_s")
        print("Result")
        print(f"  cold start (compile + save):   {cold['ttfo_s']:.1f} s to first output")
        print(f"  warm start (load package):     {warm['ttfo_s']:.1f} s to first output"
              + (f" (of which `import torch`: {floor:.1f} s)" if floor else ""))
        print(f"  speed-up:                      {speedup:.1f}x")
        print(f"  output matches eager:          cold {_match(cold)}, warm {_match(warm)}")
        frames = warm.get("frames_traced")
        print(f"  frames traced by warm process: {frames} (fail_on_recompile was on)")
        if frames != 0:
            problems.append(f"the warm process traced {frames} frame(s); expected 0")
        for name, res in (("cold", cold), ("warm", warm)):
            if not res.get("matches_eager"):
                problems.append(f"the {name} output does not match eager "
                                f"(max abs diff {res.get('max_abs_diff')})")
        for note in dict.fromkeys([*cold.get("notes", []), *warm.get("notes", [])]):
            print(f"  note: {note}")
        misses = (warm.get("precompile_stats") or {}).get("miss_reasons") or []
        for reason in misses:
            print(f"  precompile miss: {reason}")

    print()
    if problems:
        for p in problems:
            print(f"FAIL: {p}")
        return 1
    print("PASS: the warm process reused the compiled model without tracing anything.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
