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
* bytes unpacked in total (``EXPANSION`` x the body, so nesting cannot multiply time);
* memory: before msgpack builds anything, ``decode_cost.scan`` reads what the value will
  allocate (every value, string, list and map, with CPython's object sizes) and charges it,
  and every ext value built (tuple, code object...) is charged its size, against
  ``MEMORY_MULTIPLE`` x the body + ``MEMORY_SLACK``: small tokens that become large objects
  (a list of 3-byte strings, nested empty lists) cannot make memory a large multiple of the
  package;
* values in total (``MAX_VALUES``), which bounds the time of the scan and the decode;
* map keys: ``str`` or an ``int`` that fits msgpack's 64 bits, nothing else; a frozenset's
  members: at most ``MAX_SAME_HASH`` of them share a hash (big ints ``7 + k*(2**61-1)``
  all hash alike and made building a set quadratic), and a big int at most
  ``MAX_INT_DIGITS`` digits whatever ``sys.set_int_max_str_digits`` says.

Anything over a bound is a :class:`FormatError`, like any other malformed package.
"""
from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any

import msgpack

from . import decode_cost
from ..errors import FormatError

MAX_EXT_DEPTH = 32
EXPANSION = 8  # total bytes decoded <= EXPANSION x body + SLACK
SLACK = 1 << 20
MEMORY_MULTIPLE = 12  # estimated bytes allocated <= MEMORY_MULTIPLE x body + MEMORY_SLACK
MEMORY_SLACK = 4 << 20
MAX_VALUES = 1 << 21  # one compiled function's package held 614 (measured): ~3,000x that
MAX_SAME_HASH = 8  # frozenset members sharing one hash (-1 and -2 do: a few are genuine)
MAX_INT_DIGITS = 4300  # CPython's default int/str conversion limit
_KEY_INT_MIN, _KEY_INT_END = -(1 << 63), 1 << 64


@dataclasses.dataclass(frozen=True)
class ExtDecoder:
    """How one ext type is built: from its payload decoded as msgpack (``nested``) or from
    the raw payload bytes (a big int's digits, a name)."""

    build: Callable[[Any], Any]
    nested: bool = True


@dataclasses.dataclass(eq=False, slots=True)
class _Pending:
    """An ext value seen by msgpack's hook, decoded later from the work stack."""

    code: int
    data: bytes


_Step = Generator[tuple[Any, int], Any, Any]  # yields (child, depth), is sent its result
_NESTED = (_Pending, list, dict)  # members that still need resolving


def _plain_key(key: Any) -> bool:
    """A name, or an int that fits msgpack's 64 bits (the keys precompile writes)."""
    return type(key) is str or (type(key) is int and _KEY_INT_MIN <= key < _KEY_INT_END)


def _members(value: Any) -> Iterable[tuple[Any, Any]]:
    """(key, member) of a list or map, to be replaced in place; nothing for a scalar."""
    if isinstance(value, list):
        return enumerate(value)
    return value.items() if isinstance(value, dict) else ()


def _too_costly(what: str) -> FormatError:
    return FormatError(f"package body exceeds a decoding bound ({what}): crafted or corrupt; "
                       "delete it and let precompile rewrite it")


def distinct_hashes(items: list[Any]) -> frozenset[Any]:
    """``frozenset(items)``, refused when more than ``MAX_SAME_HASH`` members share a hash:
    members with one hash are compared with each other one by one, so a set of chosen
    colliding members costs the square of their number. Members with different hashes
    spread over the table whatever their values (CPython probes with every bit of the
    hash), so this bound keeps building the set linear."""
    seen: dict[int, int] = {}  # hash -> members with it; an int's hash is itself
    for item in items:
        h = hash(item)
        seen[h] = count = seen.get(h, 0) + 1
        if count > MAX_SAME_HASH:
            raise _too_costly(f"more than {MAX_SAME_HASH} set members with one hash")
    return frozenset(items)


def decimal_int(data: bytes) -> int:
    """A big int from its decimal digits, at most ``MAX_INT_DIGITS`` of them (parsing is
    quadratic in the digits, and ``sys.set_int_max_str_digits(0)`` lifts Python's own cap)."""
    if len(data) > MAX_INT_DIGITS + 1:
        raise _too_costly(f"an integer of more than {MAX_INT_DIGITS} digits")
    return int(data.decode())


class BoundedUnpacker:
    """Decodes one body and every ext payload nested in it, sharing one set of budgets."""

    def __init__(self, decoders: Mapping[int, ExtDecoder], body_len: int,
                 unknown: Callable[[int], FormatError]) -> None:
        self._decoders = decoders
        self._unknown = unknown
        self._bytes_left = EXPANSION * body_len + SLACK
        self._memory_left = MEMORY_MULTIPLE * body_len + MEMORY_SLACK
        self._values_left = MAX_VALUES
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
        """The step that resolves one value: an ext value is built from its payload, a list
        or map gets each nested member resolved in place."""
        if isinstance(value, _Pending):
            return self._ext_value(value, depth)
        return self._fill(value, depth)

    @staticmethod
    def _fill(value: Any, depth: int) -> _Step:
        for key, item in _members(value):
            if isinstance(item, _NESTED):
                value[key] = yield item, depth
        return value

    def _ext_value(self, value: _Pending, depth: int) -> _Step:
        """Build one ext value: its payload decoded flat first, any ext values inside it
        resolved one level deeper, then the builder run on the finished payload."""
        if depth >= MAX_EXT_DEPTH:
            raise _too_costly(f"values nested more than {MAX_EXT_DEPTH} deep")
        decoder = self._decoders[value.code]
        data, value.data = value.data, b""
        freed = decode_cost.BYTES + len(data)  # the record itself stays a while
        if not decoder.nested:
            return self._built(decoder.build(data), freed)
        payload = self._flat(data)
        del data  # the payload's bytes go once decoded
        if self._pending:
            payload = yield payload, depth + 1
        if isinstance(payload, list):  # its members move into the value built
            freed += decode_cost.LIST + decode_cost.SLOT * len(payload)
        return self._built(decoder.build(payload), freed)

    def _built(self, value: Any, freed: int) -> Any:
        """Charge an ext value just built (a tuple, a code object...) its own size, and
        give back what was charged for the payload it was built from (freed now: the
        budget follows live memory, so nesting is not charged at every level)."""
        self._memory_left += freed
        if value is not Ellipsis:
            self._charge_memory(sys.getsizeof(value) + (
                sys.getsizeof(value.__dict__) if hasattr(value, "__dict__") else 0))
        return value

    def _charge_memory(self, size: int) -> None:
        self._memory_left -= size
        if self._memory_left < 0:
            raise _too_costly("memory the decoded values would take")

    def _flat(self, data: bytes) -> Any:
        """One msgpack value filling ``data``; ext values left as ``_Pending``. Its cost is
        charged before msgpack builds anything."""
        self._bytes_left -= len(data)
        if self._bytes_left < 0:
            raise _too_costly("total size of nested values")
        cost = decode_cost.scan(data, self._values_left, self._memory_left)
        self._values_left -= cost.values
        if self._values_left < 0:
            raise _too_costly(f"more than {MAX_VALUES} values")
        self._charge_memory(cost.bytes)
        self._pending = 0
        return msgpack.unpackb(data, ext_hook=self._ext_hook, object_pairs_hook=self._map_hook,
                               raw=False, strict_map_key=False)

    def _ext_hook(self, code: int, data: bytes) -> _Pending:
        if code not in self._decoders:
            raise self._unknown(code)
        self._pending += 1
        return _Pending(code, data)

    @staticmethod
    def _map_hook(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        """Keys are names or small numbers: anything else (a tuple, a big int, a float)
        could be chosen to collide in the hash table and make the map quadratic."""
        for key, _ in pairs:
            if not _plain_key(key):
                kind = "ext value" if isinstance(key, _Pending) else type(key).__name__
                raise FormatError(f"malformed package: a map key of type {kind} "
                                  "that is not a string or a 64-bit integer (the only keys "
                                  "precompile writes); delete it and let precompile "
                                  "rewrite it")
        return dict(pairs)
