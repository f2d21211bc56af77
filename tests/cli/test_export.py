"""``precompile export`` from a store others can write exports only what ``import`` accepts.

A package is exported only verified under the signing key in force, stored under the key it
was written for, with its kernels verified against their digests; anything else is left
out and named, never a traceback (a package naming a kernel ``../x``, read as a store key)
and never a planted package that would make the importing side refuse the whole archive.
"""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from precompile import cli
from precompile.format import envelope as fmt
from precompile.package.keys import package_key
from precompile.read.shared_blobs import encode_blob

KEY = b"team-key"


def _package(fn: str, signing_key: bytes | None,
             kernels: tuple[str, ...] | list[str] = ()) -> tuple[str, bytes]:
    factors = {"function": f"m:{fn}"}
    meta = {"saved": 1, "function": f"m:{fn}", "factors": factors}
    manifest = {"kernels": [{"path": "k.so", "blob": digest} for digest in kernels]}
    return package_key(factors), fmt.encode(meta, manifest, {}, signing_key=signing_key)


def _put(cache: Path, key: str, data: bytes) -> None:
    path = cache / f"{key}.pcpkg"
    path.write_bytes(data)
    path.chmod(0o600)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PRECOMPILE_CACHE_URL", "PRECOMPILE_TRUST_SHARED_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PRECOMPILE_SIGNING_KEY", KEY.decode())
    root = tmp_path / "shared"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("PRECOMPILE_CACHE_DIR", str(root))
    return root


def _export(cache: Path, archive: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    rc = cli.main(["export", str(cache), str(archive), "--json"])
    return rc, json.loads(capsys.readouterr().out)


def _members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return sorted(m.name for m in tar.getmembers())


def test_planted_files_are_left_out_and_the_archive_imports(
        cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good_key, good = _package("good", KEY)
    digest = fmt.sha256_hex(b"kernel")
    kernel_key, kernel = encode_blob(b"kernel", KEY)
    _, uses_kernel = _package("uses", KEY, [digest])
    _put(cache, good_key, good)
    _put(cache, package_key({"function": "m:uses"}), uses_kernel)
    _put(cache, kernel_key, kernel)
    planted_key, planted = _package("planted", None, ["../x"])  # unsigned: no key
    _put(cache, planted_key, planted)
    _put(cache, "renamed-0", good)  # genuine, but not written for this key
    _, forged_kernel = encode_blob(b"other", KEY)
    _put(cache, f"blob-{'e' * 64}", forged_kernel)  # named by nobody: never exported
    archive = tmp_path / "out.tar.gz"
    rc, out = _export(cache, archive, capsys)
    assert rc == 1 and out["packages"] == 2 and out["shared_kernels"] == 1, out
    assert any(planted_key in line and "not signed" in line for line in out["skipped"]), out
    assert any("renamed-0" in line for line in out["skipped"]), out
    assert _members(archive) == sorted([f"{good_key}.pcpkg", f"{kernel_key}.pcpkg",
                                        f"{package_key({'function': 'm:uses'})}.pcpkg"])
    other = tmp_path / "other"
    assert cli.main(["import", str(archive), "--cache", str(other)]) == 0


def test_a_kernel_name_that_is_not_a_digest_is_never_a_path(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without a signing key a planted package verifies; the kernel it names is no key."""
    monkeypatch.delenv("PRECOMPILE_SIGNING_KEY")
    key, data = _package("planted", None, ["../x", "a" * 64])
    _put(cache, key, data)
    archive = tmp_path / "out.tar.gz"
    rc, out = _export(cache, archive, capsys)
    assert rc == 1 and out["packages"] == 1 and out["shared_kernels"] == 0, out
    assert any("'blob-../x'" in line for line in out["skipped"]), out
    assert _members(archive) == [f"{key}.pcpkg"]
    assert cli.main(["import", str(archive), "--cache", str(tmp_path / "other")]) == 0


def test_a_clean_store_exports_with_status_zero(cache: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    key, data = _package("good", KEY)
    _put(cache, key, data)
    rc, out = _export(cache, tmp_path / "out.tar.gz", capsys)
    assert rc == 0 and out["skipped"] == [] and out["packages"] == 1
