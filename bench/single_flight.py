#!/usr/bin/env python3
"""N processes start together on a cold cache: with single flight one compiles, the rest wait.

    python bench/single_flight.py [--procs 1,2,4] [--backend inductor] [--json PATH]

For each N, with and without single flight, starts N fresh processes at once (each with the
same empty precompile cache and its own empty TORCHINDUCTOR_CACHE_DIR and TMPDIR, like N
machines sharing a cache, or N ranks), and reports: seconds until the LAST process produced
its first output, total CPU seconds of all N, and how many processes traced frames.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import time
T0 = time.time()
import json, os, sys, torch, precompile
torch.manual_seed(0)
model = torch.nn.Sequential(*[m for _ in range(4) for m in (torch.nn.Linear(256, 256), torch.nn.GELU())])
compiled = precompile.cached(torch.compile(model, backend=sys.argv[1]),
                             single_flight=sys.argv[2] == "1")
with torch.no_grad():
    out = compiled(torch.randn(16, 256))
first = time.time()
from torch._dynamo.utils import counters
print("RESULT " + json.dumps({"first_output_at": first, "start": T0,
                              "frames": counters["frames"].get("total", 0),
                              "waited_s": precompile.stats()["waited_s"]}))
"""


def trial(n: int, single_flight: bool, backend: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        cache = os.path.join(d, "precompile")
        procs = []
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        for i in range(n):
            env = dict(os.environ, PRECOMPILE_CACHE_DIR=cache,
                       TORCHINDUCTOR_CACHE_DIR=os.path.join(d, f"inductor{i}"),
                       TMPDIR=os.path.join(d, f"tmp{i}"))
            os.makedirs(env["TMPDIR"])
            procs.append(subprocess.Popen(
                [sys.executable, "-c", CHILD, backend, "1" if single_flight else "0"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = []
        for p in procs:
            out, err = p.communicate(timeout=1200)
            line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
            if p.returncode or not line:
                raise SystemExit(f"child failed: {err[-3000:]}")
            results.append(json.loads(line[-1][7:]))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "procs": n, "single_flight": single_flight,
        "last_first_output_s": max(r["first_output_at"] for r in results) - t0,
        "cpu_s": cpu,
        "processes_that_traced": sum(1 for r in results if r["frames"]),
        "waited_s": [round(r["waited_s"], 2) for r in results],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", default="1,2,4")
    ap.add_argument("--backend", default="inductor")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results",
                                                   "single_flight.json"))
    args = ap.parse_args()
    rows = []
    for n in [int(x) for x in args.procs.split(",")]:
        for sf in ((True,) if n == 1 else (False, True)):
            rows.append(trial(n, sf, args.backend))
            r = rows[-1]
            print(f"N={n} single_flight={'on ' if sf else 'off'}  last first output "
                  f"{r['last_first_output_s']:6.1f} s   CPU {r['cpu_s']:6.1f} s   "
                  f"processes that traced {r['processes_that_traced']}", flush=True)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                   "backend": args.backend, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
