"""Is a stored code object safe to *build* on this interpreter?

``CodeType.replace`` trusts its bytes: CPython 3.12+ walks ``co_code`` while creating the
object (an instrumented opcode, or an instruction whose inline caches run past the end,
crashes the process), and the line and exception tables are parsed in C without bounds
checks. A package that passed its checksum can still be crafted, and ``precompile ls``/
``verify`` decode packages nobody trusts, so every field is checked here first, from the
running interpreter's own ``opcode``/``dis`` tables (right on 3.11, 3.12 and 3.13 alike):

* counts and sizes are ints in range, names are tuples of ``str``;
* every instruction is a real opcode of this interpreter (not a cache slot, not specialized,
  not instrumented), followed by all its inline cache entries;
* constant, name and local indexes are in range, jumps land on an instruction;
* the line table and exception table parse to their ends and cover only this code.

A failed check is a ``ValueError`` naming it; the caller turns it into a FormatError.
This makes *building* the object safe; running it stays reserved for trusted packages.
"""
from __future__ import annotations

import dis
import functools
import opcode
import re
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

_COUNT_FIELDS = ("co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals",
                 "co_stacksize", "co_firstlineno")
_NAME_FIELDS = ("co_names", "co_varnames", "co_freevars", "co_cellvars")
_MAX_COUNT = 1 << 24  # far beyond any real function; keeps C int arithmetic exact
_MAX_FLAGS = 1 << 31
_MAX_VARINT_CHUNKS = 5  # 30 bits: CPython's readers shift a C int by 6 per chunk

_MIN_INSTRUMENTED = getattr(opcode, "MIN_INSTRUMENTED_OPCODE", 256)
_NOT_INSTRUCTIONS = {"CACHE", "RESERVED", "ENTER_EXECUTOR"}
# Real opcodes of this interpreter: the public map (specialized forms are not in it; 3.12
# lists pseudo-ops >= 256 there, which never appear in bytecode).
VALID_OPCODES = frozenset(
    op for name, op in opcode.opmap.items()
    if op < min(_MIN_INSTRUMENTED, 256) and name not in _NOT_INSTRUCTIONS
    and not name.startswith("INSTRUMENTED_"))
_EXTENDED_ARG = opcode.EXTENDED_ARG
_JUMPS = frozenset(getattr(dis, "hasjump", None) or dis.hasjrel) | frozenset(dis.hasjabs)
# Name indexes that carry flag bits below them (as dis decodes them on this interpreter).
_NAME_SHIFT = {"LOAD_GLOBAL": 1, "LOAD_SUPER_ATTR": 2,
               "LOAD_ATTR": 1 if sys.version_info >= (3, 12) else 0}
_LOCAL_PAIRS = {"LOAD_FAST_LOAD_FAST", "STORE_FAST_LOAD_FAST", "STORE_FAST_STORE_FAST"}


def cache_entries(op: int) -> int:
    """Inline cache code units after ``op`` (a list by opcode up to 3.12, a dict by name
    from 3.13)."""
    table = opcode._inline_cache_entries
    if isinstance(table, dict):
        return int(table.get(opcode.opname[op], 0))
    return int(table[op]) if op < len(table) else 0


# What the walk checks per opcode, tabulated once (the walk runs on every decode).
_VALID, _CONST, _NAME, _LOCAL, _PAIR, _JUMP = 1, 2, 4, 8, 16, 32


_LOCAL_OPS = frozenset(dis.haslocal) | frozenset(dis.hasfree)  # fast locals, cells and frees
_PAIR_OPS = frozenset(op for op in _LOCAL_OPS if opcode.opname[op] in _LOCAL_PAIRS)
# The operand kinds, read off ``dis``'s opcode lists.
_OPERAND_LISTS = ((_CONST, dis.hasconst), (_NAME, dis.hasname), (_JUMP, _JUMPS),
                  (_LOCAL, _LOCAL_OPS - _PAIR_OPS), (_PAIR, _PAIR_OPS))


def _opcode_kind(op: int) -> int:
    if op not in VALID_OPCODES:
        return 0
    kind = _VALID
    for flag, ops in _OPERAND_LISTS:
        if op in ops:
            kind |= flag
    return kind


_KIND = tuple(_opcode_kind(op) for op in range(256))
_CACHES = tuple(cache_entries(op) if _KIND[op] else 0 for op in range(256))
_SHIFT = tuple(_NAME_SHIFT.get(opcode.opname[op], 0) for op in range(256))


