"""Input signatures: the shape buckets a serving fleet calls a model with, as data.

A spec names, for every bucket, what the function is called with (shapes, dtypes, which
dims are dynamic, ``requires_grad``) and the autograd mode it runs under, so ``warmup`` can
compile every bucket and ``coverage`` can check every bucket without real data. The JSON
form (``precompile warmup/coverage --spec buckets.json``)::

    {"device": "cpu",                  # optional, default "cpu": one device per spec
     "fill": "random",                 # optional: "random" (seeded) or "zeros"
     "seed": 0,                        # optional
     "signatures": [
       {"name": "b8-s128",             # optional, default "sig1", "sig2", ...
        "mode": "no_grad",             # "grad" (torch's default), "no_grad" or "inference"
        "inputs": [                    # positional arguments, in order
          {"shape": [8, 128], "dtype": "int64", "high": 1000},
          {"shape": [8, 128], "dtype": "float32", "dynamic": [1]},
          {"shape": [8, 64], "dtype": "float32",
           "dynamic": [{"dim": 1, "min": 2, "max": 512}], "requires_grad": true},
          {"value": 0.5}],             # a plain JSON value (number, string, bool, null, list)
        "kwargs": {"mask": {"shape": [8, 128], "dtype": "bool"}}}]}

A dim listed in ``dynamic`` is compiled as a symbolic size (``mark_dynamic``, with the range
when given); its ``shape`` entry is the example size used to compile and check (at least 2:
Dynamo specializes sizes 0 and 1). Integer tensors are drawn from ``[low, high)`` (default
``[0, 2)``: give ``high`` for token ids), floating ones from a normal distribution.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import torch

from ..errors import SpecError

MODES = ("grad", "no_grad", "inference")
FILLS = ("random", "zeros")
_MAX_SPEC_BYTES = 4 << 20


@dataclasses.dataclass(frozen=True)
class DynamicDim:
    """A dim compiled as a symbolic size, with its optional range."""

    dim: int
    min: int | None = None
    max: int | None = None


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype
    dynamic: tuple[DynamicDim, ...] = ()
    requires_grad: bool = False
    fill: str | None = None  # None: the spec's
    low: int = 0
    high: int = 2

    def describe(self) -> str:
        dyn = {d.dim for d in self.dynamic}
        dims = ",".join(f"{n}*" if i in dyn else str(n) for i, n in enumerate(self.shape))
        grad = ",requires_grad" if self.requires_grad else ""
        return f"{str(self.dtype).removeprefix('torch.')}[{dims}]{grad}"


@dataclasses.dataclass(frozen=True)
class ValueSpec:
    """A non-tensor argument, passed as written."""

    value: Any

    def describe(self) -> str:
        return repr(self.value)


InputSpec = TensorSpec | ValueSpec


@dataclasses.dataclass(frozen=True)
class Signature:
    name: str
    inputs: tuple[InputSpec, ...] = ()
    kwargs: tuple[tuple[str, InputSpec], ...] = ()
    mode: str = "grad"

    def describe(self) -> str:
        parts = [i.describe() for i in self.inputs]
        parts += [f"{k}={v.describe()}" for k, v in self.kwargs]
        return f"{self.name}: ({', '.join(parts)}) {self.mode}"


@dataclasses.dataclass(frozen=True)
class Spec:
    signatures: tuple[Signature, ...]
    device: str = "cpu"
    fill: str = "random"
    seed: int = 0


# ------------------------------------------------------------------ parsing


def as_spec(obj: Any) -> Spec:
    """A Spec from a Spec, a JSON file path, the JSON document, or a list of signatures
    (dicts or Signature objects)."""
    if isinstance(obj, Spec):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return load_spec(obj)
    if isinstance(obj, (list, tuple)):
        if all(isinstance(s, Signature) for s in obj):
            return Spec(tuple(obj))
        return parse_spec({"signatures": list(obj)})
    return parse_spec(obj)


def load_spec(path: str | os.PathLike[str]) -> Spec:
    try:
        with open(os.fspath(path), "rb") as fh:
            raw = fh.read(_MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError(f"cannot read the spec {path}: {e.strerror}") from e
    if len(raw) > _MAX_SPEC_BYTES:
        raise SpecError(f"{path}: larger than {_MAX_SPEC_BYTES >> 20} MiB; a spec lists "
                        "shapes, not data")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: not valid JSON ({e})") from e
    return parse_spec(doc, where=os.fspath(path))


def parse_spec(doc: Any, where: str = "spec") -> Spec:
    """Validate the JSON document; every error names the field and the values it takes."""
    _expect(isinstance(doc, dict), where, "must be an object with a 'signatures' list")
    _known(doc, {"device", "fill", "seed", "signatures"}, where)
    sigs = doc.get("signatures")
    _expect(isinstance(sigs, list) and sigs, f"{where}.signatures", "must be a non-empty list")
    fill = doc.get("fill", "random")
    _expect(fill in FILLS, f"{where}.fill", f"must be one of {', '.join(FILLS)}")
    seed = doc.get("seed", 0)
    _expect(_is_int(seed), f"{where}.seed", "must be an integer")
    device = _device(doc.get("device", "cpu"), f"{where}.device")
    return Spec(_signatures(sigs, f"{where}.signatures"), device=device, fill=fill, seed=seed)


def _device(device: Any, where: str) -> str:
    _expect(isinstance(device, str), where, "must be a string such as 'cpu'")
    try:
        torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise SpecError(f"{where}: {device!r} is not a device ({e})") from e
    return device


def _signatures(sigs: list[Any], where: str) -> tuple[Signature, ...]:
    """Every signature, parsed, under names that are unique (reports name a signature)."""
    parsed = tuple(_signature(s, i, f"{where}[{i}]") for i, s in enumerate(sigs))
    names = [s.name for s in parsed]
    dup = sorted({n for n in names if names.count(n) > 1})
    _expect(not dup, where, f"names must be unique (repeated: {dup})")
    return parsed


def _signature(doc: Any, index: int, where: str) -> Signature:
    _expect(isinstance(doc, dict), where, "must be an object with 'inputs'")
    _known(doc, {"name", "inputs", "kwargs", "mode"}, where)
    name = doc.get("name", f"sig{index + 1}")
    _expect(isinstance(name, str) and name, f"{where}.name", "must be a non-empty string")
    mode = doc.get("mode", "grad")
    _expect(mode in MODES, f"{where}.mode", f"must be one of {', '.join(MODES)}")
    inputs = doc.get("inputs", [])
    _expect(isinstance(inputs, list), f"{where}.inputs", "must be a list")
    kwargs = doc.get("kwargs", {})
    _expect(isinstance(kwargs, dict), f"{where}.kwargs", "must be an object")
    sig = Signature(
        name=name, mode=mode,
        inputs=tuple(_input(x, f"{where}.inputs[{i}]") for i, x in enumerate(inputs)),
        kwargs=tuple((str(k), _input(v, f"{where}.kwargs.{k}")) for k, v in kwargs.items()))
    _expect(mode != "inference" or not any(x.requires_grad for _, x in tensor_inputs(sig)),
            f"{where}.mode", "inference mode tensors cannot require grad; use \"no_grad\"")
    return sig


def _input(doc: Any, where: str) -> InputSpec:
    _expect(isinstance(doc, dict) and ("shape" in doc) != ("value" in doc), where,
            "must be a tensor {\"shape\": [...], \"dtype\": ...} or {\"value\": ...}")
    if "value" in doc:
        _known(doc, {"value"}, where)
        return ValueSpec(doc["value"])
    return _tensor_input(doc, where)


def _tensor_input(doc: dict[str, Any], where: str) -> TensorSpec:
    _known(doc, {"shape", "dtype", "dynamic", "requires_grad", "fill", "low", "high"}, where)
    shape = doc["shape"]
    _expect(isinstance(shape, list) and all(_is_size(n) for n in shape), f"{where}.shape",
            "must be a list of non-negative integers")
    dtype = _dtype(doc.get("dtype", "float32"), f"{where}.dtype")
    dynamic = tuple(_dynamic(d, shape, f"{where}.dynamic") for d in doc.get("dynamic", []))
    requires_grad = _requires_grad(doc, dtype, where)
    fill = doc.get("fill")
    _expect(fill is None or fill in FILLS, f"{where}.fill", f"must be one of {FILLS}")
    low, high = _range(doc, where)
    return TensorSpec(tuple(shape), dtype, dynamic, requires_grad, fill, low, high)


def _requires_grad(doc: dict[str, Any], dtype: Any, where: str) -> bool:
    requires_grad = doc.get("requires_grad", False)
    _expect(isinstance(requires_grad, bool), f"{where}.requires_grad", "must be true or false")
    _expect(not requires_grad or inexact(dtype),
            f"{where}.requires_grad", "needs a floating-point or complex dtype")
    return requires_grad


def _range(doc: dict[str, Any], where: str) -> tuple[int, int]:
    low, high = doc.get("low", 0), doc.get("high", 2)
    _expect(isinstance(low, int) and isinstance(high, int) and low < high,
            f"{where}.low/high", "must be integers with low < high")
    return low, high


def _dynamic(doc: Any, shape: list[int], where: str) -> DynamicDim:
    if _is_int(doc):
        doc = {"dim": doc}
    _expect(isinstance(doc, dict) and "dim" in doc, where,
            "entries are a dim index or {\"dim\": i, \"min\": m, \"max\": n}")
    _known(doc, {"dim", "min", "max"}, where)
    dim, lo, hi = doc["dim"], doc.get("min"), doc.get("max")
    _expect(isinstance(dim, int) and 0 <= dim < len(shape), where,
            f"dim {dim!r} is not a dim of shape {shape}")
    _expect(all(v is None or _is_size(v) for v in (lo, hi)), where, "min/max: integers")
    _check_example_size(shape[dim], dim, lo, hi, where)
    return DynamicDim(dim, lo, hi)


def _check_example_size(size: int, dim: int, lo: int | None, hi: int | None,
                        where: str) -> None:
    """A dynamic dim is compiled (and checked) at its example size: one Dynamo does not
    specialize, within the range given."""
    _expect(size >= 2, where, f"dim {dim} is dynamic, so its example size must be at least "
            f"2 (Dynamo specializes sizes 0 and 1), not {size}")
    _expect((lo is None or lo <= size) and (hi is None or size <= hi), where,
            f"the example size {size} of dim {dim} is outside min/max")


def _dtype(name: Any, where: str) -> torch.dtype:
    value = getattr(torch, name.removeprefix("torch."), None) if isinstance(name, str) else None
    _expect(isinstance(value, torch.dtype), where,
            f"{name!r} is not a torch dtype; use e.g. float32, bfloat16, int64, bool")
    return value


def inexact(dtype: torch.dtype) -> bool:
    """Floating-point or complex: the dtypes that may require grad and take values drawn
    from a normal distribution (the others hold counts, indices and flags)."""
    return dtype.is_floating_point or dtype.is_complex


def _is_int(n: Any) -> bool:
    """A JSON integer: ``true`` and ``false`` are not, though Python's bool is an int."""
    return isinstance(n, int) and not isinstance(n, bool)


