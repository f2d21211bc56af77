#!/usr/bin/env python3
"""Where does a precompile warm start spend its time?

    python bench/profile_start.py [--workload transformer] [--fresh]

A cold writer process (precompile_cold) fills a cache; then a profiled warm process
(precompile_warm, or precompile_fresh with --fresh) records time markers from the top of the
script (import torch, import torch._dynamo / torch._inductor, import precompile, build the
model), times precompile's internal phases by wrapping them (key computation, store fetch,
decode, manifest check, kernel restore, backend deserialization (of which Inductor's module
and C++ kernel loading), guard building, entry install) and runs the first call under
cProfile. Writes ``bench/results/profile_<workload>.json`` (+ ``.pstats`` and ``.txt``).
"""
import time

_T0 = time.perf_counter()

import argparse
import collections
import contextlib
import json
import os
import shutil
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import warm_start  # noqa: E402 (torch-free)

RESULTS = os.path.join(HERE, "results")


def _wrap(owner, name: str, phase: str, acc: dict, counts: dict) -> None:
    if name in os.environ.get("PROFILE_NO_WRAP", "").split(","):
        return
    raw = owner.__dict__.get(name) if isinstance(owner, type) else None
    orig = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else getattr(owner, name)

    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            acc[phase] += time.perf_counter() - t
            counts[phase] += 1

    if isinstance(raw, classmethod):
        wrapper = classmethod(wrapper)
    elif isinstance(raw, staticmethod):
        wrapper = staticmethod(wrapper)
    setattr(owner, name, wrapper)


def child(workload: str, out_prefix: str) -> int:
    marks: dict[str, float] = {}
    res: dict = {"workload": workload, "error": None}
    try:
        import torch

        marks["import torch"] = time.perf_counter() - _T0
        import torch._dynamo  # noqa: F401
        import torch._dynamo.eval_frame  # noqa: F401

        marks["import torch._dynamo"] = time.perf_counter() - _T0
        # What loading a stored Inductor graph imports: AOTAutograd's cache entry, Inductor's
        # code cache and the runtime debug hooks. Not the compiler (compile_fx, graph,
        # select_algorithm, lowering): precompile/_torch/light_loads.py avoids those.
        import torch._functorch._aot_autograd.aot_autograd_result  # noqa: F401
        import torch._inductor.codecache  # noqa: F401
        import torch._inductor.debug  # noqa: F401

        marks["import torch._inductor"] = time.perf_counter() - _T0
        import precompile
        import precompile._torch as pt
        import precompile.api as api
        import precompile.format.envelope as fmt
        import precompile.install.installation as inst
        import precompile.package.keys as keys
        import precompile.read.loading as loading

        marks["import precompile"] = time.perf_counter() - _T0
        import workloads

        built = workloads.build(workload)
        marks["import + build workload"] = time.perf_counter() - _T0
        acc: dict = collections.defaultdict(float)
        counts: dict = collections.defaultdict(int)
        _wrap(keys, "key_factors", "key computation", acc, counts)
        _wrap(loading, "fetch", "store fetch", acc, counts)
        _wrap(fmt, "decode", "decode + verify", acc, counts)
        _wrap(loading, "verify", "manifest -> package, source check", acc, counts)
        _wrap(pt, "use_recorded_cpu_isa", "cpu isa record", acc, counts)
        _wrap(inst, "restore_kernels", "kernel restore (write .so)", acc, counts)
        _wrap(pt, "deserialize_backend", "backend deserialization", acc, counts)
        from torch._inductor import codecache

        _wrap(codecache.PyCodeCache, "load_by_key_path",
              "  of which: Inductor module load (PyCodeCache)", acc, counts)
        with contextlib.suppress(AttributeError):
            _wrap(codecache.CppCodeCache, "load_async",
                  "  of which: C++ kernel load (CppCodeCache)", acc, counts)
        _wrap(pt, "load_guard_manager", "guard building", acc, counts)
        _wrap(pt, "install_entry", "entry install", acc, counts)
        _wrap(api.CachedFunction, "_first_call", "precompile load total (first-call setup)", acc,
              counts)
        fn = precompile.cached(built.target, backend="inductor", **built.compile_kwargs)
        torch.compiler.set_stance("fail_on_recompile")
        import cProfile

        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        built.run(fn, built.inputs)
        prof.disable()
        first_call = time.perf_counter() - t
        marks["first output"] = time.perf_counter() - _T0
        torch.compiler.set_stance("default")
        from torch._dynamo.utils import counters

        res["frames_traced"] = int(counters["frames"].get("total", 0))
        res["precompile_stats"] = precompile.stats()
        phases = dict(acc)
        inside = phases.get("precompile load total (first-call setup)", 0.0)
        phases["first call after load (run compiled code)"] = first_call - inside
        res["marks_s"] = marks
        res["phases_s"] = phases
        res["phase_calls"] = dict(counts)
        res["first_call_s"] = first_call
        prof.dump_stats(out_prefix + ".pstats")
        import io
        import pstats

        buf = io.StringIO()
        st = pstats.Stats(prof, stream=buf).sort_stats("cumulative")
        st.print_stats(40)
        with open(out_prefix + ".txt", "w") as fh:
            fh.write(buf.getvalue())
        # aggregate own time by top-level package
        agg: dict = collections.defaultdict(float)
        for (filename, _line, _fn), (_cc, _nc, tt, _ct, _callers) in st.stats.items():
            f = filename.replace("\\", "/")
            if "/precompile/" in f:
                key = "precompile"
            elif "/torch/_dynamo/" in f:
                key = "torch._dynamo"
            elif "/torch/_inductor/" in f:
                key = "torch._inductor"
            elif "/torch/_functorch/" in f:
                key = "torch._functorch (AOTAutograd)"
            elif "/torch/" in f:
                key = "torch (other)"
            elif f.startswith("~") or f == "~":
                key = "builtins / C"
            else:
                key = "other python"
            agg[key] += tt
        res["cprofile_own_time_by_package_s"] = dict(sorted(agg.items(), key=lambda kv: -kv[1]))
    except BaseException as e:  # noqa: BLE001
        res["error"] = f"{type(e).__name__}: {e}"
        with contextlib.suppress(Exception):
            res["precompile_stats"] = sys.modules["precompile"].stats()
        res["traceback"] = traceback.format_exc()[-4000:]
    print(json.dumps(res, default=str), flush=True)
    return 0 if res["error"] is None else 1


