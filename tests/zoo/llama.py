"""A Llama-family decoder (transformers' LlamaForCausalLM) through precompile.cached(torch.compile(model)).
Its forward goes through transformers' decorators (can_return_tuple, deprecate_kwarg...)."""
import torch

import _zoo

transformers = _zoo.transformers_or_skip()


def run():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                                   max_position_embeddings=128)
    model = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 16))
    with torch.no_grad():
        want = model(input_ids=ids, use_cache=False).logits
        got = _zoo.compile(model)(input_ids=ids, use_cache=False).logits
    return [_zoo.compare("logits", got, want)]


EXTRA = _zoo.EXTRA
