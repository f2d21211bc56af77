"""Loading a stored Inductor graph without importing Inductor's compiler.

precompile/_torch/light_loads.py lets the generated wrapper code's imports of
``select_algorithm`` and ``memory_planning``, and the code cache's import of ``graph``, see
small stand-ins while a graph loads. These tests hold the three promises that makes: the
stand-in kernels are exactly Inductor's, nobody else ever sees a stand-in, and a warm process
really does skip the compiler (while its results still match eager).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import Scenario
from precompile._torch import compat, light_loads

# Light loads turn themselves off on a torch release they were not checked against
# (compat.light_loads_checked); so do these tests. CI runs them on every checked one.
pytestmark = pytest.mark.skipif(
    not compat.light_loads_checked(),
    reason=f"light graph loads are not checked on torch {torch.__version__}")


def _registered_extern_kernels() -> dict[str, object]:
    """This torch's whole extern-kernel registry: every module that registers kernels
    (``ExternKernelChoice``) imported, those this build cannot import left out."""
    import importlib
    import pkgutil

    import torch._inductor.kernel as kernel_pkg
    from torch._inductor.select_algorithm import extern_kernels

    for module in ("torch._inductor.lowering", "torch._inductor.quantized_lowerings",
                   *(f"{kernel_pkg.__name__}.{m.name}"
                     for m in pkgutil.iter_modules(kernel_pkg.__path__))):
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - a backend this build lacks (cutlass, triton...)
            continue
    return dict(vars(extern_kernels))


def test_extern_kernel_table_is_inductors_registry() -> None:
    """The table is exactly the registry's plain torch functions on the running torch: each
    entry is the registered kernel, and no registered plain function is missing (a missing
    one would not be wrong, but would import the compiler at every warm start using it)."""
    registry = _registered_extern_kernels()
    for name, target in light_loads._EXTERN_KERNEL_FUNCTIONS.items():
        assert registry[name] is getattr(torch, target), name
    plain = {name for name, fn in registry.items()
             if getattr(fn, "__module__", None) in ("torch", "torch._C._VariableFunctions")
             and getattr(torch, getattr(fn, "__name__", ""), None) is fn}
    missing = plain - light_loads._EXTERN_KERNEL_FUNCTIONS.keys()
    assert not missing, missing


def test_cpu_build_paths_are_cpp_extensions() -> None:
    from torch.utils import cpp_extension

    assert light_loads._TORCH_LIB == cpp_extension.TORCH_LIB_PATH
    for flag in (True, False):
        assert light_loads._include_paths("cpu", flag) == cpp_extension.include_paths("cpu", flag)
        assert light_loads._library_paths("cpu", flag) == cpp_extension.library_paths("cpu", flag)


def test_deferred_minifier_wrapper_looks_like_torchs() -> None:
    from torch._dynamo.repro.after_dynamo import WrapBackendDebug

    def plain_backend(gm, example_inputs):
        return gm.forward

    for backend in (torch._TorchCompileInductorWrapper("default", None, None), plain_backend):
        real = WrapBackendDebug(backend, "x")
        deferred = light_loads._DeferredBackendDebug(backend, "x")
        mine = {k: v for k, v in vars(deferred).items() if k != "_precompile_real"}
        assert mine.keys() == vars(real).keys()
        for key, value in vars(real).items():
            assert mine[key] == value, key  # bound methods compare equal, not identical


def test_deferred_decomposition_table_is_the_real_one() -> None:
    import pickle

    from torch._inductor.decomposition import select_decomp_table

    deferred = light_loads._DEFERRED_DECOMP_TABLE
    assert pickle.loads(pickle.dumps(deferred)) is select_decomp_table
    assert deferred() == select_decomp_table()


def test_stand_ins_answer_only_generated_code_and_go_away() -> None:
    """In a process where the compiler is not imported yet: generated code gets the light
    objects; any other importer during the load gets the real ones; afterwards sys.modules
    holds only real modules."""
    code = textwrap.dedent("""
        import sys, types, torch, torch._dynamo
        from precompile._torch import light_loads

        def module_named(name, source):
            mod = types.ModuleType(name)
            exec(source, mod.__dict__)
            return mod

        with light_loads.light_inductor_imports():
            gen = module_named(light_loads._GENERATED_CODE + "abc", (
                "from torch._inductor.select_algorithm import extern_kernels\\n"
                "from torch._inductor.codegen.memory_planning import _align as align\\n"))
            assert "torch._inductor.lowering" not in sys.modules
            user = module_named("user_code", "from torch._inductor.graph import GraphLowering")
            assert user.GraphLowering.__module__ == "torch._inductor.graph"
            assert isinstance(sys.modules["torch._inductor.graph"], types.ModuleType)
        assert not any(isinstance(m, light_loads._StandIn) for m in sys.modules.values())
        assert gen.extern_kernels.addmm is torch.addmm
        from torch._inductor import select_algorithm
        assert gen.extern_kernels.bias_addmm is select_algorithm.extern_kernels.bias_addmm
        from torch._inductor.codegen import memory_planning
        assert gen.align is memory_planning._align
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-4000:]


