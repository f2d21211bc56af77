"""The parts of reading and writing a package that no warm start reaches on its own: the
edge cases of the decode cost scan, manifest shapes, merging two processes' packages, stored
times, module files found without importing, and names that no longer find their object.

Each test states one rule the readers rely on (issue 31 split these helpers apart; the
rules themselves are unchanged).
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import msgpack
import pytest

from precompile.errors import FormatError
from precompile.format import decode_cost
from precompile.identity.names import importable_name, shadowed_function
from precompile.package import keys, manifest, model
from precompile.package.artifacts import BackendArtifact
from precompile.read import read_path


# ------------------------------------------------------------------ decode cost scan


def test_scan_refuses_an_empty_body() -> None:
    with pytest.raises(FormatError, match="runs past its end"):
        decode_cost.scan(b"", 100, 1 << 20)


def test_scan_charges_a_short_non_ascii_string_four_bytes_a_character() -> None:
    ascii_cost = decode_cost.scan(msgpack.packb("abcd"), 100, 1 << 20)
    wide_cost = decode_cost.scan(msgpack.packb("abcé"), 100, 1 << 20)
    assert ascii_cost.bytes == decode_cost.STR + 4
    assert wide_cost.bytes == decode_cost.STR_WIDE + 4 * 5  # é is two bytes of UTF-8


def test_scan_counts_nested_short_maps_and_arrays() -> None:
    cost = decode_cost.scan(msgpack.packb({"a": [1, 2], "b": []}), 100, 1 << 20)
    assert cost.values == 7  # the map, two keys, two arrays, two ints
    assert cost.bytes == (decode_cost.MAP + 2 * decode_cost.PAIR + 2 * (decode_cost.STR + 1)
                          + 2 * decode_cost.LIST + 2 * decode_cost.SLOT)


def test_scan_stops_once_over_the_value_budget() -> None:
    cost = decode_cost.scan(msgpack.packb(list(range(100))), 10, 1 << 20)
    assert cost.values == 11


def test_scan_refuses_an_array_declaring_more_values_than_bytes_left() -> None:
    with pytest.raises(FormatError, match="runs past its end"):
        decode_cost.scan(b"\x93\x01", 100, 1 << 20)


# ------------------------------------------------------------------ manifests


def _f(x: int) -> int:
    return x + 1


def _package() -> model.Package:
    pkg = model.Package(_f.__code__, __name__, "k", {"function": f"{__name__}:_f"})
    frame = model.FrameRecord(model.ROLE_MAIN, __name__, "_f", "fp", _f.__code__)
    kept = model.GuardedEntry("g1", _f.__code__, ["b1"], {}, [], ["leaf"], False, [
        model.StateInit("L['self']", "kind", [[["list"], ["group", 1], ["const", 2.5]]])])
    lost = model.GuardedEntry("g2", _f.__code__, ["missing"], {}, [])
    frame.entries = [kept, lost]
    pkg.frames = [frame]
    pkg.guard_blobs = {"g1": b"G1", "g2": b"G2"}
    pkg.artifacts = {"b1": BackendArtifact("b1", "inductor", b"ART", True)}
    pkg.kernel_blobs = {"k/a.so": b"SO"}
    pkg.kernel_refs = {"k/b.so": "a" * 64}
    return pkg


def test_an_entry_without_its_artifacts_is_not_written() -> None:
    written, blobs = manifest.to_manifest(_package())
    assert [e["guards"] for e in written["frames"][0]["entries"]] == ["g1"]
    assert "g2" not in blobs and blobs["g1"] == b"G1"


def test_shared_kernels_are_written_by_digest_only() -> None:
    own, own_blobs = manifest.to_manifest(_package())
    shared, shared_blobs = manifest.to_manifest(_package(), share_kernels=True)
    assert own["kernels"] == shared["kernels"]
    assert b"SO" in own_blobs.values() and b"SO" not in shared_blobs.values()
    back = manifest.from_manifest(_f.__code__, __name__, {}, shared, shared_blobs)
    assert back.kernel_blobs == {} and set(back.kernel_refs) == {"k/a.so", "k/b.so"}


@pytest.mark.parametrize("arg", [["list", 1], ["group", "1"], ["group"], ["const", [1]],
                                 ["bogus"], [], [["list"]], [None]])
def test_an_optimizer_state_argument_of_another_shape_is_malformed(arg: list) -> None:
    written, blobs = manifest.to_manifest(_package())
    written["frames"][0]["entries"][0]["state_inits"][0]["calls"] = [[arg]]
    with pytest.raises(FormatError, match="malformed optimizer state argument"):
        manifest.from_manifest(_f.__code__, __name__, {}, written, blobs)


@pytest.mark.parametrize("kernel, problem", [
    ({"path": "/etc/x.so", "blob": "a" * 64}, "escapes the cache dir"),
    ({"path": "../x.so", "blob": "a" * 64}, "escapes the cache dir"),
    ({"path": "x.so", "blob": "A" * 64}, "names no blob"),  # not as sha256_hex spells one
    ({"path": "x.so", "blob": "a" * 63}, "names no blob"),
])
def test_a_kernel_outside_the_cache_dir_or_naming_no_blob_is_malformed(kernel: dict,
                                                                       problem: str) -> None:
    written, blobs = manifest.to_manifest(_package())
    written["kernels"] = [kernel]
    with pytest.raises(FormatError, match=problem):
        manifest.from_manifest(_f.__code__, __name__, {}, written, blobs)


# ------------------------------------------------------------------ merging


def test_merge_prefers_the_artifact_with_a_backward_graph_and_bundled_kernels() -> None:
    written, blobs = manifest.to_manifest(_package())
    other = manifest.from_manifest(_f.__code__, __name__, {}, written, blobs)
    into = model.Package(_f.__code__, __name__, "k", {})
    into.artifacts = {"b1": BackendArtifact("b1", "inductor", b"OLD", False)}
    into.kernel_blobs = {"k/b.so": b"bundled"}
    assert model.merge(into, other) == 1
    assert into.artifacts["b1"].data == b"ART"
    assert into.kernel_blobs == {"k/b.so": b"bundled", "k/a.so": b"SO"}
    assert into.kernel_refs == {}  # k/b.so is bundled here: no reference to the store
    assert model.merge(into, other) == 0


# ------------------------------------------------------------------ stored times


@pytest.mark.parametrize("meta, expected", [({}, 0.0), ({"saved": 5}, 5.0),
                                            ({"saved": "5"}, 0.0), ({"saved": 10 ** 400}, 0.0)])
def test_a_stored_time_that_is_no_number_counts_as_none(meta: dict, expected: float) -> None:
    assert read_path.meta_time(meta, "saved") == expected


# ------------------------------------------------------------------ module files


def test_a_module_file_is_found_in_the_fallback_dirs_without_importing(tmp_path: Path) -> None:
    pkg = tmp_path / "pp_fallback_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (pkg / "sub.py").write_text("x = 1\n")
    assert keys.find_module_file("pp_fallback_pkg.sub") is None
    found = keys.find_module_file("pp_fallback_pkg.sub", (str(tmp_path),))
    assert found == str(pkg / "sub.py")
    assert keys.find_module_file("pp_fallback_pkg.nope", (str(tmp_path),)) is None
    assert keys.find_module_file("sys", (str(tmp_path),)) is None  # built in: no file
    assert "pp_fallback_pkg" not in sys.modules


# ------------------------------------------------------------------ names


def _decorate(fn):  # type: ignore[no-untyped-def]
    @functools.wraps(fn)
    def wrapper(*args):  # type: ignore[no-untyped-def]
        return fn(*args)
    return wrapper


@_decorate
def _wrapped(x: int) -> int:
    return x


def test_a_function_whose_name_finds_its_wrapper_is_shadowed() -> None:
    inner = _wrapped.__wrapped__
    assert shadowed_function(inner) is True
    assert shadowed_function(_f) is False
    assert shadowed_function(len) is False  # not a Python function
    assert importable_name(_wrapped) == f"{__name__}:_wrapped"
    assert importable_name(inner) is None  # its name finds the wrapper
    assert importable_name(_f) == f"{__name__}:_f"
