"""A function of Dynamo's replaced while any thread records, heard by the innermost
recording on each thread.

precompile hears some of what Dynamo does while it traces (the marked-constant calls it
answers, the optimizer state it creates) by replacing one of its functions while one of
precompile's frames compiles. Dynamo compiles on several threads at once, and compiles a
frame inside another's compile: the replacement goes in with the first recording and comes
out with the last (a count under a lock), and on each thread only the innermost recording's
listener hears what happens there.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any


class ListenerPatch:
    """``install()`` puts the replacement in place, ``remove()`` takes it out again."""

    def __init__(self, install: Callable[[], None], remove: Callable[[], None]) -> None:
        self._install = install
        self._remove = remove
        self._lock = threading.Lock()
        self._users = 0
        self._local = threading.local()

    def listener(self) -> Any | None:
        """The listener of this thread's innermost recording, or None."""
        stack = getattr(self._local, "stack", None)
        return stack[-1] if stack else None

    @contextlib.contextmanager
    def recording(self, listener: Any) -> Iterator[None]:
        """``listener`` hears this thread's calls until the block ends (or a recording
        nested in it starts); the replacement is in place meanwhile."""
        with self._lock:
            if self._users == 0:
                self._install()
            self._users += 1
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append(listener)
        try:
            yield
        finally:
            stack.pop()
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._remove()
