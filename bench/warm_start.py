#!/usr/bin/env python3
"""Warm-start benchmark: seconds to first output of a fresh process, per workload and mode.

    python bench/warm_start.py [--workloads mlp,transformer,graph_break] [--repeat N]
                               [--modes eager,cold,...] [--fresh] [--json PATH] [--keep]

Every measurement is a FRESH Python process (``warm_start.py --child MODE WORKLOAD``) that
prints one JSON object on stdout. Modes:

  eager             no compile at all
  cold              plain torch.compile; empty TORCHINDUCTOR_CACHE_DIR and a fresh TMPDIR
  torch_warm        plain torch.compile again, reusing cold's TORCHINDUCTOR_CACHE_DIR and TMPDIR
                    (PyTorch's default warm caches; Dynamo retraces)
  precompile_cold   precompile.cached; fresh empty PRECOMPILE_CACHE_DIR, inductor dir and TMPDIR
                    (the cost of recording and saving a package)
  precompile_warm   precompile.cached; same PRECOMPILE_CACHE_DIR, inductor dir and TMPDIR as
                    precompile_cold, under set_stance("fail_on_recompile")
  precompile_fresh  precompile.cached; same PRECOMPILE_CACHE_DIR as precompile_cold but a NEW
                    empty inductor dir and TMPDIR ("fresh machine"), under fail_on_recompile.
                    Not in the default set: add it with --fresh.

Each child records time.perf_counter() at the very top of this file, before ``import torch``,
and reports the seconds to its first output from there (``ttfo_s``); the parent also reports
the process's wall time (``wall_s``, start to exit, which includes saving at exit). Children
count Dynamo frames traced, Inductor codegens (fx_codegen_and_compile) and C++ builds
(CppBuilder.build), and compare the output with eager (allclose, atol=rtol=1e-4).

To add a mode, add a ``Mode`` to ``MODES`` (its ``slots`` say which directories it shares with
the modes before it); to add a workload, register it in bench/workloads.py.
"""
import time

_T0 = time.perf_counter()  # before anything heavy: the clock for "time to first output"

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_JSON = os.path.join(HERE, "results", "warm_start.json")
DEFAULT_WORKLOADS = "mlp,transformer,graph_break"
ATOL = RTOL = 1e-4
LAUNCH_ENV = "WARM_START_LAUNCH_EPOCH"  # parent's time.time() just before spawning the child


# ------------------------------------------------------------------------ modes


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    compiler: str | None  # None (eager), "torch" (torch.compile) or "precompile"
    # Directory slots. Modes naming the same slot share that directory within one repeat of
    # one workload; a slot nobody used before is a new empty directory.
    inductor: str  # TORCHINDUCTOR_CACHE_DIR
    tmp: str  # TMPDIR (Inductor keeps its precompiled C++ header under it)
    precompile: str | None = None  # PRECOMPILE_CACHE_DIR
    stance: str | None = None  # torch.compiler.set_stance before the first call
    requires: tuple[str, ...] = ()  # modes that must run first (they fill the shared slots)
    label: str = ""


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("eager", None, inductor="eager", tmp="eager", label="eager"),
    Mode("cold", "torch", inductor="torch", tmp="torch", label="cold"),
    Mode("torch_warm", "torch", inductor="torch", tmp="torch", requires=("cold",),
         label="torch warm"),
    Mode("precompile_cold", "precompile", inductor="pc", tmp="pc", precompile="pc",
         label="precompile cold"),
    Mode("precompile_warm", "precompile", inductor="pc", tmp="pc", precompile="pc",
         stance="fail_on_recompile", requires=("precompile_cold",), label="precompile warm"),
    Mode("precompile_fresh", "precompile", inductor="fresh", tmp="fresh", precompile="pc",
         stance="fail_on_recompile", requires=("precompile_cold",),
         label="precompile fresh"),
)}
# precompile_fresh costs another ~20-30 s per workload (it rebuilds C++), so it is opt-in
# (--fresh) to keep the default run around 5 minutes on 2 cores.
DEFAULT_MODES = "eager,cold,torch_warm,precompile_cold,precompile_warm"


# ------------------------------------------------------------------------ child


