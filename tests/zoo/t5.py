"""An encoder-decoder: transformers' T5ForConditionalGeneration, one teacher-forced forward."""
import torch

import _zoo

transformers = _zoo.transformers_or_skip()


def run():
    torch.manual_seed(0)
    cfg = transformers.T5Config(num_layers=2, num_decoder_layers=2, d_model=64, d_ff=128,
                                num_heads=4, d_kv=16, vocab_size=256)
    model = transformers.T5ForConditionalGeneration(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    dec = torch.randint(0, cfg.vocab_size, (2, 6))
    with torch.no_grad():
        want = model(input_ids=ids, decoder_input_ids=dec, use_cache=False).logits
        got = _zoo.compile(model)(input_ids=ids, decoder_input_ids=dec, use_cache=False).logits
    return [_zoo.compare("logits", got, want)]


EXTRA = _zoo.EXTRA