@pytest.mark.slow  # Inductor C++ builds in the cold run
def test_warm_inductor_start_skips_the_compiler(scenario: Scenario) -> None:
    """Matrix products (extern kernels), a convolution and fused pointwise C++ kernels:
    the warm process loads them all, matches eager, and never imports Inductor's compiler
    (compile_fx, graph, select_algorithm, lowering, decompositions), Dynamo's minifier or
    the C++ extension builder."""
    scenario.write("""
        import torch, precompile

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 4, 3)
                self.lin = torch.nn.Linear(36, 8)

            def forward(self, x, a, b):
                h = torch.relu(self.conv(x)).flatten(1)
                return torch.tanh(self.lin(h)), torch.bmm(a, b).sin() + 1

        torch.manual_seed(0)
        net = Net()
        compiled = precompile.cached(net)

        def run():
            args = (torch.randn(2, 3, 5, 5), torch.randn(2, 3, 4), torch.randn(2, 4, 5))
            with torch.no_grad():
                got, want = compiled(*args), net(*args)
            return [("lin", got[0], want[0]), ("bmm", got[1], want[1])]
    """)
    scenario.run("cold").assert_ok()
    warm = scenario.run("warm").assert_warm()
    assert warm.result["compiler_modules"] == [], warm.describe()
    full = scenario.run("warm", PRECOMPILE_FULL_IMPORTS="1").assert_warm()
    assert "torch._inductor.select_algorithm" in full.result["compiler_modules"]


@pytest.mark.slow  # one of the slowest quick tests: make test stays under 10 minutes
def test_light_loaded_graphs_live_alongside_a_real_compile(scenario: Scenario) -> None:
    """A warm process loads two packages without the compiler, then compiles something new
    with plain torch.compile (which imports the real compiler), then runs the loaded graphs
    again: every result matches eager, and only the new function was traced."""
    scenario.write("""
        import torch, precompile

        def f(x, w):
            return torch.nn.functional.gelu(x @ w).sum(-1)

        def g(a, b):
            return torch.bmm(a, b).softmax(-1)

        def h(x):
            return (x.cos() @ x.T).relu()

        cf, cg = precompile.cached(f), precompile.cached(g)

        def run():
            x, w = torch.randn(8, 16), torch.randn(16, 16)
            a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
            out = [("f", cf(x, w), f(x, w)), ("g", cg(a, b), g(a, b))]
            torch.compiler.set_stance("default")      # h is new in every process
            out.append(("h", torch.compile(h)(x), h(x)))
            out += [("f again", cf(x + 1, w), f(x + 1, w)), ("g again", cg(a, b), g(a, b))]
            return out
    """)
    scenario.run("cold").assert_ok()
    warm = scenario.run("warm").assert_ok()
    assert warm.stats["hits"] == 2 and warm.stats["frames_traced"] == 0, warm.describe()
    assert warm.frames == 1, warm.describe()  # h only
    assert "torch._inductor.select_algorithm" in warm.result["compiler_modules"]
