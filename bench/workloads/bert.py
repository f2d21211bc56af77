"""Another model users actually run: Hugging Face transformers' BERT encoder (4 layers,
d=256, 4 heads), built offline from a config with random weights; its ``forward`` is wrapped
by transformers' decorators, like most models in that library. Optional: skipped when
``transformers`` is not installed."""
import torch

from .base import Built, transformers_or_skip

DESCRIPTION = ("transformers BertModel, 4 layers, d=256, 4 heads, vocab 2048, random weights; "
               "batch 4 x 64 tokens (optional: needs transformers)")


def build() -> Built:
    transformers = transformers_or_skip()
    config = transformers.BertConfig(num_hidden_layers=4, hidden_size=256,
                                     num_attention_heads=4, intermediate_size=1024,
                                     vocab_size=2048, max_position_embeddings=128,
                                     attn_implementation="eager")
    model = transformers.BertModel(config).eval()
    ids = torch.randint(0, config.vocab_size, (4, 64))

    def run(fn, inputs):
        with torch.no_grad():
            return fn(input_ids=inputs[0]).last_hidden_state

    return Built(model, (ids,), run=run)
