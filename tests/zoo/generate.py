"""Hugging Face generate(): ``model.forward = precompile.cached(torch.compile(model.forward))``
(the pattern transformers documents), greedy decoding with a growing DynamicCache: a prefill
entry, then decode steps whose cache length recompiles as automatic-dynamic. Same tokens."""
import torch

import _zoo

transformers = _zoo.transformers_or_skip()


def run():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=64)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 8))
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    want = model.generate(ids, **kwargs)
    model.forward = _zoo.compile(model.forward)
    got = model.generate(ids, **kwargs)
    return [_zoo.compare("tokens", got, want)]


EXTRA = _zoo.EXTRA
