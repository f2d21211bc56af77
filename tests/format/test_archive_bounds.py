"""Contract: ``precompile import`` is bounded in decompressed bytes and time, whatever the
archive: every decompressed byte counts (members that are not packages included), reading
is linear for gzip, bzip2 and xz (tarfile's stream mode, which copies the rest of a
decompressed chunk on every read, would make a 145-byte .tar.bz2 run for a minute), tar
extended headers are capped, and import has a deadline.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from _packages import write_tar
from cache_backends.local import LocalDirBackend
from precompile import cli
from precompile.format import envelope as fmt
from precompile.package.keys import package_key


def _pkg(fn: str) -> bytes:
    meta = {"saved": 1, "function": f"m:{fn}", "factors": {"function": f"m:{fn}"}}
    return fmt.encode(meta, {}, {})


@pytest.fixture
def cache(local_cache: LocalDirBackend) -> LocalDirBackend:
    return local_cache


def test_a_tiny_bzip2_bomb_is_refused_in_seconds(cache: LocalDirBackend,
                                                 tmp_path: Path) -> None:
    """The proof of concept: a few hundred bytes of .tar.bz2 expanding to 256 MiB of a
    member that is not a package. Run as a child so main's minutes-long run is a timeout."""
    bomb = write_tar(tmp_path / "bomb.tar.bz2", [("junk.bin", 256 << 20)], "w:bz2")
    assert bomb.stat().st_size < 1024
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "precompile", "import", str(bomb)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ))
    assert proc.returncode == 2, proc.stderr
    assert "expands to more than" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - start < 60
    assert not list(cache.list())


def test_members_that_are_not_packages_count(cache: LocalDirBackend, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """20 MiB of junk beside a package in a 20 KiB archive: over 100x its size."""
    archive = write_tar(tmp_path / "a.tar.gz", [("f.pcpkg", _pkg("f")),
                                               ("junk.bin", 20 << 20)], "w:gz")
    assert cli.main(["import", str(archive)]) == 2
    assert "expands to more than" in capsys.readouterr().err
    assert not list(cache.list())


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_reading_is_linear_for_every_compression(cache: LocalDirBackend, tmp_path: Path,
                                                 mode: str) -> None:
    """12 MiB of junk (under the 16 MiB floor) before a package: read through once; the
    package is imported. Copying the rest of the buffer on every 10 KiB read cost ~7 GB
    of copies here."""
    members: list[tuple[str, bytes | int]] = [("junk.bin", 12 << 20), ("f.pcpkg", _pkg("f"))]
    archive = write_tar(tmp_path / "a.tar", members, mode)
    start = time.monotonic()
    assert cli.main(["import", str(archive)]) == 0
    assert time.monotonic() - start < 30
    assert list(cache.list()) == [package_key({"function": "m:f"})]


def test_a_huge_extended_tar_header_is_refused(cache: LocalDirBackend, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """tarfile reads a pax header into memory whole before anyone sees the member."""
    archive = write_tar(tmp_path / "a.tar.gz", [("f.pcpkg", _pkg("f"))], "w:gz",
                       format=tarfile.PAX_FORMAT, pax_headers={"comment": "x" * (2 << 20)})
    assert cli.main(["import", str(archive)]) == 2
    assert "extended tar header" in capsys.readouterr().err
    assert not list(cache.list())


def test_import_has_a_deadline(cache: LocalDirBackend, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    archive = write_tar(tmp_path / "a.tar.gz", [("f.pcpkg", _pkg("f"))], "w:gz")
    assert cli.main(["import", str(archive), "--max-seconds", "0"]) == 2
    assert "longer than its time limit" in capsys.readouterr().err
    assert not list(cache.list())
    assert cli.main(["import", str(archive)]) == 0
