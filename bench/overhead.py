#!/usr/bin/env python3
"""Per-call overhead and load-time scaling, each measured in fresh child processes.

    python bench/overhead.py guards [--entries 1,10,100]
    python bench/overhead.py frames [--frames 10,100,1000]

guards: steady-state cost of one call (Dynamo's guard evaluation) of a tiny function with
``dynamic=False`` compiled for N different input shapes (N cache entries), for a
precompile-reinstalled function (warm process, nothing traced) vs the same function under
plain torch.compile, and eager. Times calls on the shape compiled FIRST and the shape compiled
LAST, in µs/call (min over 5 rounds of ``--calls`` calls, time.perf_counter). backend="eager"
for both (guard evaluation does not depend on the backend; 100 Inductor compiles would take
minutes).

frames: load+install time as the number of frames grows, backend="eager"; a cold process
records, a warm one loads (``stats()["load_seconds"]``). Two layouts: ``funcs`` (default):
a generated module of N small functions, each decorated with precompile.cached (N packages of
one frame); ``breaks``: one generated function with N-1 graph breaks (one package of N
frames: the function and its resume functions; Dynamo's cold tracing and the package size
grow quadratically, so keep N <= 100).
"""
import time

_T0 = time.perf_counter()

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import warm_start  # noqa: E402 (torch-free)


# ------------------------------------------------------------------------ children


