"""Contract: the folders of ``precompile/`` are the pipeline, and imports run one way.

A module imports only from its own folder or from a folder below it, so each stage can be
read (and changed) knowing only what is under it:

    cli (and __main__) -> fleet -> the public face (api, cached_function, policy, pytest_plugin)
        -> install -> record -> read -> package -> identity -> format
        -> the base (errors, counters, settings, probes)

``_torch`` (every engine touch point) sits beside them: anyone may import it, and it
imports only the base, ``format`` and ``identity``. ``format`` reads untrusted bytes and
never imports torch. Like tests/layout/test_engine_layer.py, this reads syntax trees; imports
made by name at run time (``importlib``: the lazy public names, ``cli/_library``) are
outside it.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "precompile"
BASE = {"errors", "counters", "settings", "probes"}
FACE = {"__init__", "api", "cached_function", "policy", "pytest_plugin", "auto", "auto_report"}
RANK = {"base": 0, "format": 1, "identity": 2, "package": 3, "read": 4, "record": 5,
        "install": 6, "face": 7, "fleet": 8, "cli": 9}
TORCH_LAYER_IMPORTS = {"base", "format", "identity", "_torch"}


def layer(module: str) -> str | None:
    """The layer of a ``precompile`` module name (None: not precompile's)."""
    parts = module.split(".")
    if parts[0] != "precompile":
        return None
    if len(parts) == 1:
        return "face"
    head = parts[1]
    if head in BASE:
        return "base"
    if head in FACE:
        return "face"
    if head == "__main__":  # ``python -m precompile``: the command line
        return "cli"
    return head


def _module_name(path: Path) -> tuple[str, str]:
    """(module, package) of a file under the repository root."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for each import in the file; ``from X import y`` is ``X.y``
    when ``y`` is a module, else ``X``."""
    _, package = _module_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = ROOT.joinpath(*f"{module}.{alias.name}".split("."))
                is_module = sub.with_suffix(".py").exists() or (sub / "__init__.py").exists()
                found.append((node.lineno, f"{module}.{alias.name}" if is_module else module))
    return found


def wrong_way_imports(path: Path) -> list[str]:
    here = layer(_module_name(path)[0])
    problems = []
    for line, module in imported_modules(path):
        there = layer(module)
        where = f"{path.relative_to(ROOT)}:{line} ({here}) imports {module}"
        if here == "format" and module.split(".")[0] == "torch":
            problems.append(where + ": format/ reads untrusted bytes without torch")
        if there is None or there == here or there == "_torch":
            continue
        if here == "_torch":
            if there not in TORCH_LAYER_IMPORTS:
                problems.append(where + f" ({there})")
        elif RANK[there] > RANK[here]:
            problems.append(where + f" ({there}, a later stage)")
    return problems


def test_every_folder_has_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(RANK) - {"base", "face"} | {"_torch"}
    top = {p.stem for p in PACKAGE.glob("*.py")}
    known = BASE | FACE | {"__main__"}
    assert top == known, "a top-level module without a layer: " + str(top ^ known)


def test_imports_run_one_way() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 60  # the scan really read the library
    problems = [p for path in sources for p in wrong_way_imports(path)]
    assert not problems, "imports against the pipeline:\n" + "\n".join(problems)


def test_the_scan_sees_a_wrong_way_import(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above could pass by seeing nothing: a format module importing the reader,
    torch, or the public face is reported; one importing the base is not."""
    fake_root = tmp_path
    (fake_root / "precompile" / "format").mkdir(parents=True)
    (fake_root / "precompile" / "read").mkdir()
    (fake_root / "precompile" / "read" / "loading.py").write_text("")
    probe = fake_root / "precompile" / "format" / "probe.py"
    probe.write_text("from ..read import loading\nimport torch\nfrom .. import api\n"
                     "from ..errors import FormatError\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    hits = wrong_way_imports(probe)
    assert len(hits) == 3 and all("precompile.errors" not in h for h in hits), hits


def test_the_slow_tier_names_files_that_exist() -> None:
    """A renamed file would silently leave the slow tier and slow down ``make test``."""
    from conftest import SLOW_FILES

    missing = [name for name in SLOW_FILES if not (ROOT / "tests" / name).exists()]
    assert not missing, missing


def test_every_folder_is_packaged() -> None:
    """An installed (non-editable) precompile has every folder: pyproject's package list
    finds each one."""
    import tomllib

    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    found = set(find_packages(str(ROOT), include=include))
    folders = {".".join(p.parent.relative_to(ROOT).parts)
               for d in ("precompile", "cache_backends") for p in (ROOT / d).rglob("__init__.py")}
    assert folders and folders <= found, folders - found
