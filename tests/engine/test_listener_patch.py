"""The replacement precompile puts into Dynamo to hear marked-constant calls and optimizer
state inits (``_torch/listener_patch.py``): in place exactly while some thread records,
heard only by the innermost recording of the thread the call happens on."""
from __future__ import annotations

import threading

import pytest

from precompile._torch.listener_patch import ListenerPatch


def _patch() -> tuple[ListenerPatch, list[str]]:
    events: list[str] = []
    return ListenerPatch(lambda: events.append("install"),
                         lambda: events.append("remove")), events


def test_nested_recordings_install_once_and_the_innermost_hears() -> None:
    patch, events = _patch()
    assert patch.listener() is None
    with patch.recording("outer"):
        assert patch.listener() == "outer"
        with patch.recording("inner"):
            assert patch.listener() == "inner"
        assert patch.listener() == "outer"
        assert events == ["install"]
    assert events == ["install", "remove"]
    assert patch.listener() is None


def test_another_thread_hears_only_its_own_recording() -> None:
    patch, events = _patch()
    inside, release = threading.Event(), threading.Event()
    heard: list[object] = []

    def record() -> None:
        with patch.recording("other"):
            heard.append(patch.listener())
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=record)
    thread.start()
    assert inside.wait(10)
    assert patch.listener() is None  # this thread records nothing
    with patch.recording("mine"):
        assert patch.listener() == "mine"
    assert events == ["install"]  # the other thread still records
    release.set()
    thread.join(10)
    assert heard == ["other"]
    assert events == ["install", "remove"]


def test_an_error_in_the_block_still_takes_the_replacement_out() -> None:
    patch, events = _patch()
    with pytest.raises(RuntimeError), patch.recording("x"):
        raise RuntimeError("compile failed")
    assert events == ["install", "remove"]
    assert patch.listener() is None


def test_a_failing_install_leaves_no_listener_behind() -> None:
    def install() -> None:
        raise ImportError("torch moved it")

    patch = ListenerPatch(install, lambda: None)
    with pytest.raises(ImportError), patch.recording("x"):
        pass
    assert patch.listener() is None
