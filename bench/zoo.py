#!/usr/bin/env python3
"""Real-world coverage: the tests/zoo programs with Inductor, every option side by side.

    python -m bench.zoo [--scenarios llama,t5,...] [--backend inductor] [--out bench/results]

For each scenario (a user program: Hugging Face decoders, an encoder-decoder, ViT, a BERT
training step, generate(), compiled optimizer steps, autocast, recursion through graph
breaks, DDP on 2 gloo ranks), fresh processes in this order:

  eager          nothing compiled (ZOO_MODE=eager)
  torch cold     plain torch.compile, empty Inductor dir
  torch warm     plain torch.compile again, same Inductor dir (PyTorch's default caches)
  pt cold/warm   torch.compile with PyTorch's caching_precompile (its DynamoCache), new dirs
  pc cold/warm   precompile.cached(torch.compile(...)), new dirs; warm under fail_on_recompile

and reports: does a warm start trace nothing (precompile and caching_precompile), frames
traced, precompile's bypass reasons, the largest difference to eager, and seconds to first
output (process start to the program's results) beside eager's. Writes
``<out>/zoo.json`` and ``<out>/zoo.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "tests" / "zoo"
DRIVER = ROOT / "tests" / "_driver.py"
SCENARIOS = ["llama", "qwen2", "t5", "vit", "bert_train", "generate", "optimizer",
             "first_step", "flex_attention", "autocast", "recursion", "ddp"]
# (label, ZOO_MODE, driver phase, directory slot: runs sharing a slot share their caches)
RUNS = [("eager", "eager", "cold", "eager"), ("torch cold", "torch", "cold", "torch"),
        ("torch warm", "torch", "cold", "torch"), ("pt cold", "pt_precompile", "cold", "pt"),
        ("pt warm", "pt_precompile", "cold", "pt"), ("pc cold", "precompile", "cold", "pc"),
        ("pc warm", "precompile", "warm", "pc")]


def run_one(scenario: str, mode: str, phase: str, slot: Path, backend: str) -> dict[str, Any]:
    """One fresh process; its RESULT line, or why there is none."""
    env = {**os.environ, "ZOO_MODE": mode, "ZOO_BACKEND": backend,
           "PRECOMPILE_CACHE_DIR": str(slot / "precompile"),
           "TORCHINDUCTOR_CACHE_DIR": str(slot / "inductor"), "TMPDIR": str(slot / "tmp"),
           "PYTHONDONTWRITEBYTECODE": "1", "PRECOMPILE_LOG": "warning"}
    (slot / "tmp").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(DRIVER), str(ZOO / f"{scenario}.py"), phase],
                          capture_output=True, text=True, env=env, timeout=1800, cwd=str(slot))
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    if "SKIP " in proc.stdout:
        return {"skipped": proc.stdout.strip()}
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": tail[:300], "wall_s": time.perf_counter() - t0}


def summarize(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One table row from a scenario's runs."""
    def secs(label: str) -> float | None:
        return runs.get(label, {}).get("first_output_s")

    def traced(label: str) -> int | None:
        r = runs.get(label, {})
        ranks = (r.get("extra") or {}).get("ranks")
        if ranks:  # DDP: the ranks compile, not the driver
            counts = [s.get("frames_traced") for s in ranks.values()]
            return None if None in counts else sum(counts)
        return r.get("frames") if "frames" in r else None

    def works(label: str) -> bool:
        r = runs.get(label, {})
        return "checks" in r and all(r["checks"].values()) and traced(label) == 0

    cold = runs.get("pc cold", {})
    return {
        "pc_warm_hit": works("pc warm"), "pc_frames_warm": traced("pc warm"),
        "pt_warm_hit": works("pt warm"), "pt_frames_warm": traced("pt warm"),
        "torch_frames_warm": traced("torch warm"),
        "bypasses": [r for r in (cold.get("stats") or {}).get("miss_reasons", [])
                     if r.startswith("not stored")],
        "max_diff": (runs.get("pc warm", {}).get("extra") or {}).get("max_diff"),
        "eager_s": secs("eager"), "torch_warm_s": secs("torch warm"),
        "pt_warm_s": secs("pt warm"), "pc_warm_s": secs("pc warm"),
        "errors": {k: v["error"] for k, v in runs.items() if "error" in v},
    }


def table(rows: dict[str, dict[str, Any]]) -> str:
    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.2f}" if isinstance(x, float) else str(x)

    def ratio(s: dict[str, Any], key: str) -> str:
        if s.get(key) is None or not s.get("eager_s"):
            return "-"
        return f"{s[key]:.2f} ({s[key] / s['eager_s']:.2f}x)"

    lines = ["| program | precompile warm: hit / frames traced | max diff to eager | eager s | "
             "PyTorch warm caches s (frames) | caching_precompile warm | precompile warm s |",
             "|---|---|---|---|---|---|---|"]
    for name, s in rows.items():
        if "skipped" in s:
            lines.append(f"| {name} | skipped: {s['skipped']} | | | | | |")
            continue
        pt_error = s["errors"].get("pt warm") or s["errors"].get("pt cold")
        pt = ("hit" if s["pt_warm_hit"] else f"fails: {pt_error.split(':')[0]}" if pt_error
              else f"retraces ({f(s['pt_frames_warm'])} frames)")
        lines.append(
            f"| {name} | {'yes' if s['pc_warm_hit'] else 'NO'} / {f(s['pc_frames_warm'])} | "
            f"{f(s['max_diff'])} | {f(s['eager_s'])} | {ratio(s, 'torch_warm_s')} "
            f"({f(s['torch_frames_warm'])}) | {pt} | {ratio(s, 'pc_warm_s')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--backend", default="inductor")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    rows: dict[str, dict[str, Any]] = {}
    raw: dict[str, dict[str, Any]] = {}
    for scenario in args.scenarios.split(","):
        with tempfile.TemporaryDirectory(prefix=f"zoo-{scenario}-") as tmp:
            runs: dict[str, dict[str, Any]] = {}
            for label, mode, phase, slot in RUNS:
                runs[label] = run_one(scenario, mode, phase, Path(tmp) / slot, args.backend)
                if "skipped" in runs[label]:
                    break
                print(f"{scenario:11s} {label:11s} "
                      f"{runs[label].get('first_output_s', runs[label].get('error', '?'))}",
                      flush=True)
            raw[scenario] = runs
            skipped = next((r["skipped"] for r in runs.values() if "skipped" in r), None)
            rows[scenario] = {"skipped": skipped} if skipped else summarize(runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "zoo.json").write_text(json.dumps({"backend": args.backend, "rows": rows,
                                              "runs": raw}, indent=1, default=str))
    md = table(rows)
    (out / "zoo.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