def _install_probes() -> dict:
    """Count (and time) Inductor codegens and C++ builds. Must run before the first call."""
    counts = {"codegens": 0, "cpp_builds": 0, "codegen_s": 0.0, "cpp_build_s": 0.0}
    import torch._inductor.compile_fx as cfx
    import torch._inductor.cpp_builder as cb

    orig_codegen, orig_build = cfx.fx_codegen_and_compile, cb.CppBuilder.build

    def codegen(*a, **k):
        counts["codegens"] += 1
        t = time.perf_counter()
        try:
            return orig_codegen(*a, **k)
        finally:
            counts["codegen_s"] += time.perf_counter() - t

    def build(self, *a, **k):
        counts["cpp_builds"] += 1
        t = time.perf_counter()
        try:
            return orig_build(self, *a, **k)
        finally:
            counts["cpp_build_s"] += time.perf_counter() - t

    cfx.fx_codegen_and_compile = codegen
    cb.CppBuilder.build = build
    return counts


def _compare(out, ref) -> tuple[bool, float]:
    import torch
    from torch.utils._pytree import tree_leaves

    a, b = tree_leaves(out), tree_leaves(ref)
    if len(a) != len(b):
        return False, float("inf")
    ok, worst = True, 0.0
    for x, y in zip(a, b):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.shape != y.shape or x.dtype != y.dtype:
                return False, float("inf")
            if x.numel():
                worst = max(worst, (x.detach().double() - y.detach().double()).abs().max().item())
            ok = ok and torch.allclose(x, y, atol=ATOL, rtol=RTOL)
        else:
            ok = ok and x == y
    return bool(ok), worst


def _precompile_stats(res: dict) -> dict | None:
    """precompile.stats(), without letting a broken stats call lose the whole report."""
    import precompile

    stats = getattr(precompile, "stats", None)
    if not callable(stats):
        # Seen with a lazy precompile/__init__.py: importing precompile.api imports the
        # submodule precompile.stats, which then shadows the stats() function.
        res.setdefault("notes", []).append(
            f"precompile.stats is a {type(stats).__name__}, not callable; used "
            "precompile.api.stats()")
        import precompile.api

        stats = precompile.api.stats
    try:
        return stats()
    except Exception as e:  # noqa: BLE001
        res.setdefault("notes", []).append(f"precompile.stats() failed: {e!r}")
        return None


def child_main(mode_name: str, workload_name: str) -> int:
    """Run one mode of one workload in this (fresh) process; print one JSON line."""
    mode = MODES[mode_name]
    res: dict = {"mode": mode_name, "workload": workload_name, "ok": False, "error": None}
    counts = None
    compiled_out = built = None
    try:
        import torch

        res["import_torch_s"] = time.perf_counter() - _T0
        if mode.compiler is not None:
            t = time.perf_counter()
            counts = _install_probes()
            res["probe_setup_s"] = time.perf_counter() - t
        sys.path.insert(0, HERE)
        import workloads

        built = workloads.get(workload_name).build()
        if mode.compiler == "torch":
            fn = torch.compile(built.target, backend="inductor")
        elif mode.compiler == "precompile":
            import precompile

            fn = precompile.cached(built.target, backend="inductor")
        else:
            fn = built.target
        if mode.stance:
            torch.compiler.set_stance(mode.stance)
        t = time.perf_counter()
        compiled_out = built.run(fn, built.inputs)
        now = time.perf_counter()
        res["first_call_s"] = now - t
        res["ttfo_s"] = now - _T0
        launch = os.environ.get(LAUNCH_ENV)
        if launch:
            res["ttfo_from_launch_s"] = time.time() - float(launch)
    except BaseException as e:  # noqa: BLE001 - report it, the parent decides
        res["error"] = f"{type(e).__name__}: {e}"
        res["traceback"] = traceback.format_exc()
    finally:
        if mode.stance and "torch" in sys.modules:
            with contextlib.suppress(Exception):
                sys.modules["torch"].compiler.set_stance("default")

    # Everything below is after the clock stopped.
    try:
        if mode.compiler == "precompile" and "precompile" in sys.modules:
            import precompile

            t = time.perf_counter()
            try:
                precompile.flush()
            except Exception as e:  # noqa: BLE001
                res["error"] = res["error"] or f"flush failed: {type(e).__name__}: {e}"
            res["flush_s"] = time.perf_counter() - t
            res["precompile_stats"] = _precompile_stats(res)
        if mode.compiler is not None:
            try:
                from torch._dynamo.utils import counters

                res["frames_traced"] = int(counters["frames"].get("total", 0))
            except Exception:  # noqa: BLE001
                res["frames_traced"] = None
        else:
            res["frames_traced"] = 0
        if counts is not None:
            res.update(counts)
        else:
            res.update(codegens=0, cpp_builds=0)
        if compiled_out is not None and built is not None:
            try:
                if built.reset is not None:
                    built.reset()
                ref = built.run(built.target, built.inputs)
                res["matches_eager"], res["max_abs_diff"] = _compare(compiled_out, ref)
            except Exception as e:  # noqa: BLE001
                res["matches_eager"] = False
                res["error"] = res["error"] or f"eager reference failed: {type(e).__name__}: {e}"
    except BaseException as e:  # noqa: BLE001 - always print a report
        res["error"] = res["error"] or f"after the first output: {type(e).__name__}: {e}"
        res["traceback"] = res.get("traceback") or traceback.format_exc()
    res["ok"] = res["error"] is None and bool(res.get("matches_eager"))
    sys.stdout.flush()
    print(json.dumps(res, default=str), flush=True)
    return 0 if res["error"] is None else 1


