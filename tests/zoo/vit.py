"""A vision transformer: transformers' ViTForImageClassification on a batch of images."""
import torch

import _zoo

transformers = _zoo.transformers_or_skip()


def run():
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=64,
                                 num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=128, num_labels=10)
    model = transformers.ViTForImageClassification(cfg).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(pixel_values=images).logits
        got = _zoo.compile(model)(pixel_values=images).logits
    return [_zoo.compare("logits", got, want)]


EXTRA = _zoo.EXTRA
