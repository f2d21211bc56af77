"""A Llama-family decoder (transformers' LlamaForCausalLM) through precompile.cached(torch.compile(model)).
Its forward goes through transformers' decorators (can_return_tuple, deprecate_kwarg...)."""
import _zoo

transformers = _zoo.transformers_or_skip()


def run():
    model = _zoo.tiny_decoder(transformers.LlamaConfig, transformers.LlamaForCausalLM)
    return [_zoo.causal_lm_logits(model, 2, 16)]


EXTRA = _zoo.EXTRA
