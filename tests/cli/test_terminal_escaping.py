"""No store text reaches a terminal unescaped, from any command or the library.

A redis server whose every reply is an error carrying terminal escape sequences, an S3
endpoint whose error messages carry C1 controls and bidi overrides, a local cache with a
planted file named with an escape sequence, and a stats file whose miss reasons carry
them: every command runs against each, in one fresh process whose stdout and stderr are
what a terminal would get (logging's own last-resort handler included, as on a user's
machine), and not one raw control character comes out, while the escaped text does.
"""
from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_s3 import FakeS3

EVIL = "\x1b]0;PWNED\x07\x1b[2J\u009b31m\u202eevil"
RAW = ("\x1b", "\x07", "\u009b", "\u202e")
REDIS_ERROR = f"-ERR {EVIL}\r\n".encode()

MODELS = """
import os, torch, precompile

def _step(x):
    return (x * 2).sin()

def _store():
    return os.environ["PRECOMPILE_CACHE_URL"].split("|")

step = precompile.cached(_step, backend="eager", store=_store())

def make_step():  # each command's own store (one process runs them all)
    torch._dynamo.reset()
    return precompile.cached(_step, backend="eager", store=_store())
"""
SPEC = {"signatures": [{"name": "b4", "inputs": [{"shape": [4, 8]}]}]}

DRIVER = """
import json, os, sys
from precompile.cli import main
for store, commands in json.loads(sys.argv[1]):
    os.environ["PRECOMPILE_CACHE_URL"] = store
    for argv in commands:
        print("=== precompile", *argv, flush=True)
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
        print("=== exit", rc, flush=True)
"""


@pytest.fixture
def evil_redis() -> Iterator[str]:
    """A RESP server answering every command with an error full of escape sequences."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while not stop.is_set():
                try:
                    if not conn.recv(65536):
                        return
                    conn.sendall(REDIS_ERROR)
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join()
    listener.close()


def _commands(store: str, work: Path) -> list[list[str]]:
    """Every command, against ``store`` (named by PRECOMPILE_CACHE_URL when it is a list
    of tiers, which only the environment spells)."""
    named = [store] if "|" not in store else []
    commands = [["ls", *named], ["verify", *named], ["prune", *named, "--stale"],
                ["inspect", "0123", *(["--cache", store] if named else [])],
                ["import", str(work / "evil.tar"), *(["--cache", store] if named else [])],
                ["explain", "models:step", *named],
                ["coverage", "models:make_step", "--spec", "spec.json"],  # the factory's store
                ["warmup", "models:make_step", "--spec", "spec.json", "-q"],
                ["stats", "--file", str(work / "stats.json")]]
    return commands + ([["export", store, str(work / "out.tar.gz")]] if named else [])


def _plant(work: Path) -> Path:
    """A local cache with a file named with an escape sequence, an archive whose member
    is, and a stats file whose miss reasons carry them."""
    local = work / "local"
    local.mkdir(mode=0o700)
    (local / f"{EVIL}.pcpkg").write_bytes(b"not a package")
    with tarfile.open(work / "evil.tar", "w") as tar:
        info = tarfile.TarInfo(f"{EVIL}.pcpkg")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    (work / "stats.json").write_text(json.dumps({
        "version": 1, "source": "pytest", "written": 0, "pid": 1,
        "stats": {"hits": 0, "misses": 1, "miss_reasons": [f"f: {EVIL}\nsecond {EVIL}"]}}))
    return local


def test_no_command_prints_store_text_raw(tmp_path: Path, evil_redis: str) -> None:
    pytest.importorskip("s3fs", reason="s3fs is not installed")
    pytest.importorskip("redis")
    (tmp_path / "models.py").write_text(MODELS)
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    local = _plant(tmp_path)
    s3 = FakeS3("error", message=f"denied {EVIL}".replace("\x1b", "").replace("\x07", ""))
    try:
        stores = [evil_redis, "s3://bucket/pkgs", f"{local}|{evil_redis}", str(local)]
        plan = [(store, _commands(store, tmp_path)) for store in stores]
        env = dict(os.environ, AWS_ENDPOINT_URL=s3.endpoint, AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                   AWS_EC2_METADATA_DISABLED="true",
                   TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
        for name in ("PRECOMPILE_LOG", "PRECOMPILE_CACHE_URL", "PRECOMPILE_SIGNING_KEY"):
            env.pop(name, None)
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(DRIVER), json.dumps(plan)],
                              cwd=tmp_path, env=env, capture_output=True, timeout=540)
    finally:
        s3.close()
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert proc.returncode == 0, out[-4000:]
    assert out.count("=== exit") == sum(len(c) for _, c in plan), out[-4000:]
    leaks = sorted({repr(ch) for ch in RAW if ch in out})
    lines = [ln for ln in out.splitlines() if any(ch in ln for ch in RAW)]
    assert not leaks, f"raw {leaks} reached the terminal:\n" + "\n".join(map(repr, lines[:8]))
    assert "\\x1b]0;PWNED" in out and "\\u202e" in out  # the text itself did come through


def test_the_library_log_escapes_for_every_handler() -> None:
    """A handler of the user's (or PRECOMPILE_LOG's) gets the record escaped too."""
    import precompile  # noqa: F401 - installs the filter
    from precompile.counters import warn_once

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("precompile")
    log.addHandler(handler)
    try:
        warn_once(f"test-escape-{id(stream)}", f"store said {EVIL}")
        log.warning("precompile: %s", f"arg {EVIL}\nforged line")
        try:
            raise RuntimeError(EVIL)
        except RuntimeError:
            log.warning("precompile: failed", exc_info=True)
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert not [ch for ch in RAW if ch in text], repr(text)
    assert "\\x1b]0;PWNED" in text and "\nforged line" not in text