def breakdown_table(res: dict) -> str:
    rows = []
    prev = 0.0
    for name, t in (res.get("marks_s") or {}).items():
        rows.append([f"[marker] {name}", f"{t - prev:.3f}", f"{t:.3f}"])
        prev = t
    total = (res.get("marks_s") or {}).get("first output") or 0
    rows.append(["", "", ""])
    for name, t in (res.get("phases_s") or {}).items():
        rows.append([f"[phase] {name} (x{res.get('phase_calls', {}).get(name, 1)})",
                     f"{t:.3f}", f"{t / total * 100:.1f}% of total" if total else "-"])
    rows.append(["", "", ""])
    for name, t in (res.get("cprofile_own_time_by_package_s") or {}).items():
        rows.append([f"[cProfile own time, first call] {name}", f"{t:.3f}", ""])
    return warm_start.md_table(["what", "seconds", "cumulative / share"], rows)


def run_profile(workload: str, fresh: bool, timeout: float, scratch: str,
                out=sys.stdout) -> dict:
    modes = [warm_start.MODES["precompile_cold"],
             warm_start.MODES["precompile_fresh" if fresh else "precompile_warm"]]
    dirs = warm_start.slot_dirs(os.path.join(scratch, "profile"), modes)
    cold = warm_start.run_child(modes[0], workload, warm_start.child_env(modes[0], dirs),
                                timeout)
    print(f"  profile: writer ({modes[0].name}) first output {cold.get('ttfo_s')} s "
          f"{'ok' if cold.get('ok') else 'FAILED: ' + str(cold.get('error'))}", file=out,
          flush=True)
    os.makedirs(RESULTS, exist_ok=True)
    prefix = os.path.join(RESULTS, f"profile_{workload}")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", workload, prefix]
    res = warm_start.run_script(cmd, warm_start.child_env(modes[1], dirs), timeout,
                                {"workload": workload})
    res["profiled_mode"] = modes[1].name
    res["writer"] = {k: cold.get(k) for k in ("ttfo_s", "ok", "error")}
    with open(prefix + ".json", "w") as fh:
        json.dump(res, fh, indent=2, default=str)
    return res


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[2])
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="transformer")
    ap.add_argument("--fresh", action="store_true", help="profile precompile_fresh")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="bench_profile_")
    try:
        res = run_profile(args.workload, args.fresh, args.timeout, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if res.get("error"):
        print(f"profile failed: {res['error']}\n{res.get('traceback', '')}")
        return 1
    print(breakdown_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
