"""A second decoder family: transformers' Qwen2ForCausalLM (grouped-query attention), on a
padded batch (attention mask)."""
import torch

import _zoo

transformers = _zoo.transformers_or_skip()


def run():
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                                   max_position_embeddings=128)
    return [_zoo.causal_lm_logits(transformers.Qwen2ForCausalLM(cfg).eval(), 2, 12, padded=3)]


EXTRA = _zoo.EXTRA
