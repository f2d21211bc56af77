"""The envelope: every byte is checked before anything is decoded; values round-trip."""
from __future__ import annotations

import enum
import struct
import types

import pytest

from precompile.format import envelope as fmt
from precompile.errors import FormatError, IntegrityError, PackageError


def _sample() -> bytes:
    def nested(a, *args, b=2, **kw):
        def inner(z):
            return z + a
        return inner, (1, 2.5, 3j, None, ..., frozenset({1, 2}), 2 ** 80, b"x", "s")

    blob = b"guard state bytes"
    return fmt.encode({"factors": {"python": "x"}},
                      {"frames": [{"code": nested.__code__, "t": (1, (2, 3))}],
                       "big": -(2 ** 90), "sl": slice(1, None, 2)},
                      {fmt.sha256_hex(blob): blob})


def test_round_trip_keeps_code_and_types() -> None:
    env = fmt.decode(_sample())
    code = env.manifest["frames"][0]["code"]
    assert code.co_name == "nested" and code.co_argcount == 1
    assert env.manifest["frames"][0]["t"] == (1, (2, 3))
    assert env.manifest["big"] == -(2 ** 90) and env.manifest["sl"] == slice(1, None, 2)
    consts = code.co_consts
    for value in (2.5, 3j, ..., b"x", "s"):
        assert value in consts, value
    fn = type(test_round_trip_keeps_code_and_types)(code, {})
    inner, values = fn(10, b=2)
    assert inner(5) == 15  # the rebuilt code object really runs
    assert values == (1, 2.5, 3j, None, ..., frozenset({1, 2}), 2 ** 80, b"x", "s")
    assert list(env.blobs.values()) == [b"guard state bytes"]


