"""transformers' MixtralForCausalLM: a mixture of experts (router, top-2 experts per token)."""
import _zoo

transformers = _zoo.transformers_or_skip()


def run():
    _zoo.torch.manual_seed(0)
    cfg = transformers.MixtralConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                     num_attention_heads=4, num_key_value_heads=2,
                                     vocab_size=256, max_position_embeddings=128,
                                     num_local_experts=4, num_experts_per_tok=2)
    model = transformers.MixtralForCausalLM(cfg).eval()
    return [_zoo.causal_lm_logits(model, 2, 12)]


EXTRA = _zoo.EXTRA
