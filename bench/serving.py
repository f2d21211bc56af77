#!/usr/bin/env python3
"""Serving benchmark: K models x B shape buckets, the way an inference fleet starts replicas.

    python bench/serving.py [--k 2] [--buckets 3] [--repeat 1] [--entries 1,10,100]
                            [--out bench/results/serving]
    python -m bench --only serving [--serving-k 2 --serving-buckets 3]

A generated module holds K functions with the same architecture and their own weights
(``f_k(x) = layer_norm(gelu(x @ w1_k) @ w2_k + x)``, d=128, hidden 256), each compiled with
``dynamic=False`` for B batch sizes (1, 8, 32, 64, ...): K*B buckets, B guarded entries per
function, and the same kernels in every function (one per bucket shape).

Every number comes from a fresh process:

* **ready**: seconds from process start (the parent's spawn time) until every bucket has
  returned its first output, for eager; cold ``torch.compile``; PyTorch's warm caches (the
  same Inductor dir and TMPDIR as its cold run); and a **fresh replica with the baked cache**:
  precompile's store written by one cold process, copied, and loaded with an empty Inductor
  dir and TMPDIR under ``fail_on_recompile``. Frames traced and C++ builds are reported.
* **per call**: µs per call for the last-compiled of 1/10/100 entries (``overhead.py guards``).
* **store bytes**: the baked store as written (each kernel once, ``blob-<sha256>``), and the
  same packages with every kernel embedded in each package that uses it (the layout before
  shared kernels: package bytes plus the kernels it names).

Writes ``<out>.json``, ``<out>.md`` and, if matplotlib is installed, ``<out>.png``. The full
run for the README: ``python bench/serving.py --k 4 --buckets 6 --repeat 3``.
"""
import time

_T0 = time.time()

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

import overhead  # noqa: E402  (torch-free at import)
import warm_start  # noqa: E402

BATCHES = (1, 8, 32, 64, 128, 4, 16, 2)
MODES = ("eager", "pt_cold", "pt_warm", "pc_cold", "pc_replica")
READERS = ("eager", "pt_warm", "pc_replica")


