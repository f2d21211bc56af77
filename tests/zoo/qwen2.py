"""A second decoder family: transformers' Qwen2ForCausalLM (grouped-query attention,
sliding-window configuration), with an attention mask."""
import torch

import _zoo

transformers = _zoo.transformers_or_skip()


def run():
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                                   max_position_embeddings=128)
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        got = _zoo.compile(model)(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return [_zoo.compare("logits", got, want)]


EXTRA = _zoo.EXTRA
