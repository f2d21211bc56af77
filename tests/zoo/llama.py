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
    return [_zoo.causal_lm_logits(transformers.LlamaForCausalLM(cfg).eval(), 2, 16)]


EXTRA = _zoo.EXTRA