# ----------------------------------------------------------------------- parent


def child_env(mode: Mode, dirs: dict[str, str]) -> dict[str, str]:
    """The environment for one child: the parent's, with the cache locations replaced."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PRECOMPILE_DISABLE", "PRECOMPILE_CACHE_DIR", "PRECOMPILE_CACHE_URL",
                        "PRECOMPILE_STRICT", "TORCHINDUCTOR_CACHE_DIR", "TMPDIR")}
    env["TORCHINDUCTOR_CACHE_DIR"] = dirs["inductor:" + mode.inductor]
    env["TMPDIR"] = dirs["tmp:" + mode.tmp]
    if mode.precompile is not None:
        env["PRECOMPILE_CACHE_DIR"] = dirs["precompile:" + mode.precompile]
    env["PYTHONUNBUFFERED"] = "1"
    return env


def slot_dirs(root: str, modes: list[Mode]) -> dict[str, str]:
    dirs = {}
    for m in modes:
        for kind, slot in (("inductor", m.inductor), ("tmp", m.tmp), ("precompile", m.precompile)):
            if slot is not None and f"{kind}:{slot}" not in dirs:
                path = os.path.join(root, f"{kind}-{slot}")
                os.makedirs(path, exist_ok=True)
                dirs[f"{kind}:{slot}"] = path
    return dirs


def run_child(mode: Mode, workload: str, env: dict[str, str], timeout: float,
              python: str = sys.executable, log=None) -> dict:
    """Spawn ``warm_start.py --child`` and return its JSON report plus the parent's wall time."""
    cmd = [python, os.path.abspath(__file__), "--child", mode.name, workload]
    env = dict(env)
    env[LAUNCH_ENV] = repr(time.time())
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                           check=False)
    except subprocess.TimeoutExpired as e:
        return {"mode": mode.name, "workload": workload, "ok": False,
                "error": f"timed out after {timeout:.0f} s", "wall_s": time.perf_counter() - t,
                "stderr_tail": (e.stderr or b"")[-4000:].decode(errors="replace")
                if isinstance(e.stderr, bytes) else (e.stderr or "")[-4000:]}
    wall = time.perf_counter() - t
    res = None
    for line in reversed(p.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                res = json.loads(line)
                break
            except ValueError:
                continue
    if res is None:
        res = {"mode": mode.name, "workload": workload, "ok": False,
               "error": f"child exited {p.returncode} without a report"}
    res["wall_s"] = wall
    res["returncode"] = p.returncode
    if p.returncode != 0 or not res.get("ok"):
        res["stderr_tail"] = p.stderr[-4000:]
    if log is not None and p.stderr and os.environ.get("WARM_START_VERBOSE"):
        log.write(p.stderr)
    return res


def resolve_modes(names: list[str]) -> list[Mode]:
    """The modes to run, in run order, with every mode's prerequisites first."""
    order: list[str] = []

    def add(n: str) -> None:
        if n not in MODES:
            raise SystemExit(f"unknown mode {n!r}; known: {', '.join(MODES)}")
        for r in MODES[n].requires:
            add(r)
        if n not in order:
            order.append(n)

    for n in names:
        add(n)
    known = list(MODES)
    return [MODES[n] for n in sorted(order, key=known.index)]


def summarize(values: list[float]) -> dict:
    if not values:
        return {}
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "n": len(values)}


def machine_info() -> dict:
    import importlib.metadata as md

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    info = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": None,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch": version("torch"),
        "precompile": version("precompile"),
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("TORCH", "PRECOMPILE", "OMP_", "MKL_"))},
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def _fmt(stat: dict | None, repeat: int) -> str:
    if not stat:
        return "-"
    if repeat > 1:
        return f"{stat['median']:.2f} ({stat['min']:.2f})"
    return f"{stat['median']:.2f}"


