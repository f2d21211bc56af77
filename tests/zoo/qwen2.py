"""A second decoder family: transformers' Qwen2ForCausalLM (grouped-query attention), on a
padded batch (attention mask)."""
import _zoo

transformers = _zoo.transformers_or_skip()


def run():
    model = _zoo.tiny_decoder(transformers.Qwen2Config, transformers.Qwen2ForCausalLM)
    return [_zoo.causal_lm_logits(model, 2, 12, padded=3)]


EXTRA = _zoo.EXTRA
