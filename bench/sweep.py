#!/usr/bin/env python3
"""The model-family sweep: does every popular model family warm-start?

    python -m bench --only sweep [--sweep-backend aot_eager|inductor] [--sweep-families ...]
    python bench/sweep.py [--backend aot_eager] [--families llama,bert,...|decoder,...]
                          [--batch 8] [--jobs 2] [--timm-python .venv-2.14.1/bin/python]

Families (bench/sweep_families*.py) run in batches: one cold process builds and compiles a
batch (``precompile.cached(torch.compile(model))``, forward plus one training step), then a
fresh warm process runs the same batch against the same precompile cache (and an empty
Inductor cache, so only precompile's packages can help). A family warm-starts when its warm
run traced no frame, installed a package and matched eager. Every other row says why:
the cold run's bypasses ("not stored: ..."), the warm run's miss reasons, a difference to
eager, or the error. The parent imports no torch; batches run ``--jobs`` at a time.

Writes ``<out>.json`` (every row, raw runs, versions) and ``<out>.md`` (the table).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bench"
WORKER = HERE / "sweep_worker.py"
DEFAULT_TIMM_PYTHON = ROOT / ".venv-2.14.1" / "bin" / "python"
PACKAGES = ("torch", "transformers", "diffusers", "timm", "kernels", "torchvision", "peft",
            "accelerate")
# Families that cannot warm-start because of a limit of torch itself, with that limit's name.
# The slow CI tier (tests/ecosystem/test_sweep.py) fails on any other family that does not
# warm-start.
TORCH_LIMITS: dict[str, str] = {}


def family_index(python: str) -> list[dict[str, str]]:
    """name, group and library of every family (asks a worker interpreter: the registry
    imports torch, the parent does not)."""
    code = ("import sys, json; sys.path.insert(0, %r); import sweep_families as f, "
            "sweep_families_other; print(json.dumps([dict(name=x.name, group=x.group, "
            "library=x.library) for x in f.FAMILIES]))" % str(HERE))
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def versions(python: str) -> dict[str, str | None]:
    """The installed release of each package the sweep uses, in ``python``'s environment."""
    code = ("import json, importlib.metadata as m\nv = {}\nfor p in %r:\n    try: v[p] = "
            "m.version(p)\n    except m.PackageNotFoundError: v[p] = None\nprint(json.dumps(v))"
            % (PACKAGES,))
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def run_batch(python: str, names: list[str], phase: str, scratch: Path, backend: str,
              timeout: float, threads: int = 1) -> dict[str, dict[str, Any]]:
    """One worker process (``threads`` intra-op threads: tiny models gain nothing from more,
    and batches run side by side); its RESULT rows by family, and an error row for every
    family it never reported (a crash or a timeout takes the rest of the batch with it)."""
    inductor = scratch / f"inductor-{phase}"
    env = {**os.environ, "PRECOMPILE_CACHE_DIR": str(scratch / "precompile"),
           "TORCHINDUCTOR_CACHE_DIR": str(inductor), "PYTHONDONTWRITEBYTECODE": "1",
           "PRECOMPILE_LOG": "error", "TMPDIR": str(scratch / "tmp"),
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(threads)}
    (scratch / "tmp").mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    cmd = [python, str(WORKER), phase, ",".join(names), "--backend", backend]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                              cwd=str(scratch))
        stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout, stderr, rc = _text(e.stdout), _text(e.stderr), f"timeout after {timeout:.0f} s"
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            row = json.loads(line[len("RESULT "):])
            rows[row["family"]] = row
    tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1:] or ["no output"]
    for name in names:
        rows.setdefault(name, {"family": name, "phase": phase,
                               "error": f"worker exited ({rc}) before this family: "
                                        f"{tail[0][:300]}"})
    return rows