def _per_call_us(fn, x, calls: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            fn(x)
        best = min(best, (time.perf_counter() - t) / calls)
    return best * 1e6


def child_guards(mode: str, n: int, calls: int) -> dict:
    import torch

    torch._dynamo.config.recompile_limit = 10 ** 4
    torch._dynamo.config.accumulated_recompile_limit = 10 ** 6
    import overhead_fns

    res: dict = {"scenario": "guards", "mode": mode, "entries": n}
    xs = [torch.randn(k, 4) for k in range(1, n + 1)]
    if mode == "plain":
        fn = torch.compile(overhead_fns.tiny_plain, backend="eager", dynamic=False)
    else:
        import precompile

        fn = precompile.cached(overhead_fns.tiny, backend="eager", dynamic=False)
    if mode == "pc_warm":
        torch.compiler.set_stance("fail_on_recompile")
    t = time.perf_counter()
    for x in xs:
        fn(x)
    res["fill_s"] = time.perf_counter() - t
    from torch._dynamo.utils import counters

    res["frames_traced"] = int(counters["frames"].get("total", 0))
    if mode == "pc_cold":
        import precompile

        t = time.perf_counter()
        precompile.flush()
        res["flush_s"] = time.perf_counter() - t
        res["precompile_stats"] = precompile.stats()
        return res
    if mode == "pc_warm":
        import precompile

        res["precompile_stats"] = precompile.stats()
    res["us_first_compiled"] = _per_call_us(fn, xs[0], calls)
    res["us_last_compiled"] = _per_call_us(fn, xs[-1], calls)
    res["us_eager"] = _per_call_us(overhead_fns.tiny, xs[-1], calls)
    # make sure nothing recompiled while timing
    res["frames_traced_after"] = int(counters["frames"].get("total", 0))
    return res


def child_frames(mode: str, n_frames: int, gen_dir: str, kind: str) -> dict:
    sys.path.insert(0, gen_dir)
    import torch
    import precompile

    t_imp = time.perf_counter()
    import importlib

    mod = importlib.import_module(f"{kind}_{n_frames}")
    res: dict = {"scenario": "frames", "mode": mode, "frames": n_frames, "kind": kind,
                 "import_torch_s": t_imp - _T0}
    torch._dynamo.config.recompile_limit = 10 ** 4
    if kind == "breaks":
        fn = precompile.cached(mod.chain, backend="eager")
        raw = mod.chain
    else:
        fns = [precompile.cached(getattr(mod, f"f{i}"), backend="eager")
               for i in range(n_frames)]
        raws = [getattr(mod, f"f{i}") for i in range(n_frames)]

        def fn(x, fns=fns):
            for f in fns:
                x = f(x)
            return x

        def raw(x):
            for f in raws:
                x = f(x)
            return x
    x = torch.ones(4)
    if mode == "warm":
        torch.compiler.set_stance("fail_on_recompile")
    t = time.perf_counter()
    out = fn(x)
    res["first_call_s"] = time.perf_counter() - t
    res["ttfo_s"] = time.perf_counter() - _T0
    torch.compiler.set_stance("default")
    ref = raw(x)
    res["matches_eager"] = bool(torch.allclose(out, ref))
    from torch._dynamo.utils import counters

    res["frames_traced"] = int(counters["frames"].get("total", 0))
    t = time.perf_counter()
    precompile.flush()
    res["flush_s"] = time.perf_counter() - t
    st = precompile.stats()
    res["precompile_stats"] = st
    res["load_seconds"] = st.get("load_seconds")
    res["package_bytes"] = warm_start._dir_size(os.environ.get("PRECOMPILE_CACHE_DIR"))
    return res


def child_main(argv: list[str]) -> int:
    res: dict = {"error": None}
    try:
        if argv[0] == "guards":
            res.update(child_guards(argv[1], int(argv[2]), int(argv[3])))
        else:
            res.update(child_frames(argv[1], int(argv[2]), argv[3], argv[4]))
        res["ok"] = True
    except BaseException as e:  # noqa: BLE001
        res.update(ok=False, error=f"{type(e).__name__}: {e}"[:2000],
                   traceback=traceback.format_exc()[-4000:])
    print(json.dumps(res, default=str), flush=True)
    return 0 if res["ok"] else 1


# ------------------------------------------------------------------------ parent


def _env(scratch: str, **dirs: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PRECOMPILE_DISABLE", "PRECOMPILE_CACHE_URL", "PRECOMPILE_STRICT")}
    for k, v in dirs.items():
        path = os.path.join(scratch, v)
        os.makedirs(path, exist_ok=True)
        env[k] = path
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(args: list[str], env: dict[str, str], timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", *args]
    return warm_start.run_script(cmd, env, timeout, {"args": args})


def run_guards(entries: list[int], calls: int, repeat: int, timeout: float,
               scratch: str, out=sys.stdout) -> list[dict]:
    runs = []
    for n in entries:
        for r in range(repeat):
            base = os.path.join(scratch, f"guards-{n}-r{r}")
            env_pc = _env(base, PRECOMPILE_CACHE_DIR="pc", TORCHINDUCTOR_CACHE_DIR="ind",
                          TMPDIR="tmp")
            env_plain = _env(base, TORCHINDUCTOR_CACHE_DIR="ind_plain", TMPDIR="tmp_plain")
            for mode, env in (("plain", env_plain), ("pc_cold", env_pc), ("pc_warm", env_pc)):
                res = _spawn(["guards", mode, str(n), str(calls)], env, timeout)
                res.update(mode=mode, entries=n, repeat=r)
                runs.append(res)
                if res.get("us_last_compiled") is not None:
                    print(f"  guards N={n:<4} {mode:<8} run {r + 1}: first-compiled "
                          f"{res['us_first_compiled']:.1f} us, last-compiled "
                          f"{res['us_last_compiled']:.1f} us, eager {res['us_eager']:.1f} us, "
                          f"frames traced {res.get('frames_traced')}", file=out, flush=True)
                else:
                    print(f"  guards N={n:<4} {mode:<8} run {r + 1}: "
                          f"{'ok' if res.get('ok') else 'FAILED: ' + str(res.get('error'))}"
                          f" (fill {res.get('fill_s', 0):.2f} s, flush "
                          f"{res.get('flush_s', 0):.2f} s)", file=out, flush=True)
    return runs


def run_frames(frames: list[int], repeat: int, timeout: float, scratch: str,
               out=sys.stdout, kind: str = "funcs") -> list[dict]:
    import overhead_fns

    runs = []
    gen_dir = os.path.join(scratch, "generated")
    os.makedirs(gen_dir, exist_ok=True)
    for n in frames:
        with open(os.path.join(gen_dir, f"{kind}_{n}.py"), "w") as fh:
            fh.write(overhead_fns.generated_source(n - 1) if kind == "breaks"
                     else overhead_fns.many_functions_source(n))
        base = os.path.join(scratch, f"frames-{kind}-{n}")
        env = _env(base, PRECOMPILE_CACHE_DIR="pc", TORCHINDUCTOR_CACHE_DIR="ind", TMPDIR="tmp")
        for mode, reps in (("cold", 1), ("warm", repeat)):
            for r in range(reps):
                res = _spawn(["frames", mode, str(n), gen_dir, kind], env, timeout)
                res.update(mode=mode, frames=n, repeat=r, kind=kind)
                runs.append(res)
                print(f"  frames {kind:<6} N={n:<5} {mode:<5} run {r + 1}: first output "
                      f"{res.get('ttfo_s') or float('nan'):.2f} s, first call "
                      f"{res.get('first_call_s') or float('nan'):.2f} s, load_seconds "
                      f"{res.get('load_seconds') or float('nan'):.3f}, frames traced "
                      f"{res.get('frames_traced')}, package {res.get('package_bytes')} B "
                      f"{'' if res.get('ok') else 'FAILED: ' + str(res.get('error'))}",
                      file=out, flush=True)
    return runs


def _med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def guards_table(runs: list[dict]) -> str:
    rows = []
    for n in sorted({r["entries"] for r in runs}):
        def m(mode, key):
            return _med([r.get(key) for r in runs if r["entries"] == n and r["mode"] == mode])
        eager = _med([r.get("us_eager") for r in runs if r["entries"] == n
                      and r["mode"] in ("plain", "pc_warm")])
        cells = [str(n), f"{eager:.2f}" if eager else "-"]
        for key in ("us_last_compiled", "us_first_compiled"):
            p, w = m("plain", key), m("pc_warm", key)
            cells += [f"{p:.2f}" if p else "-", f"{w:.2f}" if w else "-",
                      f"{w / p:.2f}" if p and w else "-"]
        p, w = m("plain", "us_first_compiled"), m("pc_warm", "us_first_compiled")
        cells.append(f"{(w or 0) / eager:.1f}x" if eager and w else "-")
        fl = m("pc_cold", "flush_s")
        cells.append(f"{fl:.3f}" if fl is not None else "-")
        rows.append(cells)
    return warm_start.md_table(
        ["entries", "eager µs", "plain µs (last)", "precompile µs (last)", "pc/plain (last)",
         "plain µs (first)", "precompile µs (first)", "pc/plain (first)",
         "pc (first) vs eager", "flush s (pc cold)"], rows)


def frames_table(runs: list[dict]) -> str:
    rows = []
    for kind, n in sorted({(r.get("kind", "funcs"), r["frames"]) for r in runs}):
        mine = [r for r in runs if r.get("kind", "funcs") == kind and r["frames"] == n]
        cold = [r for r in mine if r["mode"] == "cold"]
        warm = [r for r in mine if r["mode"] == "warm" and r.get("ok")]
        c = cold[0] if cold else {}
        ls = _med([r.get("load_seconds") for r in warm])
        fc = _med([r.get("first_call_s") for r in warm])
        cfc = c.get("first_call_s")
        rows.append([kind, str(n), f"{cfc:.2f}" if cfc else "-", f"{c.get('flush_s') or 0:.3f}",
                     str(c.get("package_bytes")), f"{ls:.3f}" if ls is not None else "-",
                     f"{ls / n * 1e3:.2f}" if ls else "-", f"{fc:.3f}" if fc else "-",
                     f"{fc / cfc:.3f}" if fc and cfc else "-",
                     ",".join(sorted({str(r.get('frames_traced')) for r in warm})) or "-"])
    return warm_start.md_table(
        ["layout", "frames", "cold first call s", "cold flush s", "package bytes", "warm load_seconds",
         "ms/frame", "warm first call s", "warm/cold first call", "frames traced (warm)"], rows)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=["guards", "frames"])
    ap.add_argument("--entries", default="1,10,100")
    ap.add_argument("--frames", default="10,100,1000")
    ap.add_argument("--kind", default="funcs", choices=["funcs", "breaks"],
                    help="funcs: N functions, each its own package; breaks: one function "
                         "with N-1 graph breaks (cold tracing is quadratic: keep N <= 100)")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="bench_overhead_")
    try:
        if args.scenario == "guards":
            runs = run_guards([int(x) for x in args.entries.split(",")], args.calls,
                              args.repeat, args.timeout, scratch)
            print(guards_table(runs))
        else:
            runs = run_frames([int(x) for x in args.frames.split(",")], args.repeat,
                              args.timeout, scratch, kind=args.kind)
            print(frames_table(runs))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
