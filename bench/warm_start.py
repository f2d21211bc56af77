#!/usr/bin/env python3
"""Warm-start benchmark: seconds to first output of a fresh process, per workload and mode.

    python bench/warm_start.py [--workloads mlp,transformer,...] [--repeat N]
                               [--modes eager,cold,...] [--fresh] [--json PATH] [--keep]

(The whole suite, with the other scenarios, is ``python -m bench``; this file is its
start-up scenario and the child that every start-up measurement runs in.)

Every measurement is a FRESH Python process (``warm_start.py --child MODE WORKLOAD``) that
prints one JSON object on stdout. Modes:

  eager               no compile at all
  cold                plain torch.compile; empty TORCHINDUCTOR_CACHE_DIR and a fresh TMPDIR.
                      After its first output it also saves PyTorch's "mega-cache"
                      (torch.compiler.save_cache_artifacts()) for megacache_warm.
  torch_warm          plain torch.compile again, reusing cold's TORCHINDUCTOR_CACHE_DIR and
                      TMPDIR (PyTorch's default warm caches; Dynamo retraces)
  megacache_warm      plain torch.compile after torch.compiler.load_cache_artifacts() of cold's
                      mega-cache, into a NEW empty inductor dir, TMPDIR and HOME (the clock
                      includes reading and loading the artifacts)
  pt_precompile_cold  torch.compile with torch._dynamo.config.caching_precompile=True (PyTorch's
                      own DynamoCache under the inductor dir); empty dirs; after the first output
                      PrecompileContext.save_to_dynamo_cache() writes the entries
  pt_precompile_warm  the same again, reusing pt_precompile_cold's inductor dir and TMPDIR
  precompile_cold     precompile.cached; fresh empty PRECOMPILE_CACHE_DIR, inductor dir and TMPDIR
                      (the cost of recording and saving a package)
  precompile_warm     precompile.cached; same PRECOMPILE_CACHE_DIR, inductor dir and TMPDIR as
                      precompile_cold, under set_stance("fail_on_recompile")
  precompile_fresh    precompile.cached; same PRECOMPILE_CACHE_DIR as precompile_cold but a NEW
                      empty inductor dir, TMPDIR and HOME ("fresh machine"), under
                      fail_on_recompile.

Writer modes (cold, pt_precompile_cold, precompile_cold) fill the shared directories; reader
modes use them. ``--repeat N`` repeats the readers N times; the writers run in the first
``--cold-repeat`` repeats (default: all of them, here and in ``python -m bench``; each
writer costs 20-60 s on 2 cores). Directories of slots named ``new*`` are new
and empty in every repeat.

Each child records time.perf_counter() at the very top of this file, before ``import torch``,
and reports the seconds to its first output from there (``ttfo_s``); the parent also reports
the process's wall time (``wall_s``, start to exit, which includes saving at exit). Children
count Dynamo frames traced, Inductor codegens (fx_codegen_and_compile) and C++ builds
(CppBuilder.build), and compare the output with eager (allclose, atol=rtol=1e-4 unless the
workload says otherwise).

To add a mode, add a ``Mode`` to ``MODES``; to add a workload, add a module to
bench/workloads/ and its name to ``bench/workloads/__init__.py``.
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
DEFAULT_WORKLOADS = "mlp,transformer,convnet,graph_breaks,train_step,dynamic_shapes,gpt2,bert"
ATOL = RTOL = 1e-4
LAUNCH_ENV = "WARM_START_LAUNCH_EPOCH"  # parent's time.time() just before spawning the child


# ------------------------------------------------------------------------ modes


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    compiler: str | None  # None (eager), "torch" (torch.compile) or "precompile"
    # Directory slots. Modes naming the same slot share that directory within one workload;
    # a slot whose name starts with "new" is a new empty directory in every repeat.
    inductor: str  # TORCHINDUCTOR_CACHE_DIR
    tmp: str  # TMPDIR (Inductor keeps its precompiled C++ header under it)
    precompile: str | None = None  # PRECOMPILE_CACHE_DIR
    home: str | None = None  # HOME (None: the parent's)
    stance: str | None = None  # torch.compiler.set_stance before the first call
    requires: tuple[str, ...] = ()  # modes that must run first (they fill the shared slots)
    label: str = ""
    writer: bool = False  # fills slots that reader modes use
    caching_precompile: bool = False  # torch._dynamo.config.caching_precompile
    megacache: str | None = None  # "save" (after the first output) or "load" (before compiling)


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("eager", None, inductor="new_eager", tmp="new_eager", label="eager"),
    Mode("cold", "torch", inductor="torch", tmp="torch", label="cold", writer=True,
         megacache="save"),
    Mode("torch_warm", "torch", inductor="torch", tmp="torch", requires=("cold",),
         label="torch warm"),
    Mode("megacache_warm", "torch", inductor="new_mega", tmp="new_mega", home="new_mega",
         requires=("cold",), megacache="load", label="megacache"),
    Mode("pt_precompile_cold", "torch", inductor="ptpc", tmp="ptpc", writer=True,
         caching_precompile=True, label="pt caching_precompile cold"),
    Mode("pt_precompile_warm", "torch", inductor="ptpc", tmp="ptpc",
         requires=("pt_precompile_cold",), caching_precompile=True,
         label="pt caching_precompile warm"),
    Mode("precompile_cold", "precompile", inductor="pc", tmp="pc", precompile="pc",
         writer=True, label="precompile cold"),
    Mode("precompile_warm", "precompile", inductor="pc", tmp="pc", precompile="pc",
         stance="fail_on_recompile", requires=("precompile_cold",), label="precompile warm"),
    Mode("precompile_fresh", "precompile", inductor="new_fresh", tmp="new_fresh",
         precompile="pc", home="new_fresh", stance="fail_on_recompile",
         requires=("precompile_cold",), label="precompile fresh"),
)}
DEFAULT_MODES = ",".join(MODES)
ARTIFACTS_ENV = "WARM_START_ARTIFACTS"  # a directory shared by one workload's modes


# ------------------------------------------------------------------------ child


def _install_probes() -> dict:
    """Count (and time) Inductor codegens and C++ builds from now on, without importing the
    compiler to do it (precompile/probes.py, loaded by path so that PyTorch-only modes do not
    import precompile). Must run before the first call."""
    import importlib.util

    path = os.path.join(os.path.dirname(HERE), "precompile", "probes.py")
    spec = importlib.util.spec_from_file_location("_bench_probes", path)
    probes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probes)
    return probes.count_engine_work()


def _probe_results(counts: dict) -> dict:
    return {"codegens": counts["codegens"], "cpp_builds": counts["cpp_builds"],
            "codegen_s": counts["codegens_s"], "cpp_build_s": counts["cpp_builds_s"]}


def _compare(out, ref, atol: float = ATOL, rtol: float = RTOL) -> tuple[bool, float]:
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
            ok = ok and torch.allclose(x, y, atol=atol, rtol=rtol)
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


def _dir_size(path: str | None) -> int | None:
    if not path or not os.path.isdir(path):
        return None
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, f))
    return total


def child_main(mode_name: str, workload_name: str) -> int:
    """Run one mode of one workload in this (fresh) process; print one JSON line."""
    mode = MODES[mode_name]
    res: dict = {"mode": mode_name, "workload": workload_name, "ok": False, "error": None}
    counts = None
    compiled_out = built = None
    artifacts = os.environ.get(ARTIFACTS_ENV) or None
    mega_path = os.path.join(artifacts, "megacache.bin") if artifacts else None
    try:
        import torch

        res["import_torch_s"] = time.perf_counter() - _T0
        if mode.compiler is not None:
            t = time.perf_counter()
            counts = _install_probes()
            res["probe_setup_s"] = time.perf_counter() - t
        if mode.caching_precompile:
            torch._dynamo.config.caching_precompile = True
        if mode.megacache == "load":
            t = time.perf_counter()
            with open(mega_path, "rb") as fh:
                blob = fh.read()
            info = torch.compiler.load_cache_artifacts(blob)
            res["megacache_load_s"] = time.perf_counter() - t
            res["megacache_bytes"] = len(blob)
            res["megacache_loaded"] = str(info)[:500]
        sys.path.insert(0, HERE)
        import workloads
        from workloads.base import Skip

        try:
            built = workloads.build(workload_name)
        except Skip as e:
            res["skipped"] = str(e)
            res["error"] = None
            print(json.dumps(res, default=str), flush=True)
            return 0
        res["build_s"] = time.perf_counter() - _T0
        kw = dict(built.compile_kwargs)
        if mode.compiler == "torch":
            fn = torch.compile(built.target, backend="inductor", **kw)
        elif mode.compiler == "precompile":
            import precompile

            fn = precompile.cached(built.target, backend="inductor", **kw)
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
        res["error"] = f"{type(e).__name__}: {e}"[:2000]
        res["traceback"] = traceback.format_exc()[-6000:]
    finally:
        if mode.stance and "torch" in sys.modules:
            with contextlib.suppress(Exception):
                sys.modules["torch"].compiler.set_stance("default")

    # Everything below is after the clock stopped.
    try:
        torch = sys.modules.get("torch")
        if mode.compiler == "precompile" and "precompile" in sys.modules:
            import precompile

            t = time.perf_counter()
            try:
                precompile.flush()
            except Exception as e:  # noqa: BLE001
                res["error"] = res["error"] or f"flush failed: {type(e).__name__}: {e}"
            res["flush_s"] = time.perf_counter() - t
            res["precompile_stats"] = _precompile_stats(res)
            if mode.writer:
                res["package_bytes"] = _dir_size(os.environ.get("PRECOMPILE_CACHE_DIR"))
        if mode.megacache == "save" and torch is not None and compiled_out is not None:
            t = time.perf_counter()
            try:
                saved = torch.compiler.save_cache_artifacts()
                if saved is None:
                    res["megacache_error"] = "save_cache_artifacts() returned None"
                else:
                    blob, info = saved
                    with open(mega_path, "wb") as fh:
                        fh.write(blob)
                    res["megacache_bytes"] = len(blob)
                    res["megacache_info"] = str(info)[:500]
            except Exception as e:  # noqa: BLE001
                res["megacache_error"] = f"{type(e).__name__}: {e}"[:2000]
            res["megacache_save_s"] = time.perf_counter() - t
        if mode.caching_precompile and torch is not None:
            if mode.writer and compiled_out is not None:
                t = time.perf_counter()
                try:
                    from torch._dynamo.precompile_context import PrecompileContext

                    debug = PrecompileContext.save_to_dynamo_cache()
                    res["pt_precompile_saved"] = str(debug)[:800]
                except Exception as e:  # noqa: BLE001
                    res["pt_precompile_save_error"] = f"{type(e).__name__}: {e}"[:2000]
                res["pt_precompile_save_s"] = time.perf_counter() - t
                res["package_bytes"] = _dir_size(
                    os.path.join(os.environ.get("TORCHINDUCTOR_CACHE_DIR", ""), "dynamo"))
            with contextlib.suppress(Exception):
                from torch._dynamo.utils import counters

                res["dynamo_cache_counters"] = dict(counters["dynamo_cache"])
        if mode.compiler is not None:
            try:
                from torch._dynamo.utils import counters

                res["frames_traced"] = int(counters["frames"].get("total", 0))
            except Exception:  # noqa: BLE001
                res["frames_traced"] = None
        else:
            res["frames_traced"] = 0
        if counts is not None:
            res.update(_probe_results(counts))
        else:
            res.update(codegens=0, cpp_builds=0)
        if compiled_out is not None and built is not None:
            try:
                if mode.stance and torch is not None:
                    torch.compiler.set_stance("force_eager")
                if built.reset is not None:
                    built.reset()
                ref = built.run(built.target, built.inputs)
                res["matches_eager"], res["max_abs_diff"] = _compare(
                    compiled_out, ref, built.atol, built.rtol)
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
                        "PRECOMPILE_STRICT", "TORCHINDUCTOR_CACHE_DIR", "TMPDIR",
                        "TORCH_CACHING_PRECOMPILE", "XDG_CACHE_HOME")}
    env["TORCHINDUCTOR_CACHE_DIR"] = dirs["inductor:" + mode.inductor]
    env["TMPDIR"] = dirs["tmp:" + mode.tmp]
    if mode.precompile is not None:
        env["PRECOMPILE_CACHE_DIR"] = dirs["precompile:" + mode.precompile]
    if mode.home is not None:
        env["HOME"] = dirs["home:" + mode.home]
    if "artifacts" in dirs:
        env[ARTIFACTS_ENV] = dirs["artifacts"]
    env["PYTHONUNBUFFERED"] = "1"
    return env


def slot_dirs(root: str, modes: list[Mode], repeat_root: str | None = None) -> dict[str, str]:
    """Directories for the modes' slots under ``root``; slots named ``new*`` go under
    ``repeat_root`` (a directory of its own for each repeat) when given."""
    dirs = {}
    for m in modes:
        for kind, slot in (("inductor", m.inductor), ("tmp", m.tmp),
                           ("precompile", m.precompile), ("home", m.home)):
            if slot is not None and f"{kind}:{slot}" not in dirs:
                base = repeat_root if (repeat_root and slot.startswith("new")) else root
                path = os.path.join(base, f"{kind}-{slot}")
                os.makedirs(path, exist_ok=True)
                dirs[f"{kind}:{slot}"] = path
    dirs["artifacts"] = os.path.join(root, "artifacts")
    os.makedirs(dirs["artifacts"], exist_ok=True)
    return dirs


def parse_report(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def run_script(cmd: list[str], env: dict[str, str], timeout: float, what: dict) -> dict:
    """Run one child command; return its JSON report (``what`` merged in on failure) with the
    parent's wall time and the tail of its stderr."""
    env = dict(env)
    env[LAUNCH_ENV] = repr(time.time())
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                           check=False)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return {**what, "ok": False, "error": f"timed out after {timeout:.0f} s",
                "wall_s": time.perf_counter() - t, "stderr_tail": err[-3000:]}
    wall = time.perf_counter() - t
    res = parse_report(p.stdout)
    if res is None:
        res = {**what, "ok": False, "error": f"child exited {p.returncode} without a report"}
    res["wall_s"] = wall
    res["returncode"] = p.returncode
    if p.stderr.strip():
        res["stderr_tail"] = p.stderr[-1500:] if res.get("ok") else p.stderr[-4000:]
    return res


