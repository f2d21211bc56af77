"""Functions for bench/overhead.py, in a module of their own so that precompile can find
them by module and qualified name in every process."""
import torch


def tiny(x: torch.Tensor) -> torch.Tensor:
    """A tiny function for guard-overhead timing: one entry per input shape."""
    return x * 2.0 + 1.0


def tiny_plain(x: torch.Tensor) -> torch.Tensor:
    """The same computation, with a code object of its own for plain torch.compile."""
    return x * 2.0 + 1.0


def generated_source(n_breaks: int) -> str:
    """Source of a module with one function ``chain`` that has ``n_breaks`` graph breaks, so
    Dynamo compiles n_breaks + 1 frames (the function and its resume functions)."""
    lines = ["import torch", "", "", "def chain(x):"]
    for i in range(n_breaks):
        lines.append(f"    x = x * 1.0001 + {i % 7}.0")
        lines.append("    torch._dynamo.graph_break()")
    lines.append("    return x * 1.0001")
    return "\n".join(lines) + "\n"


def many_functions_source(n: int) -> str:
    """Source of a module with ``n`` small functions f0..f{n-1}; each one is decorated with
    precompile.cached on its own (n packages of one frame each)."""
    lines = ["import torch", ""]
    for i in range(n):
        lines += ["", f"def f{i}(x):", f"    return x * 1.0001 + {i % 7}.0", ""]
    return "\n".join(lines)
