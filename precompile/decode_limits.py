"""What decoding one package body may cost, whatever its bytes: msgpack with every bound set.

msgpack decodes plain arrays and maps with a fixed internal stack, but each ext value (a
tuple, a code object...) is decoded by a hook that calls msgpack again on its payload: a
few hundred nested tuples (1.3 KB) overflow the C stack and kill the process, and every
level holds its own copy of the rest of the payload (memory grows depth x size). Map keys
that are arbitrary values (tuples, big ints) can all hash alike, which makes building a map
quadratic. So one :class:`BoundedUnpacker` per body counts, across all nested payloads:

* ext nesting depth (``MAX_EXT_DEPTH``: code -> constants tuple -> code ... 16 functions
  deep, far beyond Python source, and a small fraction of the C stack);
* bytes unpacked in total (``EXPANSION`` x the body, so nesting cannot multiply memory);
* containers built in total (``MAX_CONTAINERS``: every list and map, the objects that cost
  memory beyond their bytes);
* map keys: ``str`` or an ``int`` that fits msgpack's 64 bits, nothing else.

Anything over a bound is a :class:`FormatError`, like any other malformed package.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from .errors import FormatError

MAX_EXT_DEPTH = 32
EXPANSION = 8  # total bytes decoded <= EXPANSION x body + SLACK
SLACK = 1 << 20
MAX_CONTAINERS = 1 << 20  # ~10 per stored code object: 100,000 of them
_KEY_INT_MIN, _KEY_INT_END = -(1 << 63), 1 << 64

ExtDecoder = Callable[[Callable[[bytes], Any], bytes], Any]


def _too_costly(what: str) -> FormatError:
    return FormatError(f"package body exceeds a decoding bound ({what}): crafted or corrupt; "
                       "delete it and let precompile rewrite it")


class BoundedUnpacker:
    """Decodes one body and every ext payload nested in it, sharing one set of budgets.

    ``decoders`` maps an ext code to ``decoder(unpack, payload)``; a decoder unpacks nested
    payloads with the ``unpack`` it is given, so they count against the same budgets."""

    def __init__(self, decoders: Mapping[int, ExtDecoder], body_len: int,
                 unknown: Callable[[int], FormatError]) -> None:
        self._decoders = decoders
        self._unknown = unknown
        self._bytes_left = EXPANSION * body_len + SLACK
        self._containers_left = MAX_CONTAINERS
        self._depth = 0

    def unpack(self, data: bytes) -> Any:
        """One msgpack value filling ``data``; raises FormatError on anything else."""
        self._bytes_left -= len(data)
        if self._bytes_left < 0:
            raise _too_costly("total size of nested values")
        try:
            return msgpack.unpackb(data, ext_hook=self._ext_hook, list_hook=self._list_hook,
                                   object_pairs_hook=self._map_hook, raw=False,
                                   strict_map_key=False)
        except FormatError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError,
                MemoryError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
            raise FormatError(f"package body is not valid msgpack: {type(e).__name__}: "
                              f"{e}") from None

    def _ext_hook(self, code: int, data: bytes) -> Any:
        decoder = self._decoders.get(code)
        if decoder is None:
            raise self._unknown(code)
        if self._depth >= MAX_EXT_DEPTH:
            raise _too_costly(f"values nested more than {MAX_EXT_DEPTH} deep")
        self._depth += 1
        try:
            return decoder(self.unpack, data)
        finally:
            self._depth -= 1

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
                raise FormatError(f"malformed package: a map key of type {type(key).__name__} "
                                  "that is not a string or a 64-bit integer (the only keys "
                                  "precompile writes); delete it and let precompile "
                                  "rewrite it")
        return dict(pairs)
