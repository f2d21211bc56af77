"""What every zoo scenario shares: how it compiles, and how it reports its difference to eager.

A scenario is a user program (``run()`` returns ``[(name, compiled, eager)]``, see
tests/_driver.py). ``ZOO_MODE`` picks how it compiles, so the same program measures every
option (bench/zoo.py): ``precompile`` (default), ``torch`` (plain ``torch.compile``),
``pt_precompile`` (``torch.compile`` with PyTorch's own ``caching_precompile``) and
``eager`` (nothing compiled). ``ZOO_BACKEND`` is the backend (default ``aot_eager``: the
suite tests what precompile records and reinstalls, which is the same for every backend that
goes through AOTAutograd; bench/zoo.py runs ``inductor``).
"""
from __future__ import annotations

import os
from typing import Any

import torch

MODE = os.environ.get("ZOO_MODE", "precompile")
BACKEND = os.environ.get("ZOO_BACKEND", "aot_eager")
EXTRA: dict[str, Any] = {"max_diff": 0.0}

if MODE == "pt_precompile":
    import atexit

    torch._dynamo.config.caching_precompile = True

    def _save_pt_precompile() -> None:  # torch writes its own DynamoCache only when asked
        from torch._dynamo.precompile_context import PrecompileContext

        try:
            PrecompileContext.save_to_dynamo_cache()
        except Exception as e:  # noqa: BLE001 - reported, not raised: it is torch's feature
            print(f"pt_precompile save failed: {type(e).__name__}: {e}")

    atexit.register(_save_pt_precompile)


def compile(obj: Any, **kwargs: Any) -> Any:
    """``obj`` compiled the way ``ZOO_MODE`` says."""
    if MODE == "eager":
        return obj
    compiled = torch.compile(obj, backend=BACKEND, **kwargs)
    if MODE == "precompile":
        import precompile

        return precompile.cached(compiled)
    return compiled


def compare(name: str, got: Any, want: Any) -> tuple[str, Any, Any]:
    """One result row; the largest absolute difference to eager goes into the report."""
    for g, w in zip(_tensors(got), _tensors(want)):
        if g.shape == w.shape and g.is_floating_point():
            diff = (g.detach().float() - w.detach().float()).abs().max().item() if g.numel() else 0.0
            EXTRA["max_diff"] = max(EXTRA["max_diff"], diff)
    return name, got, want


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def causal_lm_logits(model: Any, batch: int, length: int, padded: int = 0) -> tuple[str, Any, Any]:
    """A decoder's logits for random tokens, compiled against eager (the first ``padded``
    tokens of the last row masked out, as a padded batch has them)."""
    ids = torch.randint(0, model.config.vocab_size, (batch, length))
    mask = torch.ones_like(ids)
    mask[-1, :padded] = 0
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        got = compile(model)(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return compare("logits", got, want)


def tiny_decoder(config_cls: Any, model_cls: Any) -> Any:
    """A two-layer decoder of a transformers family with grouped-query attention, in eval
    mode: small enough to compile in seconds, with every layer type the family has."""
    torch.manual_seed(0)
    cfg = config_cls(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                     num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                     max_position_embeddings=128)
    return model_cls(cfg).eval()


def current_stance() -> str:
    """The stance the driver set (``fail_on_recompile`` in a warm run), for child processes."""
    return getattr(getattr(torch._dynamo.eval_frame, "_stance", None), "stance", "default")


def transformers_or_skip() -> Any:
    """transformers, or a clean skip marker for the driver's caller."""
    try:
        import transformers
    except ImportError:  # the test extra installs it; bench runs may not
        print("SKIP transformers is not installed")
        raise SystemExit(0) from None
    transformers.logging.set_verbosity_error()
    return transformers
