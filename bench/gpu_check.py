#!/usr/bin/env python3
"""End-to-end check of the GPU (Triton) path: ONLY a run on a CUDA machine proves it.

    python bench/gpu_check.py            # exits 0 if the fresh-machine warm start held

What it checks, in fresh processes: a cold process compiles a small model on CUDA with
Inductor (Triton kernels) under precompile.cached and saves the package; a second process
with a NEW empty TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR, TMPDIR and HOME (a machine that
never compiled) loads it under fail_on_recompile and must trace 0 frames, run 0 Inductor
codegens, 0 C++ builds and 0 Triton compiles, with outputs equal to eager.

Status (see README, "Limits"): written and run on CPU-only machines, where it reports
"skipped: no CUDA"; the Triton kernels travel inside AOTAutograd's bundle (TritonBundler),
which PyTorch restores into the Triton cache on load. Not yet verified on a GPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, sys, time
import torch, precompile
counts = {"codegen": 0, "cpp": 0, "triton": 0}
import torch._inductor.compile_fx as cfx, torch._inductor.cpp_builder as cb
def wrap(obj, name, key):
    orig = getattr(obj, name)
    def w(*a, **k):
        counts[key] += 1
        return orig(*a, **k)
    setattr(obj, name, w)
wrap(cfx, "fx_codegen_and_compile", "codegen")
wrap(cb.CppBuilder, "build", "cpp")
try:
    import triton
    wrap(triton, "compile", "triton")
except Exception:
    pass

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(256, 512)
        self.b = torch.nn.Linear(512, 256)
    def forward(self, x):
        return self.b(torch.nn.functional.gelu(self.a(x))).softmax(-1)

torch.manual_seed(0)
net = Net().cuda()
compiled = precompile.cached(torch.compile(net))
x = torch.randn(64, 256, device="cuda")
if sys.argv[1] == "warm":
    torch.compiler.set_stance("fail_on_recompile")
with torch.no_grad():
    out = compiled(x)
    ok = bool(torch.allclose(out, net(x), atol=1e-4, rtol=1e-4))
precompile.flush()
from torch._dynamo.utils import counters
print("RESULT " + json.dumps({"ok": ok, "frames": counters["frames"].get("total", 0),
                              **counts, "stats": precompile.stats()}, default=str))
"""


def run(phase: str, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, phase], env=env, capture_output=True,
                          text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        print(proc.stdout[-3000:], proc.stderr[-6000:])
        raise SystemExit(f"{phase} run failed (rc={proc.returncode})")
    return json.loads(lines[-1][7:])


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA device here; run this on a GPU machine")
        return 0
    with tempfile.TemporaryDirectory() as d:
        base = dict(os.environ, PRECOMPILE_CACHE_DIR=os.path.join(d, "precompile"))

        def machine(name: str) -> dict[str, str]:
            env = dict(base)
            for var, sub in (("TORCHINDUCTOR_CACHE_DIR", "inductor"),
                             ("TRITON_CACHE_DIR", "triton"), ("TMPDIR", "tmp"), ("HOME", "home")):
                env[var] = os.path.join(d, name, sub)
                os.makedirs(env[var], exist_ok=True)
            return env

        cold = run("cold", machine("writer"))
        warm = run("warm", machine("fresh"))
    print(json.dumps({"cold": cold, "warm": warm}, indent=1))
    good = (cold["ok"] and warm["ok"] and warm["frames"] == 0 and warm["codegen"] == 0
            and warm["cpp"] == 0 and warm["triton"] == 0)
    print("GPU fresh-machine warm start:", "OK" if good else "FAILED")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