def run_child(mode: Mode, workload: str, env: dict[str, str], timeout: float,
              python: str = sys.executable, log=None) -> dict:
    """Spawn ``warm_start.py --child`` and return its JSON report plus the parent's wall time."""
    cmd = [python, os.path.abspath(__file__), "--child", mode.name, workload]
    res = run_script(cmd, env, timeout, {"mode": mode.name, "workload": workload})
    if log is not None and res.get("stderr_tail") and os.environ.get("WARM_START_VERBOSE"):
        log.write(res["stderr_tail"])
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
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "mem_total_kb": None,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch": version("torch"),
        "precompile": version("precompile"),
        "transformers": version("transformers"),
        "matplotlib": version("matplotlib"),
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("TORCH", "PRECOMPILE", "OMP_", "MKL_"))},
    }
    with contextlib.suppress(Exception):
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True,
            timeout=10).stdout.strip() or None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            info["mem_total_kb"] = int(fh.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return info


def _status(res: dict) -> str:
    if res.get("skipped"):
        return f"skipped: {res['skipped']}"
    if res.get("ok"):
        return "ok"
    if res.get("error") is None:
        return f"MISMATCH (max abs diff {res.get('max_abs_diff')})"
    return f"FAILED: {str(res.get('error')).splitlines()[0][:200]}"


def run_startup(workload_names: list[str], modes: list[Mode], repeat: int, cold_repeat: int,
                timeout: float, scratch: str, verbose: bool = False, out=sys.stdout) -> list[dict]:
    """Every (workload, mode, repeat) in a fresh process. Writers run in the first
    ``cold_repeat`` repeats, readers in every repeat."""
    runs: list[dict] = []
    for w in workload_names:
        root = None
        skipped = None
        for r in range(repeat):
            with_writers = r < cold_repeat
            if with_writers:
                root = os.path.join(scratch, f"{w}-w{r}")
            dirs = slot_dirs(root, modes, repeat_root=os.path.join(scratch, f"{w}-r{r}"))
            for m in modes:
                if m.writer and not with_writers:
                    continue
                if skipped:
                    continue
                res = run_child(m, w, child_env(m, dirs), timeout)
                res["repeat"] = r
                runs.append(res)
                if res.get("skipped"):
                    skipped = res["skipped"]
                    print(f"  {w:<14} skipped: {skipped}", file=out, flush=True)
                    continue
                ttfo = res.get("ttfo_s")
                print(f"  {w:<14} {m.name:<19} run {r + 1}/{repeat}: first output "
                      f"{'  -   ' if ttfo is None else f'{ttfo:6.2f}'} s, wall "
                      f"{res['wall_s']:6.2f} s, frames {res.get('frames_traced')}, codegens "
                      f"{res.get('codegens')}, c++ builds {res.get('cpp_builds')}  "
                      f"{_status(res)}", file=out, flush=True)
                if not res.get("ok") and res.get("stderr_tail") and verbose:
                    print(res["stderr_tail"], file=sys.stderr)
    return runs


def summarize_startup(runs: list[dict], modes: list[Mode], workload_names: list[str]) -> dict:
    summary: dict = {}
    for w in workload_names:
        rs_w = [r for r in runs if r["workload"] == w]
        if any(r.get("skipped") for r in rs_w):
            summary[w] = {"skipped": next(r["skipped"] for r in rs_w if r.get("skipped"))}
            continue
        summary[w] = {}
        for m in modes:
            rs = [r for r in rs_w if r["mode"] == m.name]
            good = [r for r in rs if r.get("ttfo_s") is not None and r.get("error") is None]
            summary[w][m.name] = {
                "ttfo_s": summarize([r["ttfo_s"] for r in good]),
                "wall_s": summarize([r["wall_s"] for r in good]),
                "import_torch_s": summarize([r["import_torch_s"] for r in good
                                             if r.get("import_torch_s") is not None]),
                "frames_traced": [r.get("frames_traced") for r in rs],
                "codegens": [r.get("codegens") for r in rs],
                "cpp_builds": [r.get("cpp_builds") for r in rs],
                "max_abs_diff": max((r.get("max_abs_diff") or 0.0) for r in rs) if rs else None,
                "all_match": bool(rs) and all(r.get("matches_eager") for r in rs),
                "failures": sum(1 for r in rs if r.get("error")),
                "errors": sorted({str(r["error"]).splitlines()[0][:300] for r in rs
                                  if r.get("error")}),
                "package_bytes": next((r["package_bytes"] for r in rs
                                       if r.get("package_bytes")), None),
                "flush_s": summarize([r["flush_s"] for r in good if r.get("flush_s") is not None]),
                "megacache_bytes": next((r["megacache_bytes"] for r in rs
                                         if r.get("megacache_bytes")), None),
            }
        s = summary[w]
        med = {n: (v.get("ttfo_s") or {}).get("median") for n, v in s.items()}
        eager = med.get("eager")
        ratios = {}
        for n, v in med.items():
            if v and eager:
                ratios[f"{n}_vs_eager"] = v / eager
            if v and med.get("cold"):
                ratios[f"{n}_vs_cold"] = v / med["cold"]
        if eager and med.get("precompile_warm") and med.get("torch_warm") \
                and med["torch_warm"] > eager:
            ratios["precompile_warm_overhead_over_torch_warm_overhead"] = (
                (med["precompile_warm"] - eager) / (med["torch_warm"] - eager))
        if med.get("precompile_cold") and med.get("cold"):
            ratios["precompile_cold_minus_cold_s"] = med["precompile_cold"] - med["cold"]
        s["ratios"] = ratios
    return summary


def _fmt(stat: dict | None, repeat: int) -> str:
    if not stat:
        return "-"
    if stat.get("n", 1) > 1:
        return f"{stat['median']:.2f} ({stat['min']:.2f})"
    return f"{stat['median']:.2f}"


def _distinct(values: list) -> str:
    """The distinct values over repeats: '3', or '3,4' when repeats differed."""
    vals = sorted({"?" if v is None else str(v) for v in values}, key=lambda x: (len(x), x))
    return ",".join(vals) if vals else "?"


def md_table(header: list[str], rows: list[list]) -> str:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(wd) for h, wd in zip(header, widths)) + " |",
             "|" + "|".join("-" * (wd + 2) for wd in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(wd) for c, wd in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def _ratio_table(summary: dict, modes: list[Mode], live: list[str], base: str,
                 unit: str) -> str:
    """Markdown: each mode's median time to first output divided by ``base``'s."""
    rows = []
    for w in live:
        rt = summary[w]["ratios"]
        values = [rt.get(f"{m.name}_vs_{base}") for m in modes]
        rows.append([w, *(f"{v:.2f}{unit}" if v else "-" for v in values)])
    return md_table(["workload", *[m.label for m in modes]], rows)


def startup_tables(summary: dict, modes: list[Mode], workloads: list[str]) -> str:
    """Markdown: seconds to first output, ratios, engine work, errors."""
    names = [m.name for m in modes]
    parts = []
    live = [w for w in workloads if "skipped" not in summary[w]]
    for title, key in (("Seconds to first output, from the top of the child script "
                        "(median (min) over runs; writer modes run in the first --cold-repeat runs):",
                        "ttfo_s"),
                       ("Process wall time measured by the parent, spawn to exit (includes "
                        "saving at exit):", "wall_s")):
        rows = []
        for w in live:
            row = [w]
            for m in modes:
                s = summary[w][m.name]
                cell = _fmt(s.get(key), 0)
                if s["failures"]:
                    cell += f" [{s['failures']} FAILED]"
                elif not s["all_match"]:
                    cell += " [MISMATCH]"
                row.append(cell)
            rows.append(row)
        parts.append(f"{title}\n\n" + md_table(["workload", *[m.label for m in modes]], rows))
    parts.append("Time to first output as a multiple of eager (medians, same run):\n\n"
                 + _ratio_table(summary, modes, live, "eager", "x"))
    if "cold" in names:
        parts.append("Time to first output as a fraction of cold torch.compile (medians):\n\n"
                     + _ratio_table(summary, modes, live, "cold", ""))
    rows = []
    for w in live:
        row = [w]
        for m in modes:
            s = summary[w][m.name]
            row.append("-" if m.compiler is None else " / ".join(
                _distinct(s[k]) for k in ("frames_traced", "codegens", "cpp_builds")))
        rows.append(row)
    parts.append("Engine work in each process: frames traced / Inductor codegens / C++ "
                 "builds:\n\n" + md_table(["workload", *[m.label for m in modes]], rows))
    errs = [f"* {w} / {m.name}: {e}" for w in live for m in modes
            for e in summary[w][m.name]["errors"]]
    skipped = [f"* {w}: skipped ({summary[w]['skipped']})" for w in workloads
               if "skipped" in summary[w]]
    if errs or skipped:
        parts.append("Failures and skips:\n\n" + "\n".join(skipped + errs))
    return "\n\n".join(parts)


def parent_main(args: argparse.Namespace) -> int:
    workload_names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    sys.path.insert(0, HERE)
    import workloads  # the registry only; does not import torch

    for w in workload_names:
        if w not in workloads.NAMES:
            raise SystemExit(f"unknown workload {w!r}; known: {', '.join(workloads.NAMES)}")
    modes = resolve_modes([m.strip() for m in args.modes.split(",") if m.strip()])
    scratch = tempfile.mkdtemp(prefix="warm_start_")
    t_start = time.perf_counter()
    print(f"warm-start benchmark: workloads={','.join(workload_names)} "
          f"modes={','.join(m.name for m in modes)} repeat={args.repeat}", flush=True)
    try:
        runs = run_startup(workload_names, modes, args.repeat,
                           args.cold_repeat if args.cold_repeat else args.repeat,
                           args.timeout, scratch, args.verbose)
    finally:
        if args.keep:
            print(f"kept scratch dir {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    summary = summarize_startup(runs, modes, workload_names)
    print("\n" + startup_tables(summary, modes, workload_names))
    total = time.perf_counter() - t_start
    print(f"\ntotal benchmark time {total:.0f} s")
    report = {
        "benchmark": "warm_start",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "settings": {"workloads": workload_names, "modes": [m.name for m in modes],
                     "repeat": args.repeat, "backend": "inductor", "timeout_s": args.timeout},
        "modes": {m.name: dataclasses.asdict(m) for m in modes},
        "summary": summary,
        "runs": runs,
        "total_s": total,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(report, fh, indent=2, default=str)
    print(f"results written to {args.json}")
    failed = [r for r in runs if not r.get("ok") and not r.get("skipped")]
    return 1 if failed else 0


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
    ap.add_argument("--fresh", action="store_true", help="(kept for compatibility; "
                    "precompile_fresh is in the default modes)")
    ap.add_argument("--repeat", type=int, default=1, help="fresh runs per mode (default 1)")
    ap.add_argument("--cold-repeat", type=int, default=0,
                    help="repeats that also run the writer modes (default: all)")
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
