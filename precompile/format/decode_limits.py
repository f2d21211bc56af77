"""What decoding one package body may cost, whatever its bytes: msgpack with every bound set.

msgpack decodes plain arrays and maps with a fixed internal stack, but an ext value (a
tuple, a code object...) carries its contents as a nested msgpack payload. Decoding that
payload from msgpack's ext hook nests one C unpacker (~35 KiB of C stack) per level: a few
hundred nested tuples (1.3 KB) overflowed the stack and killed the process, and every level
held its own copy of the rest (memory grew depth x size). Map keys that are arbitrary
values (tuples, big ints) can all hash alike, which makes building a map quadratic.

So :class:`BoundedUnpacker` never decodes from inside the hook. The hook only records an
ext value as :class:`_Pending`; payloads are then decoded one at a time from an explicit
work stack (no recursion, in C or Python), innermost first, so a tuple is built from
finished members. One unpacker per body counts, across all nested payloads:

* ext nesting depth (``MAX_EXT_DEPTH``: code -> constants tuple -> code ... 16 functions
  deep, far beyond what Python source nests);
* bytes unpacked in total (``EXPANSION`` x the body, so nesting cannot multiply memory);
* containers built in total (``MAX_CONTAINERS``: every list and map, the objects that cost
  memory beyond their bytes);
* map keys: ``str`` or an ``int`` that fits msgpack's 64 bits, nothing else.

Anything over a bound is a :class:`FormatError`, like any other malformed package.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Mapping
from typing import Any

import msgpack

from ..errors import FormatError

MAX_EXT_DEPTH = 32
EXPANSION = 8  # total bytes decoded <= EXPANSION x body + SLACK
SLACK = 1 << 20
MAX_CONTAINERS = 1 << 20  # ~10 per stored code object: 100,000 of them
_KEY_INT_MIN, _KEY_INT_END = -(1 << 63), 1 << 64


@dataclasses.dataclass(frozen=True)
class ExtDecoder:
    """How one ext type is built: from its payload decoded as msgpack (``nested``) or from
    the raw payload bytes (a big int's digits, a name)."""

    build: Callable[[Any], Any]
    nested: bool = True


@dataclasses.dataclass(eq=False)
class _Pending:
    """An ext value seen by msgpack's hook, decoded later from the work stack."""

    code: int
    data: bytes


_Step = Generator[tuple[Any, int], Any, Any]  # yields (child, depth), is sent its result


def _too_costly(what: str) -> FormatError:
    return FormatError(f"package body exceeds a decoding bound ({what}): crafted or corrupt; "
                       "delete it and let precompile rewrite it")


class BoundedUnpacker:
    """Decodes one body and every ext payload nested in it, sharing one set of budgets."""

    def __init__(self, decoders: Mapping[int, ExtDecoder], body_len: int,
                 unknown: Callable[[int], FormatError]) -> None:
        self._decoders = decoders
        self._unknown = unknown
        self._bytes_left = EXPANSION * body_len + SLACK
        self._containers_left = MAX_CONTAINERS
        self._pending = 0  # ext values recorded by the last flat unpack

    def decode(self, data: bytes) -> Any:
        """The value ``data`` holds, ext values built; raises FormatError on anything else."""
        try:
            value = self._flat(data)
            return self._run(value) if self._pending else value
        except FormatError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError,
                MemoryError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
            raise FormatError(f"package body is not valid msgpack: {type(e).__name__}: "
                              f"{e}") from None

    def _run(self, root: Any) -> Any:
        """Resolve every ``_Pending`` in ``root``, depth first, with an explicit stack of
        steps: each step yields a child to resolve and is sent the finished child."""
        stack: list[_Step] = [self._step(root, 0)]
        result: Any = None
        while stack:
            try:
                child, depth = stack[-1].send(result)
            except StopIteration as done:
                stack.pop()
                result = done.value
                continue
            stack.append(self._step(child, depth))
            result = None
        return result

    def _step(self, value: Any, depth: int) -> _Step:
        if isinstance(value, _Pending):
            if depth >= MAX_EXT_DEPTH:
                raise _too_costly(f"values nested more than {MAX_EXT_DEPTH} deep")
            decoder = self._decoders[value.code]
            if not decoder.nested:
                return decoder.build(value.data)
            payload = self._flat(value.data)
            if self._pending:
                payload = yield payload, depth + 1
            return decoder.build(payload)
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, (_Pending, list, dict)):
                    value[i] = yield item, depth
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, (_Pending, list, dict)):
                    value[key] = yield item, depth
        return value

    def _flat(self, data: bytes) -> Any:
        """One msgpack value filling ``data``; ext values left as ``_Pending``."""
        self._bytes_left -= len(data)
        if self._bytes_left < 0:
            raise _too_costly("total size of nested values")
        self._pending = 0
        return msgpack.unpackb(data, ext_hook=self._ext_hook, list_hook=self._list_hook,
                               object_pairs_hook=self._map_hook, raw=False,
                               strict_map_key=False)

    def _ext_hook(self, code: int, data: bytes) -> _Pending:
        if code not in self._decoders:
            raise self._unknown(code)
        self._pending += 1
        return _Pending(code, data)

    def _count_container(self) -> None:
        self._containers_left -= 1
        if self._containers_left < 0:
            raise _too_costly(f"more than {MAX_CONTAINERS} lists and maps")

    def _list_hook(self, items: list[Any]) -> list[Any]:
        self._count_container()
        return items

    def _map_hook(self, pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        """Keys are names or small numbers: anything else (a tuple, a big int, a float)
        could be chosen to collide in the hash table and make the map quadratic."""
        self._count_container()
        for key, _ in pairs:
            if not (type(key) is str
                    or (type(key) is int and _KEY_INT_MIN <= key < _KEY_INT_END)):
                kind = "ext value" if isinstance(key, _Pending) else type(key).__name__
                raise FormatError(f"malformed package: a map key of type {kind} "
                                  "that is not a string or a 64-bit integer (the only keys "
                                  "precompile writes); delete it and let precompile "
                                  "rewrite it")
        return dict(pairs)