def _distinct(values: list) -> str:
    """The distinct values over repeats: '3', or '3,4' when repeats differed."""
    vals = sorted({"?" if v is None else str(v) for v in values}, key=lambda x: (len(x), x))
    return ",".join(vals) if vals else "?"


def print_tables(summary: dict, modes: list[Mode], workloads: list[str], repeat: int,
                 out=sys.stdout) -> None:
    names = [m.name for m in modes]
    cols = [m for m in modes]
    time_cols = [m.label for m in cols]
    extra = []
    if "cold" in names and "precompile_warm" in names:
        extra.append("pc warm vs cold")
    if "torch_warm" in names and "precompile_warm" in names:
        extra.append("pc warm vs torch warm")
    if "precompile_warm" in names:
        extra.append("frames in pc warm")

    def table(title: str, key: str) -> None:
        header = ["workload", *time_cols, *extra]
        rows = []
        for w in workloads:
            s = summary[w]
            row = [w]
            for m in cols:
                cell = _fmt(s[m.name].get(key), repeat)
                if s[m.name]["failures"]:
                    cell += f" [{s[m.name]['failures']} FAILED]"
                elif not s[m.name]["all_match"]:
                    cell += " [MISMATCH]"
                row.append(cell)
            med = {n: (s[n].get(key) or {}).get("median") for n in names}
            if "pc warm vs cold" in extra:
                row.append(f"{med['cold'] / med['precompile_warm']:.1f}x"
                           if med.get("cold") and med.get("precompile_warm") else "-")
            if "pc warm vs torch warm" in extra:
                row.append(f"{med['torch_warm'] / med['precompile_warm']:.1f}x"
                           if med.get("torch_warm") and med.get("precompile_warm") else "-")
            if "frames in pc warm" in extra:
                fr = s["precompile_warm"]["frames_traced"]
                row.append(_distinct(fr) if fr else "-")
            rows.append(row)
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        print(f"\n{title}", file=out)
        print("| " + " | ".join(h.ljust(wd) for h, wd in zip(header, widths)) + " |", file=out)
        print("|" + "|".join("-" * (wd + 2) for wd in widths) + "|", file=out)
        for r in rows:
            print("| " + " | ".join(str(c).ljust(wd) for c, wd in zip(r, widths)) + " |",
                  file=out)

    how = f"median (min) of {repeat}" if repeat > 1 else "1 run"
    table(f"Seconds to first output, from the top of the child script ({how}):", "ttfo_s")
    table(f"Process wall time measured by the parent, spawn to exit ({how}):", "wall_s")

    # Engine work per mode: frames traced / Inductor codegens / C++ builds.
    header = ["workload", *time_cols]
    rows = []
    for w in workloads:
        row = [w]
        for m in cols:
            s = summary[w][m.name]
            if m.compiler is None:
                row.append("-")
                continue

            row.append(" / ".join(_distinct(s[k]) for k in ("frames_traced", "codegens",
                                                             "cpp_builds")))
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print("\nEngine work in each process: frames traced / Inductor codegens / C++ builds:",
          file=out)
    print("| " + " | ".join(h.ljust(wd) for h, wd in zip(header, widths)) + " |", file=out)
    print("|" + "|".join("-" * (wd + 2) for wd in widths) + "|", file=out)
    for r in rows:
        print("| " + " | ".join(str(c).ljust(wd) for c, wd in zip(r, widths)) + " |", file=out)


