"""What copies and pickles of the user's compiled objects make of the recorder and its hooks.

Dynamo keeps the recorder (``package=``) and the callbacks handed to it (``guard_filter_fn``,
``guard_fail_fn``) on the compiled module's context, so ``copy.deepcopy``, ``pickle`` and
``torch.save`` of a compiled module reach them. They belong to the function, not to one
instance of it: a copy compiles into the same record (one package per function, whichever
instance runs it), and a pickled one loads as no recorder at all, so the loaded module is
plain ``torch.compile``'s. :class:`KeptByDynamo` is that rule, for the recorder and for
:class:`RecorderHook`, the wrapper a recorder method is handed to Dynamo in.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self


def _no_recorder() -> None:
    """What a pickled recorder or hook unpickles as: nothing."""
    return None


class KeptByDynamo:
    """An object Dynamo keeps on a compiled module for the function: a copy of the module
    shares it, a pickle of the module drops it."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _no_recorder, ()


class RecorderHook(KeptByDynamo):
    """A recorder method handed to Dynamo as a callback (guard filter, guard failures)."""

    __slots__ = ("method",)

    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method

    def __call__(self, *args: Any) -> Any:
        return self.method(*args)