def module_source(k: int) -> str:
    """K functions with one architecture: each its own code object, the same kernels."""
    lines = ["import torch", "", "D, H = 128, 256", ""]
    for i in range(k):
        lines += [f"def f{i}(x, w1, w2):",
                  "    h = torch.nn.functional.gelu(x @ w1)",
                  "    return torch.nn.functional.layer_norm(h @ w2 + x, (D,))", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------ children


def child(mode: str, k: int, buckets: int, gen_dir: str) -> dict:
    launch = float(os.environ.get(warm_start.LAUNCH_ENV, _T0))
    counts = warm_start._install_probes()
    sys.path.insert(0, gen_dir)
    import torch

    import serving_fns

    torch._dynamo.config.recompile_limit = max(8, buckets)
    gen = torch.Generator().manual_seed(0)
    weights = [(torch.randn(128, 256, generator=gen) / 16, torch.randn(256, 128, generator=gen) / 16)
               for _ in range(k)]
    raw = [getattr(serving_fns, f"f{i}") for i in range(k)]
    if mode == "eager":
        fns = raw
    elif mode.startswith("pt_"):
        fns = [torch.compile(f, dynamic=False) for f in raw]
    else:
        import precompile

        fns = [precompile.cached(f, dynamic=False) for f in raw]
    if mode == "pc_replica":
        torch.compiler.set_stance("fail_on_recompile")
    xs = [torch.randn(b, 128, generator=gen) for b in BATCHES[:buckets]]
    ok = True
    with torch.no_grad():
        for fn, (w1, w2), f in zip(fns, weights, raw):
            for x in xs:
                ok &= bool(torch.allclose(fn(x, w1, w2), f(x, w1, w2), atol=1e-4, rtol=1e-4))
    ready = time.time() - launch
    torch.compiler.set_stance("default")
    from torch._dynamo.utils import counters

    res = {"mode": mode, "ready_s": ready, "matches_eager": ok,
           "frames_traced": int(counters["frames"].get("total", 0)),
           **warm_start._probe_results(counts)}
    if mode.startswith("pc_"):
        import precompile

        precompile.flush()
        res["precompile_stats"] = precompile.stats()
    return res


def child_store_bytes(store_dir: str) -> dict:
    """The store as written (kernels once) and as it would be with every kernel embedded in
    each package that names it."""
    from precompile.format import envelope as format

    shared = embedded = packages = blobs = 0
    kernel_sizes: dict[str, int] = {}
    named: list[list[str]] = []
    for name in sorted(n for n in os.listdir(store_dir) if n.endswith(".pcpkg")):
        path = os.path.join(store_dir, name)
        size = os.path.getsize(path)
        shared += size
        with open(path, "rb") as fh:
            env = format.decode(fh.read())
        if name.startswith("blob-"):
            blobs += 1
            kernel_sizes.update({d: len(b) for d, b in env.blobs.items()})
        else:
            packages += 1
            embedded += size
            named.append([kd["blob"] for kd in env.manifest.get("kernels", [])])
    embedded += sum(kernel_sizes.get(d, 0) for refs in named for d in refs)
    return {"packages": packages, "kernel_blobs": blobs, "kernel_refs": sum(map(len, named)),
            "shared_bytes": shared, "embedded_bytes": embedded}


def child_main(argv: list[str]) -> int:
    res: dict = {"ok": True}
    try:
        if argv[0] == "store":
            res.update(child_store_bytes(argv[1]))
        else:
            res.update(child(argv[0], int(argv[1]), int(argv[2]), argv[3]))
    except BaseException as e:  # noqa: BLE001
        res.update(ok=False, error=f"{type(e).__name__}: {e}"[:2000],
                   traceback=traceback.format_exc()[-4000:])
    print(json.dumps(res, default=str), flush=True)
    return 0 if res["ok"] else 1


# ------------------------------------------------------------------------ parent


def _spawn(args: list[str], env: dict[str, str], timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", *args]
    return warm_start.run_script(cmd, env, timeout, {"args": args})


def _env(**dirs: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PRECOMPILE_") and k != "TORCHINDUCTOR_CACHE_DIR"}
    for name, path in dirs.items():
        os.makedirs(path, exist_ok=True)
        env[name] = path
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_serving(k: int, buckets: int, repeat: int, entries: list[int], timeout: float,
                scratch: str, out=sys.stdout) -> dict:
    """Every mode in fresh processes; returns the raw runs, store bytes and guard runs."""
    gen = os.path.join(scratch, "gen")
    os.makedirs(gen, exist_ok=True)
    with open(os.path.join(gen, "serving_fns.py"), "w") as fh:
        fh.write(module_source(k))
    pt = {"TORCHINDUCTOR_CACHE_DIR": os.path.join(scratch, "pt_ind"),
          "TMPDIR": os.path.join(scratch, "pt_tmp")}
    baked = os.path.join(scratch, "baked")
    runs: list[dict] = []

    def one(mode: str, env: dict[str, str], r: int) -> None:
        res = _spawn([mode, str(k), str(buckets), gen], env, timeout)
        res.update(mode=mode, repeat=r)
        runs.append(res)
        print(f"  serving {mode:<10} run {r + 1}: ready {res.get('ready_s') or float('nan'):.2f} s"
              f", frames traced {res.get('frames_traced')}, C++ builds {res.get('cpp_builds')}"
              f"{'' if res.get('ok') and res.get('matches_eager') else ' FAILED: ' + str(res.get('error') or 'differs from eager')}",
              file=out, flush=True)

    one("pt_cold", _env(**pt), 0)
    one("pc_cold", _env(PRECOMPILE_CACHE_DIR=baked,
                        TORCHINDUCTOR_CACHE_DIR=os.path.join(scratch, "pc_ind"),
                        TMPDIR=os.path.join(scratch, "pc_tmp")), 0)
    for r in range(repeat):
        one("eager", _env(), r)
        one("pt_warm", _env(**pt), r)
        replica = os.path.join(scratch, f"replica{r}")
        shutil.copytree(baked, os.path.join(replica, "store"))
        one("pc_replica", _env(PRECOMPILE_CACHE_DIR=os.path.join(replica, "store"),
                               TORCHINDUCTOR_CACHE_DIR=os.path.join(replica, "ind"),
                               TMPDIR=os.path.join(replica, "tmp")), r)
    store = _spawn(["store", baked], _env(), timeout)
    print(f"  store: {store}", file=out, flush=True)
    guard_runs = overhead.run_guards(entries, 2000, 1, timeout, os.path.join(scratch, "guards"),
                                     out=out) if entries else []
    return {"k": k, "buckets": buckets, "repeat": repeat, "runs": runs, "store": store,
            "guards": guard_runs}


def _median(runs: list[dict], mode: str, key: str) -> float | None:
    vals = [r[key] for r in runs if r.get("mode") == mode and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def tables(report: dict) -> str:
    runs = report["runs"]
    eager = _median(runs, "eager", "ready_s")
    rows = []
    labels = {"eager": "eager", "pt_cold": "cold torch.compile",
              "pt_warm": "PyTorch warm caches", "pc_cold": "precompile cold (bakes the store)",
              "pc_replica": "**precompile, fresh replica with the baked store**"}
    for mode in MODES:
        ready = _median(runs, mode, "ready_s")
        rows.append([labels[mode], f"{ready:.2f}" if ready else "-",
                     f"{ready / eager:.2f}x" if ready and eager else "-",
                     ",".join(sorted({str(r.get('frames_traced')) for r in runs
                                      if r.get('mode') == mode})),
                     ",".join(sorted({str(r.get('cpp_builds')) for r in runs
                                      if r.get('mode') == mode})),
                     "yes" if all(r.get("matches_eager") for r in runs
                                  if r.get("mode") == mode) else "NO"])
    k, b = report["k"], report["buckets"]
    out = [f"### Time to all {k}x{b} buckets ready (seconds from process start, median of "
           f"{report['repeat']} reader run(s); writers once)", "",
           warm_start.md_table(["replica", "ready s", "vs eager", "frames traced",
                                "C++ builds", "= eager"], rows), ""]
    st = report["store"]
    if st.get("ok"):
        saved = 1 - st["shared_bytes"] / st["embedded_bytes"] if st["embedded_bytes"] else 0
        out += ["### Store bytes", "", warm_start.md_table(
            ["packages", "kernels named", "kernel blobs stored", "each kernel once (now)",
             "kernels embedded per package (before)", "saved"],
            [[str(st["packages"]), str(st["kernel_refs"]), str(st["kernel_blobs"]),
              f"{st['shared_bytes']:,}", f"{st['embedded_bytes']:,}", f"{saved:.0%}"]]), ""]
    if report["guards"]:
        out += ["### Per call (µs, tiny function, backend=eager, dynamic=False; 'last' is the "
                "last-compiled entry)", "", overhead.guards_table(report["guards"]), ""]
    return "\n".join(out)


def plot(report: dict, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    modes = [m for m in MODES if _median(report["runs"], m, "ready_s")]
    vals = [_median(report["runs"], m, "ready_s") for m in modes]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(modes, vals)
    ax.set_xlabel(f"seconds until all {report['k']}x{report['buckets']} buckets are ready")
    fig.tight_layout()
    fig.savefig(path)
    return True


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=2, help="functions/models")
    ap.add_argument("--buckets", type=int, default=3, help=f"batch sizes, at most {len(BATCHES)}")
    ap.add_argument("--repeat", type=int, default=1, help="reader runs per mode")
    ap.add_argument("--entries", default="1,10,100", help="per-call: entries ('' to skip)")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "serving"))
    args = ap.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="bench_serving_")
    try:
        report = run_serving(args.k, min(args.buckets, len(BATCHES)), args.repeat,
                             [int(e) for e in args.entries.split(",") if e], args.timeout,
                             scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report["machine"] = warm_start.machine_info()
    text = tables(report)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as fh:
        json.dump(report, fh, indent=2, default=str)
    plotted = plot(report, args.out + ".png")
    with open(args.out + ".md", "w") as fh:
        fh.write(f"# Serving benchmark (K={args.k}, B={args.buckets})\n\n{text}\n"
                 + ("" if plotted else "\n(no plot: matplotlib is not installed)\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
