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
import opcode
import sys
from collections.abc import Iterator
from typing import Any

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
_CACHE = opcode.opmap["CACHE"]
_EXTENDED_ARG = opcode.EXTENDED_ARG
_JUMPS = frozenset(getattr(dis, "hasjump", None) or dis.hasjrel) | frozenset(dis.hasjabs)
_CONSTS = frozenset(dis.hasconst)
_NAMES = frozenset(dis.hasname)
_LOCALS = frozenset(dis.haslocal) | frozenset(dis.hasfree)
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


def check_code_fields(fields: dict[str, Any]) -> None:
    """Raise ValueError unless ``fields`` (``CodeType.replace`` keyword arguments) can build
    a code object without crashing this interpreter."""
    _check_types(fields)
    code = fields["co_code"]
    starts = _check_instructions(code, fields)
    _check_line_table(fields["co_linetable"], len(code) // 2)
    _check_exception_table(fields["co_exceptiontable"], starts, len(code) // 2,
                           fields["co_stacksize"])


def _check_types(fields: dict[str, Any]) -> None:
    for name in _COUNT_FIELDS:
        value = fields[name]
        if type(value) is not int or not 0 <= value < _MAX_COUNT:
            raise ValueError(f"{name} is not a count")
    if type(fields["co_flags"]) is not int or not 0 <= fields["co_flags"] < _MAX_FLAGS:
        raise ValueError("co_flags is out of range")
    for name in _NAME_FIELDS:
        value = fields[name]
        if type(value) is not tuple or not all(type(n) is str for n in value):
            raise ValueError(f"{name} is not a tuple of names")
    for name in ("co_filename", "co_name", "co_qualname"):
        if type(fields[name]) is not str:
            raise ValueError(f"{name} is not a string")
    for name in ("co_code", "co_linetable", "co_exceptiontable"):
        if type(fields[name]) is not bytes:
            raise ValueError(f"{name} is not bytes")
    if type(fields["co_consts"]) is not tuple:
        raise ValueError("co_consts is not a tuple")
    if fields["co_nlocals"] != len(fields["co_varnames"]):
        raise ValueError("co_nlocals does not match co_varnames")
    code = fields["co_code"]
    if not code or len(code) % 2 or len(code) >= 2 * _MAX_COUNT:
        raise ValueError("co_code has an impossible length")


def _instructions(code: bytes) -> Iterator[tuple[int, int, int]]:
    """(offset, opcode, argument with EXTENDED_ARG prefixes applied) of each instruction,
    EXTENDED_ARG prefixes included (jumps land on them), skipping inline cache entries
    (checked to be there and to be cache slots)."""
    i, ext = 0, 0
    while i < len(code):
        op, arg = code[i], code[i + 1] | ext
        if op not in VALID_OPCODES:
            raise ValueError(f"opcode {op} at offset {i} is not an instruction of this "
                             f"Python ({sys.version.split()[0]})")
        ext = (arg << 8) if op == _EXTENDED_ARG else 0
        if ext >= 1 << 32:
            raise ValueError("argument too large (EXTENDED_ARG chain)")
        caches = cache_entries(op)
        end = i + 2 + 2 * caches
        if end > len(code) or any(code[j] != _CACHE for j in range(i + 2, end, 2)):
            raise ValueError(f"{opcode.opname[op]} at offset {i} lacks its inline caches")
        yield i, op, arg
        i = end
    if ext:
        raise ValueError("co_code ends in EXTENDED_ARG")


def _check_instructions(code: bytes, fields: dict[str, Any]) -> set[int]:
    """Every instruction valid, its operand in range; returns the instruction offsets."""
    n_consts, n_names = len(fields["co_consts"]), len(fields["co_names"])
    n_locals = sum(len(fields[f]) for f in ("co_varnames", "co_cellvars", "co_freevars"))
    starts, jumps = set(), []
    for offset, op, arg in _instructions(code):
        starts.add(offset)
        if op == _EXTENDED_ARG:
            continue
        name = opcode.opname[op]
        if op in _CONSTS and arg >= n_consts:
            raise ValueError(f"{name} at offset {offset}: constant {arg} out of range")
        if op in _NAMES and arg >> _NAME_SHIFT.get(name, 0) >= n_names:
            raise ValueError(f"{name} at offset {offset}: name {arg} out of range")
        if op in _LOCALS:
            indexes = (arg >> 4, arg & 15) if name in _LOCAL_PAIRS else (arg,)
            if max(indexes) >= n_locals:
                raise ValueError(f"{name} at offset {offset}: local {arg} out of range")
        if op in _JUMPS:
            jumps.append((offset, op, arg))
    for offset, op, arg in jumps:
        if _jump_target(offset, op, arg) not in starts:
            raise ValueError(f"{opcode.opname[op]} at offset {offset} jumps outside the code")
    return starts


def _jump_target(offset: int, op: int, arg: int) -> int:
    """Where a jump lands, as ``dis`` computes it: relative jumps count from the end of the
    instruction's inline caches, backward ones subtract."""
    if op in dis.hasjabs:
        return 2 * arg
    after = offset + 2 + 2 * cache_entries(op)
    return after - 2 * arg if "JUMP_BACKWARD" in opcode.opname[op] else after + 2 * arg


def _varint(table: bytes, i: int, end: int) -> tuple[int, int]:
    """(value, next index) of a 6-bit-chunk varint (bit 6: more follows) in table[i:end]."""
    value = 0
    for chunk in range(_MAX_VARINT_CHUNKS):
        if i >= end:
            raise ValueError("truncated varint")
        b = table[i]
        value |= (b & 63) << (6 * chunk)
        i += 1
        if not b & 64:
            return value, i
    raise ValueError("varint too long")


def _check_line_table(table: bytes, units: int) -> None:
    """The location table (Objects/locations.md, unchanged 3.11-3.13) parses to its end and
    covers exactly the code: each entry starts with bit 7 set, its payload bytes do not."""
    i, covered = 0, 0
    while i < len(table):
        head = table[i]
        if not head & 0x80:
            raise ValueError("co_linetable entry does not start an entry")
        kind, covered = (head >> 3) & 15, covered + (head & 7) + 1
        end = i + 1
        while end < len(table) and not table[end] & 0x80:
            end += 1
        i += 1
        if kind <= 12:
            i += 1 if kind <= 9 else 2
        else:
            for _ in range({13: 1, 14: 4, 15: 0}[kind]):
                _, i = _varint(table, i, end)
        if i != end:
            raise ValueError("co_linetable entry has the wrong length")
    if covered != units and table:
        raise ValueError("co_linetable does not cover co_code")


def _check_exception_table(table: bytes, starts: set[int], units: int,
                           stacksize: int) -> None:
    """Each entry (start, length, target, depth/lasti; the first byte flagged with bit 7)
    names code inside ``co_code`` and a handler at an instruction."""
    i, last_end = 0, 0
    while i < len(table):
        if not table[i] & 0x80:
            raise ValueError("co_exceptiontable entry does not start an entry")
        values = []
        for _ in range(4):
            value, i = _exception_varint(table, i)
            values.append(value)
        start, length, target, depth_lasti = values
        if start < last_end or start + length > units or 2 * target not in starts:
            raise ValueError("co_exceptiontable entry points outside the code")
        if depth_lasti >> 1 > stacksize:
            raise ValueError("co_exceptiontable entry is deeper than co_stacksize")
        last_end = start + length


def _exception_varint(table: bytes, i: int) -> tuple[int, int]:
    """A big-endian 6-bit-chunk varint, as ``dis._parse_varint`` reads it."""
    value = 0
    for chunk in range(_MAX_VARINT_CHUNKS):
        if i >= len(table) or (chunk and table[i] & 0x80):
            raise ValueError("truncated co_exceptiontable entry")
        b = table[i]
        value = (value << 6) | (b & 63)
        i += 1
        if not b & 64:
            return value, i
    raise ValueError("co_exceptiontable varint too long")