def test_every_single_byte_flip_is_detected() -> None:
    data = _sample()
    for pos in range(0, len(data), max(1, len(data) // 300)):
        mutated = bytearray(data)
        mutated[pos] ^= 0x01
        with pytest.raises(PackageError):
            fmt.decode(bytes(mutated))


@pytest.mark.parametrize("cut", [0, 5, 19, 100, -1])
def test_truncation_is_a_format_error(cut: int) -> None:
    data = _sample()
    with pytest.raises(FormatError):
        fmt.decode(data[:cut])


def test_foreign_and_future_files() -> None:
    with pytest.raises(FormatError, match="magic"):
        fmt.decode(b"PK\x03\x04" + b"\x00" * 100)
    data = bytearray(_sample())
    struct.pack_into(">H", data, 8, fmt.FORMAT_VERSION + 1)
    with pytest.raises(FormatError, match="version"):
        fmt.decode(bytes(data))


def test_blob_keys_must_be_their_hash() -> None:
    with pytest.raises(ValueError):
        fmt.encode({}, {}, {"0" * 64: b"content"})


def test_unstorable_values_are_refused() -> None:
    with pytest.raises(FormatError, match="cannot store"):
        fmt.encode({}, {"x": object()}, {})


def test_signing() -> None:
    signed = fmt.encode({}, {}, {}, signing_key=b"k1")
    assert fmt.decode(signed, signing_key=b"k1").meta == {}
    with pytest.raises(IntegrityError):
        fmt.decode(signed, signing_key=b"k2")
    with pytest.raises(IntegrityError, match="not signed"):
        fmt.decode(fmt.encode({}, {}, {}), signing_key=b"k1")
    fmt.decode(signed)  # readable without a key: signing is opt-in for readers


def test_objects_in_code_are_stored_by_name_and_resolved() -> None:
    """Dynamo's bytecode can load objects as constants (a namedtuple's ``_make``): the
    package stores them as references by name, and the installer resolves them."""
    import collections
    import types

    from precompile.identity.bytecode import code_with_refs, resolve_refs
    from precompile.identity.names import importable_name

    Pair = collections.namedtuple("Pair", "a b")
    globals()["_PairForTest"] = Pair
    Pair.__qualname__ = "_PairForTest"
    try:
        assert importable_name(collections) == "collections"
        assert importable_name(collections.OrderedDict) == "collections:OrderedDict"
        assert importable_name(Pair._make) == f"{__name__}:_PairForTest._make"
        assert importable_name(lambda: 0) is None  # a <lambda> has no importable name
        assert not fmt.storable(Pair._make) and fmt.storable((1, "x", None))

        def make_pair():
            return 0
        code = make_pair.__code__.replace(co_consts=(None, Pair._make))
        stored = code_with_refs(code)
        assert stored is not None and fmt.ObjectRef(f"{__name__}:_PairForTest._make") in stored.co_consts
        why = code_with_refs(code.replace(co_consts=(None, object())))
        assert isinstance(why, str) and "of type object" in why

        data = fmt.encode({}, {"code": stored}, {})
        back = resolve_refs(fmt.decode(data).manifest["code"])
        assert back.co_consts == (None, Pair._make)
        assert isinstance(back, types.CodeType)
    finally:
        del globals()["_PairForTest"]


def test_torch_values_in_code_round_trip():
    """Dynamo bakes devices, dtypes, sizes, layouts, memory formats and enum members into
    transformed bytecode; they are stored as plain data or by name and rebuilt exactly."""
    import torch

    from precompile.identity.bytecode import code_with_refs, resolve_refs

    values = (torch.device("cpu"), torch.device("cuda", 1), torch.float16, torch.bfloat16,
              torch.Size([2, 3]), torch.Size([]), torch.strided, torch.channels_last,
              _ColorForTest.RED)
    code = (lambda: None).__code__.replace(co_consts=(None, *values))
    stored = code_with_refs(code)
    assert isinstance(stored, types.CodeType)
    assert all(fmt.storable(c) for c in stored.co_consts)
    back = resolve_refs(fmt.decode(fmt.encode({}, {"code": stored}, {})).manifest["code"])
    assert back.co_consts == (None, *values)
    assert [type(c) for c in back.co_consts[1:]] == [type(v) for v in values]
    assert back.co_consts[-1] is _ColorForTest.RED


def test_dict_constants_round_trip():
    """Dynamo loads a nested function's annotations as a dict constant (transformers' output
    capturing): stored as its items, each a constant of the kinds above, and rebuilt as a
    new dict of equal items; one holding what the format cannot store is refused by type."""
    import torch

    from precompile.identity.bytecode import code_with_refs, resolve_refs

    annotations = {"x": "torch.Tensor", "return": None, 3: {"k": (1.5, "v"), 2: torch.float16}}
    code = (lambda: None).__code__.replace(co_consts=(None, annotations))
    stored = code_with_refs(code)
    assert isinstance(stored, types.CodeType) and all(fmt.storable(c) for c in stored.co_consts)
    back = resolve_refs(fmt.decode(fmt.encode({}, {"code": stored}, {})).manifest["code"])
    assert back.co_consts == (None, annotations) and type(back.co_consts[1]) is dict
    unstorable = code.replace(co_consts=(None, {"x": object()}))
    assert "of type dict" in code_with_refs(unstorable)
    nested: dict = {}
    nested["self"] = nested
    assert "of type dict" in code_with_refs(code.replace(co_consts=(None, nested)))


def test_malformed_dict_constants_are_refused():
    """A package's dict constant whose items are not pairs, or whose key cannot be hashed,
    stops the install of that entry (ValueError) rather than building anything else."""
    from precompile.identity.bytecode import DICT_KIND, resolve_refs

    for args in ((("a",),), ("ab",), ((["unhashable"], 1),), (({"k": 1}, 1),)):
        code = (lambda: None).__code__.replace(co_consts=(None, fmt.ValueRef(DICT_KIND, args)))
        with pytest.raises(ValueError):
            resolve_refs(code)


def test_value_refs_rebuild_only_known_kinds():
    """A package cannot make the installer call anything but the few constructors it knows."""
    from precompile import _torch

    for ref in (fmt.ValueRef("os.system", ("true",)), fmt.ValueRef("torch.dtype", ("nn",)),
                fmt.ValueRef("torch.Size", ("1",)), fmt.ValueRef("torch.device", (1, 2, 3))):
        with pytest.raises(ValueError):
            _torch.rebuild_value(ref)


class _ColorForTest(enum.Enum):
    RED = 1
