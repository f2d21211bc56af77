"""The engine layer is the only place that touches torch internals.

A torch release is meant to be a change inside ``precompile/_torch`` and nowhere else, which
only holds while no other module imports a private torch module, reads a private torch
attribute or names one of Dynamo's private attributes. This reads every other module's
syntax tree (docstrings and comments may mention internals; code may not).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE_LAYER = ROOT / "precompile" / "_torch"
# probes.py counts Inductor codegens for tests and benchmarks; bench/ loads it by path
# without the rest of precompile (its docstring says why), so it cannot call _torch.
OUTSIDE_BY_DESIGN = {ROOT / "precompile" / "probes.py"}


def _private_torch_name(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "torch" and any(p.startswith("_") for p in parts[1:])


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _touch_points(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} imports {a.name}" for a in node.names
                      if _private_torch_name(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if _private_torch_name(node.module):
                found.append(f"{where} imports from {node.module}")
        elif isinstance(node, ast.Attribute):
            if (node.attr.startswith("_") and isinstance(node.value, ast.Name)
                    and node.value.id == "torch"):
                found.append(f"{where} reads torch.{node.attr}")
            elif node.attr.startswith("_torchdynamo"):
                found.append(f"{where} reads .{node.attr}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings
              and (node.value.startswith("_torchdynamo") or _private_torch_name(node.value))):
            found.append(f"{where} names {node.value!r}")
    return found


def test_only_the_engine_layer_touches_torch_internals() -> None:
    sources = [p for d in ("precompile", "cache_backends") for p in (ROOT / d).rglob("*.py")
               if ENGINE_LAYER not in p.parents and p not in OUTSIDE_BY_DESIGN]
    assert len(sources) > 30  # the scan really read the library
    found = [f"{path.parent.relative_to(ROOT)}/{hit}" for path in sorted(sources)
             for hit in _touch_points(path)]
    assert not found, "torch internals outside precompile/_torch:\n" + "\n".join(found)


def test_the_scan_sees_each_kind_of_touch_point(tmp_path: Path) -> None:
    """The check above could pass by seeing nothing: each form it forbids is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text('"""torch._dynamo in a docstring is fine."""\n'
                     "import torch._dynamo\n"
                     "from torch._inductor import config\n"
                     "x = torch._C\n"
                     "y = getattr(f, '_torchdynamo_orig_callable')\n"
                     "z = f._torchdynamo_inline\n")
    hits = _touch_points(probe)
    assert sorted(h.split(" ", 1)[1] for h in hits) == sorted([
        "imports torch._dynamo", "imports from torch._inductor", "reads torch._C",
        "names '_torchdynamo_orig_callable'", "reads ._torchdynamo_inline"]), hits
