"""What decoding one msgpack value will allocate, read from its bytes before it is decoded.

msgpack builds every value in C before any hook of ours runs, and a small token can become a
large object: a 4-byte string is a 56-byte ``str`` plus an 8-byte slot in its list (a list
of 3-byte strings decoded to ~88 bytes per element), an empty array (1 byte) is a 72-byte
list, a map pair (2 bytes) passes through a 64-byte tuple and a dict entry. Bounding only
the input bytes therefore left memory at ~32x a package's size, and ~80x in the worst case.

:func:`scan` walks the tokens of one value (no object is built; strings, blobs and ext
payloads are skipped over, not copied) and returns what decoding it costs: the number of
values and an estimate of the bytes CPython allocates for them, from the object sizes of a
64-bit CPython (rounded up: the estimate is an upper bound of what ``msgpack.unpackb``
allocates, within 5x of it, which tests/format/test_decode_budget.py checks on the interpreter it
runs on). The caller
(``decode_limits.BoundedUnpacker``) charges it against the package's budget *before*
decoding, so a value over the budget is never built.
"""
from __future__ import annotations

import dataclasses
import re
import struct

from ..errors import FormatError

SLOT = 8  # one pointer in a list, tuple or dict entry
INT = 40  # an int that fits 64 bits (small ones are cached and cost only their slot)
FLOAT = 32
STR = 56  # header of a compact ASCII str; a non-ASCII one costs up to 4 bytes a character
STR_WIDE = 80
BYTES = 40
LIST = 72  # list object with its GC header, plus SLOT per element
MAP = 96  # dict object with its GC header, and the list of pairs msgpack builds first
PAIR = 144  # per pair: a 2-tuple (64), its slot (8), a dict entry and its index (grown)
PENDING = 64  # the record of an ext value awaiting decoding (decode_limits._Pending)


@dataclasses.dataclass
class Cost:
    """Values and estimated bytes of one scanned msgpack value."""

    values: int = 0
    bytes: int = 0


def _truncated() -> FormatError:
    return FormatError("package body is not valid msgpack: a value runs past its end; "
                       "delete it and let precompile rewrite it")


# first byte -> (bytes that follow it, cost) for the tokens of fixed width
_FIXED = {0xc0: (0, 0), 0xc2: (0, 0), 0xc3: (0, 0), 0xca: (4, FLOAT), 0xcb: (8, FLOAT),
          0xcc: (1, INT), 0xcd: (2, INT), 0xce: (4, INT), 0xcf: (8, INT),
          0xd0: (1, INT), 0xd1: (2, INT), 0xd2: (4, INT), 0xd3: (8, INT)}
# first byte -> (width of the length field, kind) for strings, blobs and ext values
_SIZED = {0xc4: (1, "bin"), 0xc5: (2, "bin"), 0xc6: (4, "bin"), 0xc7: (1, "ext"),
          0xc8: (2, "ext"), 0xc9: (4, "ext"), 0xd9: (1, "str"), 0xda: (2, "str"),
          0xdb: (4, "str")}
_FIXEXT = {0xd4: 1, 0xd5: 2, 0xd6: 4, 0xd7: 8, 0xd8: 16}
# first byte -> (width of the count, values per item, cost, cost per item) for arrays and maps
_COUNTED = {0xdc: (2, 1, LIST, SLOT), 0xdd: (4, 1, LIST, SLOT),
            0xde: (2, 2, MAP, PAIR), 0xdf: (4, 2, MAP, PAIR)}
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_UINT = {1: struct.Struct(">B"), 2: struct.Struct(">H"), 4: struct.Struct(">I")}


def _head_table() -> list[tuple[int, int, int] | None]:
    """first byte -> (bytes that follow, values inside, cost) for every token whose first
    byte says all three: ints, floats, nil, bools, and the short forms of maps, arrays and
    strings (a short string's cost assumes ASCII; ``scan`` corrects a wider one)."""
    table: list[tuple[int, int, int] | None] = [None] * 256
    for first in range(0x80):
        table[first] = (0, 0, 0)  # positive fixint: cached
    for first in range(0xe0, 0x100):
        table[first] = (0, 0, INT)  # negative fixint
    for n in range(16):
        table[0x80 | n] = (0, 2 * n, MAP + PAIR * n)  # fixmap
        table[0x90 | n] = (0, n, LIST + SLOT * n)  # fixarray
    for n in range(32):
        table[0xa0 | n] = (n, 0, STR + n)  # fixstr
    for first, (width, cost) in _FIXED.items():
        table[first] = (width, 0, cost)
    return table


_HEADS = _head_table()


def _sized_cost(kind: str, data: bytes, start: int, length: int) -> int:
    if kind == "bin":
        return BYTES + length
    if kind == "ext":
        return PENDING + BYTES + length
    if _NON_ASCII.search(data, start, start + length) is None:  # no copy of the string
        return STR + length
    return STR_WIDE + 4 * length


def scan(data: bytes, max_values: int, max_bytes: int) -> Cost:
    """The cost of decoding the msgpack value at the start of ``data``. Raises FormatError
    for a value that runs past the end or has an unused first byte; stops early (returning
    what it counted so far) once over ``max_values`` values or ``max_bytes`` bytes, so the
    scan itself is bounded in time by the budget it checks. Every value still to read takes
    at least one byte, so the walk stops as soon as more remain than bytes do."""
    pos, todo, end = 0, 1, len(data)
    values = cost = 0
    heads, ascii_end = _HEADS, _NON_ASCII.search
    while todo and todo <= end - pos:
        first = data[pos]
        pos += 1
        todo -= 1
        values += 1
        head = heads[first]
        if head is None:
            pos, todo, more = _other(data, pos, first, todo)
            cost += more
        else:  # one table lookup
            skip, inside, more = head
            if 0xa0 <= first < 0xc0 and ascii_end(data, pos, pos + skip) is not None:  # fixstr
                more = STR_WIDE + 4 * skip
            pos += skip
            todo += inside
            cost += more
        if values > max_values or cost > max_bytes:
            break
    if todo > end - pos:  # todo is never negative: this also catches pos past the end
        raise _truncated()
    return Cost(values, cost)


def _other(data: bytes, pos: int, first: int, todo: int) -> tuple[int, int, int]:
    """(position after, values still to read, cost) for the long forms of strings,
    blobs, ext values, arrays and maps."""
    if first in _FIXEXT:
        n = _FIXEXT[first]
        return pos + 1 + n, todo, _sized_cost("ext", data, pos + 1, n)
    if first in _SIZED:
        width, kind = _SIZED[first]
        n = _read_uint(data, pos, width)
        pos += width + (kind == "ext")
        return pos + n, todo, _sized_cost(kind, data, pos, n)
    if first in _COUNTED:
        width, per, cost, each = _COUNTED[first]
        n = _read_uint(data, pos, width)
        return pos + width, todo + per * n, cost + each * n
    raise FormatError("package body is not valid msgpack: an unused type byte; "
                      "delete it and let precompile rewrite it")


def _read_uint(data: bytes, pos: int, width: int) -> int:
    if pos + width > len(data):
        raise _truncated()
    return _UINT[width].unpack_from(data, pos)[0]