def check_code_fields(fields: dict[str, Any]) -> None:
    """Raise ValueError unless ``fields`` (``CodeType.replace`` keyword arguments) can build
    a code object without crashing this interpreter."""
    _check_types(fields)
    _check_sizes(fields)
    code = fields["co_code"]
    starts = _check_instructions(code, fields)
    _check_line_table(fields["co_linetable"], len(code) // 2)
    _check_exception_table(fields["co_exceptiontable"], starts, len(code) // 2,
                           fields["co_stacksize"])


def _is_int_below(limit: int, value: Any) -> bool:
    return type(value) is int and 0 <= value < limit


def _is_names(value: Any) -> bool:
    return type(value) is tuple and all(type(n) is str for n in value)


# (fields, the test each must pass, what a failure says), checked in this order.
_FIELD_TYPES: tuple[tuple[tuple[str, ...], Callable[[Any], bool], str], ...] = (
    (_COUNT_FIELDS, functools.partial(_is_int_below, _MAX_COUNT), "is not a count"),
    (("co_flags",), functools.partial(_is_int_below, _MAX_FLAGS), "is out of range"),
    (_NAME_FIELDS, _is_names, "is not a tuple of names"),
    (("co_filename", "co_name", "co_qualname"), lambda v: type(v) is str, "is not a string"),
    (("co_code", "co_linetable", "co_exceptiontable"), lambda v: type(v) is bytes,
     "is not bytes"),
    (("co_consts",), lambda v: type(v) is tuple, "is not a tuple"),
)


def _check_types(fields: dict[str, Any]) -> None:
    """Every field has the type (and range) ``CodeType.replace`` would write it from."""
    for names, ok, problem in _FIELD_TYPES:
        for name in names:
            if not ok(fields[name]):
                raise ValueError(f"{name} {problem}")


def _check_sizes(fields: dict[str, Any]) -> None:
    """The sizes agree with each other: the instruction walk indexes with them."""
    if fields["co_nlocals"] != len(fields["co_varnames"]):
        raise ValueError("co_nlocals does not match co_varnames")
    code = fields["co_code"]
    if not code or len(code) % 2 or len(code) >= 2 * _MAX_COUNT:
        raise ValueError("co_code has an impossible length")


class _Operands(NamedTuple):
    """How many constants, names and locals an instruction's operand may index."""

    consts: int
    names: int
    locals: int


def _operand_limits(fields: dict[str, Any]) -> _Operands:
    return _Operands(len(fields["co_consts"]), len(fields["co_names"]),
                     sum(len(fields[f]) for f in ("co_varnames", "co_cellvars", "co_freevars")))


def _check_operand(op: int, arg: int, kind: int, limits: _Operands, offset: int) -> None:
    """Raise unless the operand indexes inside its table (a local pair packs two 4-bit
    indexes; a name index may carry flag bits below it, ``_SHIFT``)."""
    where = f"{opcode.opname[op]} at offset {offset}"
    if kind & _CONST and arg >= limits.consts:
        raise ValueError(f"{where}: constant {arg} out of range")
    if kind & _NAME and arg >> _SHIFT[op] >= limits.names:
        raise ValueError(f"{where}: name {arg} out of range")
    local = max(arg >> 4, arg & 15) if kind & _PAIR else arg if kind & _LOCAL else -1
    if local >= limits.locals:
        raise ValueError(f"{where}: local {arg} out of range")


def _check_instructions(code: bytes, fields: dict[str, Any]) -> set[int]:
    """Every instruction a real opcode followed by its inline caches, its operand in range;
    returns the instruction offsets (EXTENDED_ARG prefixes included: jumps land on them).
    One tight loop over tabulated opcode facts: it runs on every decode."""
    limits = _operand_limits(fields)
    starts: set[int] = set()
    jumps = []
    i, ext, size = 0, 0, len(code)
    while i < size:
        op = code[i]
        arg, kind = code[i + 1] | ext, _KIND[op]
        if not kind:
            raise ValueError(f"opcode {op} at offset {i} is not an instruction of this "
                             f"Python ({sys.version.split()[0]})")
        starts.add(i)
        ext = _extended(op, arg, i)
        end = i + 2 + 2 * _CACHES[op]
        if end > size or code[i + 2:end:2].strip(b"\0"):  # cache slots are opcode 0
            raise ValueError(f"{opcode.opname[op]} at offset {i} lacks its inline caches")
        if kind > _VALID:
            _check_operand(op, arg, kind, limits, i)
            if kind & _JUMP:
                jumps.append((i, op, arg))
        i = end
    if ext:
        raise ValueError("co_code ends in EXTENDED_ARG")
    _check_jumps(jumps, starts)
    return starts


def _extended(op: int, arg: int, offset: int) -> int:
    """The operand bits an EXTENDED_ARG carries into the next instruction (0 after any
    other); a chain longer than 32 bits is refused."""
    ext = arg << 8 if op == _EXTENDED_ARG else 0
    if ext >= 1 << 32:
        raise ValueError(f"EXTENDED_ARG chain at offset {offset} is too long")
    return ext


def _check_jumps(jumps: list[tuple[int, int, int]], starts: set[int]) -> None:
    """Every jump (offset, opcode, operand) lands on an instruction."""
    for offset, op, arg in jumps:
        if _jump_target(offset, op, arg) not in starts:
            raise ValueError(f"{opcode.opname[op]} at offset {offset} jumps outside the code")


def _jump_target(offset: int, op: int, arg: int) -> int:
    """Where a jump lands, as ``dis`` computes it: relative jumps count from the end of the
    instruction's inline caches, backward ones subtract."""
    if op in dis.hasjabs:
        return 2 * arg
    after = offset + 2 + 2 * _CACHES[op]
    return after - 2 * arg if "JUMP_BACKWARD" in opcode.opname[op] else after + 2 * arg


# The location table's grammar (Objects/locations.md, unchanged 3.11-3.13): an entry is a
# byte with bit 7 set (kind in bits 3-6, code units - 1 in bits 0-2), then by kind: 0-9 one
# column byte, 10-12 two, 13 one varint, 14 four varints, 15 nothing. Payload bytes never
# have bit 7 set; a varint is 6-bit chunks, bit 6 meaning "more" (at most 5: 30 bits, as
# CPython's C readers shift an int).
_VARINT = rb"[\x40-\x7f]{0,4}[\x00-\x3f]"
_LINE_TABLE = re.compile(rb"(?:[\x80-\xcf][\x00-\x7f]|[\xd0-\xe7][\x00-\x7f]{2}"
                         rb"|[\xe8-\xef]" + _VARINT + rb"|[\xf0-\xf7](?:" + _VARINT + rb"){4}"
                         rb"|[\xf8-\xff])*")
_UNITS = bytes(((b & 7) + 1) if b & 0x80 else 0 for b in range(256))  # per entry head


def _check_line_table(table: bytes, units: int) -> None:
    """The location table parses to its end (``_LINE_TABLE``) and covers exactly the code:
    CPython's readers trust it, so a cut or garbled one could be read past its end."""
    if not _LINE_TABLE.fullmatch(table):
        raise ValueError("co_linetable is malformed")
    if table and sum(table.translate(_UNITS)) != units:
        raise ValueError("co_linetable does not cover co_code")


def _check_exception_table(table: bytes, starts: set[int], units: int,
                           stacksize: int) -> None:
    """Each entry names code inside ``co_code``, after the previous entry's, and a handler
    at an instruction, with a stack depth the frame has."""
    i, last_end = 0, 0
    while i < len(table):
        (start, length, target, depth_lasti), i = _exception_entry(table, i)
        if start < last_end or start + length > units or 2 * target not in starts:
            raise ValueError("co_exceptiontable entry points outside the code")
        if depth_lasti >> 1 > stacksize:
            raise ValueError("co_exceptiontable entry is deeper than co_stacksize")
        last_end = start + length


def _exception_entry(table: bytes, i: int) -> tuple[list[int], int]:
    """The entry at ``i`` (start, length, target, depth/lasti; its first byte flagged with
    bit 7, which its first varint checks) and where the next one starts."""
    values, head = [], 0x80
    for _ in range(4):
        value, i = _exception_varint(table, i, head)
        values.append(value)
        head = 0
    return values, i


def _exception_varint(table: bytes, i: int, head: int) -> tuple[int, int]:
    """A big-endian 6-bit-chunk varint, as ``dis._parse_varint`` reads it. Bit 7 marks an
    entry's first byte (CPython finds entries by scanning back to it), so it is ``head`` on
    this varint's first byte (0x80 when that starts the entry, else 0) and clear after."""
    value = 0
    for _ in range(_MAX_VARINT_CHUNKS):
        if i >= len(table) or table[i] & 0x80 != head:
            raise ValueError("co_exceptiontable entry is truncated or misaligned")
        b, head = table[i], 0
        value = (value << 6) | (b & 63)
        i += 1
        if not b & 64:
            return value, i
    raise ValueError("co_exceptiontable varint too long")
