"""transformers' MambaForCausalLM (a selective state-space decoder, no attention): on 5.25 its
mixer holds kernels' ``Func`` module, a class made inside a function, and its bytecode reads
a constant-marked global (``is_torch_greater_or_equal``)."""
import torch

import _zoo

transformers = _zoo.transformers_or_skip()


def run():
    torch.manual_seed(0)
    cfg = transformers.MambaConfig(hidden_size=64, num_hidden_layers=2, vocab_size=256,
                                   state_size=8)
    model = transformers.MambaForCausalLM(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    with torch.no_grad():
        want = model(input_ids=ids, use_cache=False).logits
        got = _zoo.compile(model)(input_ids=ids, use_cache=False).logits
    return [_zoo.compare("logits", got, want)]


EXTRA = _zoo.EXTRA