def _is_size(n: Any) -> bool:
    return _is_int(n) and n >= 0


def _known(doc: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    _expect(not unknown, where, f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def _expect(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise SpecError(f"{where}: {what}")


# ---------------------------------------------------------------- building


@contextlib.contextmanager
def mode_context(mode: str) -> Iterator[None]:
    """The autograd mode a signature runs under (Dynamo guards on it)."""
    ctx = {"grad": torch.enable_grad, "no_grad": torch.no_grad,
           "inference": torch.inference_mode}[mode]()
    with ctx:
        yield


def build_inputs(sig: Signature, spec: Spec, sizes: dict[tuple[Any, int], int] | None = None
                 ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Example arguments for ``sig``: seeded random or zero tensors, never real data.
    ``sizes`` overrides dims: {(position or kwarg name, dim): size}. Call it under
    ``mode_context(sig.mode)``: tensors made under inference mode are inference tensors."""
    gen = torch.Generator(device="cpu").manual_seed(spec.seed)
    sizes = sizes or {}
    args = tuple(_make(x, spec, gen, sizes, i) for i, x in enumerate(sig.inputs))
    kwargs = {k: _make(x, spec, gen, sizes, k) for k, x in sig.kwargs}
    return args, kwargs


def _make(x: InputSpec, spec: Spec, gen: torch.Generator,
          sizes: dict[tuple[Any, int], int], where: Any) -> Any:
    if isinstance(x, ValueSpec):
        return x.value
    shape = [sizes.get((where, d), n) for d, n in enumerate(x.shape)]
    t = _filled(x, shape, x.fill or spec.fill, gen).to(spec.device)
    return t.requires_grad_(x.requires_grad)


def _filled(x: TensorSpec, shape: list[int], fill: str, gen: torch.Generator) -> torch.Tensor:
    """Zeros, or seeded values: normal for floating dtypes, ``[low, high)`` for the others."""
    if fill == "zeros":
        return torch.zeros(shape, dtype=x.dtype)
    if inexact(x.dtype):
        return torch.randn(shape, generator=gen).to(x.dtype)
    return torch.randint(x.low, x.high, shape, generator=gen).to(x.dtype)


def tensor_inputs(sig: Signature) -> Iterator[tuple[Any, TensorSpec]]:
    """(position or kwarg name, spec) of every tensor input."""
    for where, x in itertools.chain(enumerate(sig.inputs), sig.kwargs):
        if isinstance(x, TensorSpec):
            yield where, x


def size_variants(sig: Signature) -> list[tuple[str, dict[tuple[Any, int], int]]]:
    """The sizes a coverage check tries: the example sizes, then each dynamic dim at the
    ends of its range (one dim at a time)."""
    out: list[tuple[str, dict[tuple[Any, int], int]]] = [("example sizes", {})]
    for where, x in tensor_inputs(sig):
        for d in x.dynamic:
            for bound in sorted({b for b in (d.min, d.max) if b is not None} - {x.shape[d.dim]}):
                label = f"input {where!r} dim {d.dim} = {bound}"
                out.append((label, {(where, d.dim): bound}))
    return out