def _text(value: bytes | str | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def verdict(cold: dict[str, Any], warm: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether the family warm-started, and every reason it did not."""
    reasons = [f"{phase} run failed: {r['error']}" for phase, r in (("cold", cold), ("warm", warm))
               if r.get("error")]
    if reasons:
        return False, reasons
    stored_not = [r for r in cold.get("miss_reasons", []) if r.startswith("not stored")]
    reasons += stored_not
    reasons += [f"warm miss: {r}" for r in warm.get("miss_reasons", [])
                if r not in stored_not and not r.endswith("(first compile)")]
    if warm.get("frames"):  # the warm run's recompile reasons stay in the raw runs
        names = ", ".join(warm.get("frames_traced_names", []))
        reasons.append(f"warm run traced {warm['frames']} frame(s)"
                       + (f" ({names})" if names else ""))
    if not warm.get("hits"):
        reasons.append("no package installed")
    for phase, r in (("cold", cold), ("warm", warm)):
        if not r.get("same"):
            reasons.append(f"{phase} results differ from eager (max diff {r.get('max_diff')})")
    ok = not warm.get("frames") and warm.get("hits", 0) >= 1 and bool(warm.get("same"))
    return ok, list(dict.fromkeys(reasons))


def dynamo_gives_up(cold: dict, warm: dict) -> str | None:
    """A torch limit when every frame the warm run traced is one Dynamo failed to compile
    in the cold run too (it runs that frame eagerly and tries again on the next call, in
    every process, with precompile or without), its results eager's; else None."""
    failed = warm.get("frames_failed_count", 0)
    if not warm.get("frames") or failed != warm["frames"] or not warm.get("same"):
        return None
    if not set(warm.get("frames_failed", [])) <= set(cold.get("frames_failed", [])):
        return None
    return ("Dynamo gives up on these frames in the cold run and again in the warm one, with "
            "precompile or without (it compiles nothing there to store): "
            + "; ".join(warm["frames_failed"]))


def summarize(index: list[dict[str, str]], cold: dict, warm: dict) -> list[dict[str, Any]]:
    rows = []
    for fam in index:
        name = fam["name"]
        if name not in cold:
            continue
        c, w = cold[name], warm.get(name, {"error": "not run"})
        if c.get("not_run"):
            rows.append(not_run_row(fam, c["not_run"]))
            continue
        ok, reasons = verdict(c, w)
        ratio = (w["compiled_s"] / w["eager_s"]) if w.get("eager_s") and "compiled_s" in w else None
        limit = TORCH_LIMITS.get(name) or dynamo_gives_up(c, w)
        rows.append({**fam, "warm_start": ok, "frames_warm": w.get("frames"),
                     "frames_cold": c.get("frames"), "warm_s": w.get("compiled_s"),
                     "eager_s": w.get("eager_s"), "cold_s": c.get("compiled_s"),
                     "warm_over_eager": ratio, "train": c.get("train"),
                     "max_diff": w.get("max_diff"), "torch_limit": limit,
                     "reasons": reasons})
    return rows


def not_run_row(family: dict[str, str], why: str) -> dict[str, Any]:
    """The row of a family the sweep could not run here (its library is missing)."""
    return {**family, "warm_start": False, "frames_warm": None, "frames_cold": None,
            "warm_s": None, "eager_s": None, "cold_s": None, "warm_over_eager": None,
            "train": None, "max_diff": None, "torch_limit": None, "reasons": [why],
            "not_run": True}


def table(rows: list[dict[str, Any]]) -> str:
    def f(x: Any, fmt: str = "{:.2f}") -> str:
        return "-" if x is None else fmt.format(x)

    lines = ["| family | group | warm start | frames traced warm (cold) | first call warm s | "
             "eager s | warm/eager | reason |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        limit = [f"torch limit: {r['torch_limit']}"] if r.get("torch_limit") else []
        why = "; ".join(limit + r["reasons"]).replace("|", "\\|").replace("\n", " ")
        verdict_text = "not run" if r.get("not_run") else "yes" if r["warm_start"] else "no"
        group = r["group"] + (" (fwd only)" if r["train"] is False else "")
        lines.append(f"| {r['name']} | {group} | "
                     f"{verdict_text} | {f(r['frames_warm'], '{}')} "
                     f"({f(r['frames_cold'], '{}')}) | {f(r['warm_s'])} | {f(r['eager_s'])} | "
                     f"{f(r['warm_over_eager'])} | {why[:600]} |")
    return "\n".join(lines)


def batches(names: list[str], size: int) -> list[list[str]]:
    return [names[i:i + size] for i in range(0, len(names), size)]


def run_sweep(backend: str = "aot_eager", select: str = "", batch: int = 8, jobs: int = 2,
              timm_python: str = "", timeout: float = 1800, scratch: Path | None = None,
              verbose: bool = True) -> dict[str, Any]:
    """The whole sweep; returns the report (rows, versions, settings, raw runs)."""
    t0 = time.perf_counter()
    own = tempfile.mkdtemp(prefix="sweep-") if scratch is None else None
    scratch = Path(own or scratch)
    timm_py = timm_python or (str(DEFAULT_TIMM_PYTHON) if DEFAULT_TIMM_PYTHON.exists() else "")
    index = family_index(sys.executable)
    wanted = set(select.split(",")) - {""}
    unknown = wanted - {f[k] for f in index for k in ("name", "group", "library")}
    if unknown:
        raise SystemExit(f"unknown families, groups or libraries: {', '.join(sorted(unknown))}; "
                         f"known families: {', '.join(f['name'] for f in index)}")
    index = [f for f in index if not wanted or f["name"] in wanted or f["group"] in wanted
             or f["library"] in wanted]
    report: dict[str, Any] = {"benchmark": "model-family sweep", "backend": backend,
                              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "versions": versions(sys.executable),
                              "loadavg": [round(x, 1) for x in os.getloadavg()]}
    not_run: dict[str, str] = {}
    plan: list[tuple[str, list[str]]] = []
    main_names = [f["name"] for f in index if f["library"] != "timm"]
    timm_names = [f["name"] for f in index if f["library"] == "timm"]
    plan += [(sys.executable, b) for b in batches(main_names, batch)]
    if timm_names and timm_py and _has_timm(timm_py):
        report["timm_versions"] = versions(timm_py)
        plan += [(timm_py, b) for b in batches(timm_names, batch)]
    else:
        for name in timm_names:
            not_run[name] = (f"not run: no interpreter with timm and torchvision "
                             f"(--timm-python; tried {timm_py or 'none'})")
    if verbose:
        print(f"sweep: {len(main_names) + len(timm_names)} families, {len(plan)} batches, "
              f"backend {backend}, versions {report['versions']}", flush=True)
    cold: dict[str, dict] = {}
    warm: dict[str, dict] = {}

    def cold_then_warm(python: str, names: list[str]) -> None:
        cold.update(run_batch(python, names, "cold", scratch, backend, timeout))
        warm.update(run_batch(python, names, "warm", scratch, backend, timeout))
        if verbose:
            for n in names:
                print(f"  {n:20s} cold frames {cold[n].get('frames', '-')!s:4s} warm frames "
                      f"{warm[n].get('frames', '-')!s:4s} {warm[n].get('error', '')[:120]}",
                      flush=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(lambda job: cold_then_warm(*job), plan))
    rows = summarize(index, cold, warm)
    rows += [not_run_row(f, not_run[f["name"]]) for f in index if f["name"] in not_run]
    cpu = sum(max((r.get("process_cpu_s") or 0) for r in runs.values() if r["family"] in b)
              for runs in (cold, warm) for _, b in plan)
    report.update(rows=rows, runs={"cold": cold, "warm": warm}, total_s=time.perf_counter() - t0,
                  worker_cpu_s=cpu,
                  settings={"batch": batch, "jobs": jobs, "timm_python": timm_py})
    if own:
        import shutil

        shutil.rmtree(own, ignore_errors=True)
    return report


def _has_timm(python: str) -> bool:
    probe = "import importlib.util as u; raise SystemExit(u.find_spec('timm') is None)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def markdown(report: dict[str, Any]) -> str:
    rows = report["rows"]
    yes = sum(r["warm_start"] for r in rows)
    vers = ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v)
    timm = report.get("timm_versions")
    head = [f"Model-family sweep ({report['created']}), backend `{report['backend']}`: "
            f"{yes} of {len(rows)} families warm-start. Versions: {vers}"
            + (f"; timm rows: torch {timm.get('torch')}, torchvision {timm.get('torchvision')}, "
               f"timm {timm.get('timm')}" if timm else "")
            + f". Load average at start {report['loadavg']}; sweep took "
              f"{report['total_s']:.0f} s, {report['worker_cpu_s']:.0f} CPU-seconds in its "
              f"workers.", ""]
    return "\n".join(head + [table(rows)]) + "\n"


def write(report: dict[str, Any], out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out + ".json").write_text(json.dumps(report, indent=1, default=str))
    Path(out + ".md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="aot_eager", help="aot_eager (CI tier) or inductor")
    ap.add_argument("--families", default="", help="names, groups or libraries (default all)")
    ap.add_argument("--batch", type=int, default=8, help="families per process")
    ap.add_argument("--jobs", type=int, default=2, help="batches at a time")
    ap.add_argument("--timm-python", default="", help="interpreter with timm + torchvision")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    ap.add_argument("--out", default=str(HERE / "results" / "sweep"))
    args = ap.parse_args(argv)
    report = run_sweep(args.backend, args.families, args.batch, args.jobs, args.timm_python,
                       args.timeout)
    write(report, args.out)
    print("\n" + markdown(report))
    print(f"results in {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
