"""Runs one user scenario module in a fresh process and prints what happened as JSON.

    python _driver.py SCENARIO.py cold|warm

The scenario module defines ``run()`` returning ``[(name, compiled_result, eager_result)]``.
In the warm phase the driver sets ``fail_on_recompile`` first, so any Dynamo compile raises.
It counts Dynamo frames and calls into the backend compilers (Inductor's ``_compile_fx_inner``
and ``fx_codegen_and_compile``, C++ builds) so tests can assert that nothing was compiled,
without importing the compiler to do so (precompile/probes.py), and lists which compiler
modules the process imported.
"""
import importlib.util
import json
import os
import sys
import time

T0 = time.perf_counter()
import torch  # noqa: E402

import precompile  # noqa: E402
import precompile.probes  # noqa: E402

COUNTS = precompile.probes.count_engine_work()  # wraps compile_fx when (if) it is imported

# Inductor's compiler, its decompositions, Dynamo's minifier and the C++ extension builder:
# a warm start needs none of them (precompile/_torch/light_loads.py), so a warm
# process that imports one paid for it.
COMPILER_MODULES = ("torch._inductor.compile_fx", "torch._inductor.graph",
                    "torch._inductor.select_algorithm", "torch._inductor.lowering",
                    "torch._inductor.decomposition", "torch._dynamo.repro.after_dynamo",
                    "torch.utils.cpp_extension")


def main() -> None:
    path, phase = sys.argv[1], sys.argv[2]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    if phase == "warm":
        torch.compiler.set_stance("fail_on_recompile")
    results = mod.run()
    first_output_s = time.perf_counter() - T0
    torch.compiler.set_stance("default")
    checks = {}
    for name, got, want in results:
        checks[name] = _same(got, want)
    precompile.flush()
    from torch._dynamo.utils import counters

    out = {
        "checks": checks,
        "frames": int(counters["frames"].get("total", 0)),
        "stats": precompile.stats(),
        "counts": COUNTS,
        "compiler_modules": [m for m in COMPILER_MODULES if m in sys.modules],
        "first_output_s": first_output_s,
        "extra": getattr(mod, "EXTRA", {}),
    }
    print("RESULT " + json.dumps(out, default=str))


def _same(got, want) -> bool:
    if isinstance(got, (list, tuple)):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want))
    if isinstance(got, torch.Tensor):
        return got.dtype == want.dtype and got.shape == want.shape and bool(
            torch.allclose(got, want, rtol=1e-4, atol=1e-5))
    return got == want


if __name__ == "__main__":
    main()
