"""A model users actually run: Hugging Face transformers' GPT-2 (2 layers, d=128, 4 heads),
built offline from a config with random weights (no hub download). Optional: skipped when
``transformers`` is not installed (``pip install transformers`` or ``pip install -e
.[bench]``)."""
import torch

from .base import Built, transformers_or_skip

DESCRIPTION = ("transformers GPT2LMHeadModel, 2 layers, d=128, 4 heads, vocab 1024, "
               "random weights; batch 2 x 32 tokens (optional: needs transformers)")


def build() -> Built:
    transformers = transformers_or_skip()
    config = transformers.GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=1024,
                                      n_positions=128, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, config.vocab_size, (2, 32))

    def run(fn, inputs):
        with torch.no_grad():
            return fn(input_ids=inputs[0], use_cache=False).logits

    return Built(model, (ids,), run=run)
