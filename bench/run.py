#!/usr/bin/env python3
"""The benchmark suite: every scenario in fresh processes, one command.

    python -m bench [--quick] [--repeat N] [--cold-repeat N] [--workloads a,b] [--modes ...]
                    [--skip startup,guards,frames,profile] [--profile-workload transformer]
    make bench      (same as python -m bench)
    python bench/run.py ...

Scenarios (the parent never imports torch; every measurement is a new Python process):

  startup  seconds to first output per workload and mode (bench/warm_start.py): eager, cold
           torch.compile, PyTorch's default warm caches, PyTorch's mega-cache
           (save/load_cache_artifacts) into empty dirs, PyTorch's caching_precompile
           (cold writer, warm reader), precompile cold / warm / fresh machine. Also package
           sizes and the time precompile adds to a cold run (precompile cold - cold, flush).
  guards   steady-state µs per call with 1/10/100 guarded entries, precompile-reinstalled vs
           plain torch.compile vs eager (bench/overhead.py guards)
  frames   load+install time as the number of frames grows (bench/overhead.py frames)
  profile  where a precompile warm start spends its time, one workload
           (bench/profile_start.py)
  serving  K models x B shape buckets: seconds until every bucket is ready in a fresh replica
           with the baked store vs PyTorch's warm caches and eager, store bytes with and
           without shared kernels (bench/serving.py; --serving-k, --serving-buckets)
  sweep    (only with --only sweep) 40+ model families (transformers, diffusers, timm), cold
           then warm in fresh processes: warm-start yes/no, frames traced, warm/eager time,
           the reason for every no (bench/sweep.py; --sweep-backend aot_eager|inductor,
           --sweep-families; writes bench/results/sweep.{json,md})

Repeats: every mode runs ``--repeat`` times (default 3; min and median reported). The
writer modes (cold, pt_precompile_cold, precompile_cold: 20-60 s each on 2 cores) run in the
first ``--cold-repeat`` repeats (default: all of them; ``--cold-repeat 1`` cuts a full run
on 2 cores from about 75 to 40 minutes). ``--quick``: repeat 1, workloads mlp,graph_breaks,
guards with 1,10 entries, frames 10,100, profile of mlp.

Writes bench/results/latest.json (raw per-run numbers, machine info, summaries),
bench/results/latest.md (the tables) and, if matplotlib is installed,
bench/results/latest.png (time to first output per workload and mode). Goals are reported,
not asserted.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import overhead  # noqa: E402  (torch-free at import)
import profile_start  # noqa: E402
import serving  # noqa: E402
import sweep  # noqa: E402
import warm_start  # noqa: E402

RESULTS = os.path.join(HERE, "results")
FULL_WORKLOADS = "mlp,transformer,convnet,graph_breaks,train_step,dynamic_shapes,gpt2,bert"
QUICK_WORKLOADS = "mlp,graph_breaks"
SCENARIOS = ("startup", "guards", "frames", "profile", "serving")
OPT_IN = ("sweep",)  # run only when --only names them


def goals(summary: dict, guard_runs: list[dict]) -> str:
    lines = []
    for w, s in summary.items():
        if "skipped" in s:
            continue
        rt = s.get("ratios", {})
        warm = rt.get("precompile_warm_vs_eager")
        ov = rt.get("precompile_warm_overhead_over_torch_warm_overhead")
        fresh = rt.get("precompile_fresh_vs_eager")
        builds = s.get("precompile_fresh", {}).get("cpp_builds") or []
        parts = []
        if warm is not None:
            parts.append(f"same-machine warm {warm:.2f}x eager (goal <= 1.3x: "
                         f"{'met' if warm <= 1.3 else 'NOT met'})")
        if ov is not None:
            parts.append(f"warm overhead over eager = {ov:.2f} of torch warm caches' overhead "
                         f"(goal <= 0.20: {'met' if ov <= 0.2 else 'NOT met'})")
        if fresh is not None:
            ok = fresh <= 1.5 and builds and all(b == 0 for b in builds)
            parts.append(f"fresh machine {fresh:.2f}x eager with C++ builds {builds} "
                         f"(goal <= 1.5x and 0 builds: {'met' if ok else 'NOT met'})")
        if parts:
            lines.append(f"* {w}: " + "; ".join(parts))
    for n in sorted({r["entries"] for r in guard_runs if r.get("entries") is not None}):
        def m(mode, key):
            return overhead._med([r.get(key) for r in guard_runs
                                  if r.get("entries") == n and r.get("mode") == mode])
        for key, what in (("us_last_compiled", "last-compiled"),
                          ("us_first_compiled", "first-compiled")):
            p, w = m("plain", key), m("pc_warm", key)
            if p and w:
                lines.append(f"* per-call overhead, {n} entries, {what} shape: precompile "
                             f"{w:.2f} µs vs plain torch.compile {p:.2f} µs = {w / p:.2f}x "
                             f"(goal <= 1.0x within noise: "
                             f"{'met' if w <= p * 1.1 else 'NOT met'})")
    return "\n".join(lines) or "(no data)"


def sizes_table(summary: dict) -> str:
    rows = []
    for w, s in summary.items():
        if "skipped" in s:
            continue
        pc = s.get("precompile_cold", {})
        pt = s.get("pt_precompile_cold", {})
        cold = s.get("cold", {})
        rt = s.get("ratios", {})
        added = rt.get("precompile_cold_minus_cold_s")
        cold_med = (cold.get("ttfo_s") or {}).get("median")
        rows.append([
            w,
            f"{pc['package_bytes'] / 1024:.0f}" if pc.get("package_bytes") else "-",
            f"{cold['megacache_bytes'] / 1024:.0f}" if cold.get("megacache_bytes") else "-",
            f"{pt['package_bytes'] / 1024:.0f}" if pt.get("package_bytes") else "-",
            f"{added:+.2f}" if added is not None else "-",
            f"{added / cold_med * 100:+.0f}%" if added is not None and cold_med else "-",
            f"{(pc.get('flush_s') or {}).get('median', 0):.3f}" if pc.get("flush_s") else "-",
        ])
    return warm_start.md_table(
        ["workload", "precompile package KiB", "megacache KiB", "pt caching_precompile KiB",
         "precompile cold - cold (s)", "as % of cold", "precompile.flush() s"], rows)


def pt_precompile_notes(runs: list[dict]) -> str:
    lines = []
    for r in runs:
        if r.get("mode") not in ("pt_precompile_cold", "pt_precompile_warm", "megacache_warm",
                                 "cold"):
            continue
        notes = []
        if r.get("error"):
            notes.append(f"error: {str(r['error']).splitlines()[0][:300]}")
        for k in ("pt_precompile_save_error", "megacache_error"):
            if r.get(k):
                notes.append(f"{k}: {r[k][:300]}")
        if r.get("mode") == "pt_precompile_warm" and r.get("frames_traced"):
            notes.append(f"warm reader traced {r['frames_traced']} frame(s), dynamo_cache "
                         f"counters {r.get('dynamo_cache_counters')}")
        tail = r.get("stderr_tail") or ""
        if r.get("mode", "").startswith("pt_") and ("Failed" in tail or "Traceback" in tail):
            key = next((ln.strip() for ln in tail.splitlines()
                        if "Error" in ln or "Failed" in ln), "")[:300]
            notes.append(f"stderr: {key}")
        if notes:
            lines.append(f"* {r['workload']} / {r['mode']} (run {r.get('repeat', 0) + 1}): "
                         + "; ".join(notes))
    return "\n".join(dict.fromkeys(lines)) or "(none)"


def plot(summary: dict, modes: list, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - optional
        return False
    ws = [w for w, s in summary.items() if "skipped" not in s]
    if not ws:
        return False
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(ws)), 5))
    width = 0.8 / len(modes)
    for i, m in enumerate(modes):
        vals = [((summary[w].get(m.name, {}).get("ttfo_s") or {}).get("median") or 0)
                for w in ws]
        ax.bar([j + i * width for j in range(len(ws))], vals, width, label=m.label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(ws))])
    ax.set_xticklabels(ws, rotation=20)
    ax.set_ylabel("seconds to first output (median)")
    ax.set_yscale("log")
    ax.set_title("Time to first output per workload and mode (fresh processes)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run (~6 min)")
    ap.add_argument("--repeat", type=int, default=None, help="reader runs (default 3; quick 1)")
    ap.add_argument("--cold-repeat", type=int, default=None,
                    help="repeats that also run the writer modes (default: all)")
    ap.add_argument("--workloads", default=None)
    ap.add_argument("--modes", default=warm_start.DEFAULT_MODES)
    ap.add_argument("--skip", default="", help=f"scenarios to skip: {','.join(SCENARIOS)}")
    ap.add_argument("--only", default="", help="run only these scenarios")
    ap.add_argument("--entries", default=None, help="guards: entries (default 1,10,100)")
    ap.add_argument("--frames", default=None, help="frames: counts (default 10,100,1000)")
    ap.add_argument("--profile-workload", default=None, help="default transformer (quick: mlp)")
    ap.add_argument("--serving-k", type=int, default=2, help="serving: models (default 2)")
    ap.add_argument("--serving-buckets", type=int, default=3,
                    help="serving: batch-size buckets per model (default 3)")
    ap.add_argument("--sweep-backend", default="aot_eager",
                    help="sweep: aot_eager (the CI tier's) or inductor (the full bench)")
    ap.add_argument("--sweep-families", default="",
                    help="sweep: family names, groups or libraries (default all)")
    ap.add_argument("--profile", action="store_true",
                    help="(the profile scenario runs by default; kept for explicitness)")
    ap.add_argument("--out", default=os.path.join(RESULTS, "latest"),
                    help="output prefix (.json, .md, .png)")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    args.cold_repeat = min(args.cold_repeat or repeat, repeat)
    wl = [w for w in (args.workloads or (QUICK_WORKLOADS if args.quick else FULL_WORKLOADS))
          .split(",") if w]
    entries = [int(x) for x in (args.entries or ("1,10" if args.quick else "1,10,100"))
               .split(",")]
    frames = [int(x) for x in (args.frames or ("10,100" if args.quick else "10,100,1000"))
              .split(",")]
    prof_w = args.profile_workload or ("mlp" if args.quick else "transformer")
    todo = [s for s in SCENARIOS if s not in args.skip.split(",")
            and (not args.only or s in args.only.split(","))]
    todo += [s for s in OPT_IN if s in args.only.split(",")]
    import workloads

    for w in wl:
        if w not in workloads.NAMES:
            raise SystemExit(f"unknown workload {w!r}; known: {', '.join(workloads.NAMES)}")
    modes = warm_start.resolve_modes([m for m in args.modes.split(",") if m])
    scratch = tempfile.mkdtemp(prefix="bench_")
    t0 = time.perf_counter()
    report: dict = {"benchmark": "precompile suite", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "machine": warm_start.machine_info(),
                    "settings": {"quick": args.quick, "repeat": repeat,
                                 "cold_repeat": args.cold_repeat, "workloads": wl,
                                 "modes": [m.name for m in modes], "scenarios": todo,
                                 "guard_entries": entries, "frames": frames,
                                 "profile_workload": prof_w, "backend": "inductor"},
                    "scenario_seconds": {}}
    md: list[str] = [f"# precompile benchmark ({report['created']})", "",
                     f"Machine: {report['machine'].get('cpu_model')}, "
                     f"{report['machine'].get('cpu_affinity')} cores, torch "
                     f"{report['machine'].get('torch')}, Python {report['machine'].get('python')}"
                     f", load average at start {report['machine'].get('loadavg')}. Readers: "
                     f"{repeat} run(s), writers: {args.cold_repeat}. Every number is a fresh "
                     "process; compare ratios, not absolute seconds, across runs.", ""]
    summary: dict = {}
    guard_runs: list[dict] = []

    def finish(scenario: str, text: str, started: float) -> None:
        """Print a scenario's tables, add them to the markdown, record its duration."""
        print("\n" + text + "\n", flush=True)
        md.extend([text, ""])
        report["scenario_seconds"][scenario] = time.perf_counter() - started

    try:
        if "startup" in todo:
            t = time.perf_counter()
            print(f"== startup: {','.join(wl)} x {','.join(m.name for m in modes)}", flush=True)
            runs = warm_start.run_startup(wl, modes, repeat, args.cold_repeat, args.timeout,
                                          os.path.join(scratch, "startup"), args.verbose)
            summary = warm_start.summarize_startup(runs, modes, wl)
            report["startup"] = {"summary": summary, "runs": runs,
                                 "modes": {m.name: vars(m) for m in modes}}
            tables = warm_start.startup_tables(summary, modes, wl)
            sizes = sizes_table(summary)
            notes = pt_precompile_notes(runs)
            text = (f"## Start-up\n\n{tables}\n\nPackage sizes and the cost precompile adds "
                    f"to a cold run (medians):\n\n{sizes}\n\nPyTorch caching_precompile / "
                    f"megacache notes:\n\n{notes}")
            finish("startup", text, t)
        if "guards" in todo:
            t = time.perf_counter()
            print(f"== guards: entries {entries}", flush=True)
            guard_runs = overhead.run_guards(entries, 2000, repeat, args.timeout,
                                             os.path.join(scratch, "guards"))
            text = ("## Per-call overhead (guard evaluation), µs per call, min over 5 rounds "
                    "of 2000 calls, median over runs; tiny function, dynamic=False, "
                    "backend=eager\n\n" + overhead.guards_table(guard_runs))
            report["guards"] = {"runs": guard_runs}
            finish("guards", text, t)
        if "frames" in todo:
            t = time.perf_counter()
            print(f"== frames: {frames}", flush=True)
            frame_runs = overhead.run_frames(frames, repeat, args.timeout,
                                             os.path.join(scratch, "frames"), kind="funcs")
            text = ("## Load + install time vs number of frames (N functions, one package "
                    "each, backend=eager)\n\n" + overhead.frames_table(frame_runs))
            report["frames"] = {"runs": frame_runs}
            finish("frames", text, t)
        if "profile" in todo:
            t = time.perf_counter()
            print(f"== profile: {prof_w}", flush=True)
            res = profile_start.run_profile(prof_w, False, args.timeout,
                                            os.path.join(scratch, "profile"))
            if res.get("error"):
                text = f"## Profile ({prof_w})\n\nFAILED: {res['error']}"
            else:
                text = (f"## Where a precompile warm start spends its time ({prof_w}, "
                        f"precompile_warm; cProfile of the first call in "
                        f"bench/results/profile_{prof_w}.txt)\n\n"
                        + profile_start.breakdown_table(res))
            report["profile"] = res
            finish("profile", text, t)
        if "serving" in todo:
            t = time.perf_counter()
            print(f"== serving: {args.serving_k} models x {args.serving_buckets} buckets",
                  flush=True)
            res = serving.run_serving(args.serving_k, args.serving_buckets, repeat, [],
                                      args.timeout, os.path.join(scratch, "serving"))
            report["serving"] = res
            finish("serving", "## Serving: K models x B buckets\n\n" + serving.tables(res), t)
        if "sweep" in todo:
            t = time.perf_counter()
            print(f"== sweep: backend {args.sweep_backend}", flush=True)
            res = sweep.run_sweep(args.sweep_backend, args.sweep_families,
                                  scratch=os.path.join(scratch, "sweep"))
            sweep.write(res, os.path.join(RESULTS, "sweep"))
            report["sweep"] = {k: v for k, v in res.items() if k != "runs"}
            finish("sweep", "## Model-family sweep\n\n" + sweep.markdown(res), t)
        if summary or guard_runs:
            text = "## Goals (reported, not asserted)\n\n" + goals(summary, guard_runs)
            print(text, flush=True)
            md += [text, ""]
    finally:
        if args.keep:
            print(f"kept scratch dir {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
        report["total_s"] = time.perf_counter() - t0
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".json", "w") as fh:
            json.dump(report, fh, indent=2, default=str)
        md.append(f"Total benchmark time: {report['total_s']:.0f} s")
        with open(args.out + ".md", "w") as fh:
            fh.write("\n".join(md) + "\n")
        if summary and plot(summary, modes, args.out + ".png"):
            print(f"plot written to {args.out}.png")
    print(f"\ntotal {report['total_s']:.0f} s; results in {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