def parent_main(args: argparse.Namespace) -> int:
    workload_names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    sys.path.insert(0, HERE)
    modes = resolve_modes([m.strip() for m in args.modes.split(",") if m.strip()])
    # Validate workload names without importing torch in the parent.
    with open(os.path.join(HERE, "workloads.py")) as fh:
        src = fh.read()
    for w in workload_names:
        if f'Workload("{w}"' not in src:
            raise SystemExit(f"unknown workload {w!r}")

    scratch = tempfile.mkdtemp(prefix="warm_start_")
    runs: list[dict] = []
    t_start = time.perf_counter()
    print(f"warm-start benchmark: workloads={','.join(workload_names)} "
          f"modes={','.join(m.name for m in modes)} repeat={args.repeat}", flush=True)
    print(f"scratch dir: {scratch}", flush=True)
    try:
        for w in workload_names:
            for r in range(args.repeat):
                root = os.path.join(scratch, f"{w}-r{r}")
                dirs = slot_dirs(root, modes)
                for m in modes:
                    res = run_child(m, w, child_env(m, dirs), args.timeout)
                    res["repeat"] = r
                    runs.append(res)
                    status = "ok" if res.get("ok") else f"FAILED: {res.get('error')}"
                    if res.get("ok") is False and res.get("error") is None:
                        status = f"MISMATCH (max abs diff {res.get('max_abs_diff')})"
                    ttfo = res.get("ttfo_s")
                    print(f"  {w:<12} {m.name:<17} run {r + 1}/{args.repeat}: "
                          f"first output {ttfo if ttfo is None else f'{ttfo:6.2f}'} s, "
                          f"wall {res['wall_s']:6.2f} s, frames {res.get('frames_traced')}, "
                          f"codegens {res.get('codegens')}, c++ builds {res.get('cpp_builds')}"
                          f"  {status}", flush=True)
                    if not res.get("ok") and res.get("stderr_tail") and args.verbose:
                        print(res["stderr_tail"], file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept scratch dir {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    summary: dict = {}
    for w in workload_names:
        summary[w] = {}
        for m in modes:
            rs = [r for r in runs if r["workload"] == w and r["mode"] == m.name]
            good = [r for r in rs if r.get("ttfo_s") is not None and r.get("error") is None]
            summary[w][m.name] = {
                "ttfo_s": summarize([r["ttfo_s"] for r in good]),
                "wall_s": summarize([r["wall_s"] for r in good]),
                "frames_traced": [r.get("frames_traced") for r in rs],
                "codegens": [r.get("codegens") for r in rs],
                "cpp_builds": [r.get("cpp_builds") for r in rs],
                "max_abs_diff": max((r.get("max_abs_diff") or 0.0) for r in rs) if rs else None,
                "all_match": all(r.get("matches_eager") for r in rs),
                "failures": sum(1 for r in rs if r.get("error")),
            }
    for w in workload_names:
        s = summary[w]
        if s.get("cold", {}).get("ttfo_s") and s.get("precompile_warm", {}).get("ttfo_s"):
            s["speedup_precompile_warm_vs_cold"] = (
                s["cold"]["ttfo_s"]["median"] / s["precompile_warm"]["ttfo_s"]["median"])
        if s.get("torch_warm", {}).get("ttfo_s") and s.get("precompile_warm", {}).get("ttfo_s"):
            s["speedup_precompile_warm_vs_torch_warm"] = (
                s["torch_warm"]["ttfo_s"]["median"] / s["precompile_warm"]["ttfo_s"]["median"])

    print_tables(summary, modes, workload_names, args.repeat)
    total = time.perf_counter() - t_start
    print(f"\ntotal benchmark time {total:.0f} s")

    report = {
        "benchmark": "warm_start",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "settings": {"workloads": workload_names, "modes": [m.name for m in modes],
                     "repeat": args.repeat, "backend": "inductor", "atol": ATOL, "rtol": RTOL,
                     "timeout_s": args.timeout},
        "modes": {m.name: dataclasses.asdict(m) for m in modes},
        "summary": summary,
        "runs": runs,
        "total_s": total,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(report, fh, indent=2)
    print(f"results written to {args.json}")
    failed = [r for r in runs if not r.get("ok")]
    if failed:
        print(f"{len(failed)} run(s) failed or did not match eager:", file=sys.stderr)
        for r in failed:
            print(f"  {r['workload']} {r['mode']}: {r.get('error') or 'output mismatch'}",
                  file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        if len(argv) != 3:
            raise SystemExit("usage: warm_start.py --child MODE WORKLOAD")
        return child_main(argv[1], argv[2])
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default=DEFAULT_WORKLOADS,
                    help=f"comma-separated (default {DEFAULT_WORKLOADS})")
    ap.add_argument("--modes", default=DEFAULT_MODES,
                    help=f"comma-separated; prerequisites are added (default {DEFAULT_MODES})")
    ap.add_argument("--fresh", action="store_true",
                    help="also run precompile_fresh (a machine with empty Inductor caches)")
    ap.add_argument("--repeat", type=int, default=1, help="fresh runs per mode (default 1)")
    ap.add_argument("--json", default=DEFAULT_JSON, help="where to write the results")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per child process")
    ap.add_argument("--keep", action="store_true", help="keep the scratch cache directories")
    ap.add_argument("-v", "--verbose", action="store_true", help="print stderr of failed runs")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.fresh and "precompile_fresh" not in args.modes.split(","):
        args.modes += ",precompile_fresh"
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
