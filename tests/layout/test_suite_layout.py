"""Contract: the suite is laid out by contract: every test file sits in a folder of tests/
that names the stage it pins, basenames are unique (no ``__init__.py``: pytest imports each
file by its basename) and no test file imports another (shared setup lives in conftest.py
fixtures and the ``_``-prefixed helpers), so a file can be moved, run or read alone."""
from __future__ import annotations

import ast
import collections
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _test_files(root: Path) -> list[Path]:
    return sorted(root.rglob("test_*.py"))


def imports_of_test_files(root: Path) -> list[str]:
    """``path:line imports name`` for each import, at any depth, of a test file's module."""
    names = {p.stem for p in _test_files(root)}
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                modules = [node.module]
            else:
                continue
            found += [f"{path.relative_to(root)}:{node.lineno} imports {m}"
                      for m in modules if m.split(".")[0] in names]
    return found


def test_no_test_file_imports_another() -> None:
    problems = imports_of_test_files(TESTS)
    assert not problems, "move what they share into conftest.py or a _helper:\n" + \
        "\n".join(problems)


def test_the_scan_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "test_x.py").write_text("X = 1\n")
    (tmp_path / "b" / "test_y.py").write_text("import os\n\ndef test_y():\n"
                                              "    from test_x import X\n    assert X\n")
    assert imports_of_test_files(tmp_path) == ["b/test_y.py:4 imports test_x"]


def test_every_test_file_sits_in_a_folder_and_basenames_are_unique() -> None:
    files = _test_files(TESTS)
    assert files and not [p.name for p in files if p.parent == TESTS]
    counts = collections.Counter(p.name for p in files)
    assert not [name for name, n in counts.items() if n > 1], counts
