"""transformers' MistralForCausalLM (sliding-window attention; on 5.25 its attention holds
kernels' ``Func`` module, a class made inside a function)."""
import _zoo

transformers = _zoo.transformers_or_skip()


def run():
    model = _zoo.tiny_decoder(transformers.MistralConfig, transformers.MistralForCausalLM)
    return [_zoo.causal_lm_logits(model, 2, 12, padded=2)]


EXTRA = _zoo.EXTRA
