"""The sweep's families outside transformers: diffusers (a UNet, DiT and SD3 transformers,
the VAE) and timm (which needs torchvision: the sweep runs these rows with the interpreter
``--timm-python`` names). Small configs, random weights, built in code."""
from __future__ import annotations

from typing import Any

import torch

from sweep_families import BATCH, FAMILIES, Case, Family, _image, _labels


def _mean_square(out: Any) -> torch.Tensor:
    """A loss for models without a training head: the mean square of the first output."""
    first = out.sample if hasattr(out, "sample") else out[0] if isinstance(out, tuple) else out
    return first.float().pow(2).mean()


def _unet() -> Case:
    from diffusers import UNet2DConditionModel

    model = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=8)
    inputs = dict(sample=torch.randn(BATCH, 4, 8, 8), timestep=torch.tensor([10, 500]),
                  encoder_hidden_states=torch.randn(BATCH, 4, 32))
    return Case(model, inputs, train=inputs, loss=_mean_square)


def _dit() -> Case:
    from diffusers import DiTTransformer2DModel

    model = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4,
                                  out_channels=4, num_layers=2, sample_size=8, patch_size=2,
                                  num_embeds_ada_norm=1000)
    inputs = dict(hidden_states=torch.randn(BATCH, 4, 8, 8), timestep=torch.tensor([10, 500]),
                  class_labels=torch.tensor([1, 7]))
    return Case(model, inputs, train=inputs, loss=_mean_square)


def _sd3() -> Case:
    from diffusers import SD3Transformer2DModel

    model = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=2,
                                  attention_head_dim=16, num_attention_heads=2,
                                  joint_attention_dim=32, caption_projection_dim=32,
                                  pooled_projection_dim=16, out_channels=4, pos_embed_max_size=16)
    inputs = dict(hidden_states=torch.randn(BATCH, 4, 8, 8),
                  encoder_hidden_states=torch.randn(BATCH, 6, 32),
                  pooled_projections=torch.randn(BATCH, 16), timestep=torch.tensor([10, 500]))
    return Case(model, inputs, train=inputs, loss=_mean_square)


def _vae() -> Case:
    from diffusers import AutoencoderKL

    model = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                          block_out_channels=(16, 32), norm_num_groups=8,
                          down_block_types=("DownEncoderBlock2D",) * 2,
                          up_block_types=("UpDecoderBlock2D",) * 2)
    inputs = dict(sample=_image(16), sample_posterior=False)
    return Case(model, inputs, train=inputs, loss=_mean_square)


def _timm(arch: str, **kwargs: Any) -> Any:
    def build() -> Case:
        import timm

        model = timm.create_model(arch, pretrained=False, num_classes=3, **kwargs)
        inputs = dict(x=_image())
        labels = _labels()
        return Case(model, inputs, train=inputs,
                    loss=lambda out: torch.nn.functional.cross_entropy(out, labels))
    return build


FAMILIES.extend([
    Family("diffusers_unet", "diffusion", _unet, "diffusers"),
    Family("diffusers_dit", "diffusion", _dit, "diffusers"),
    Family("diffusers_sd3", "diffusion", _sd3, "diffusers"),
    Family("diffusers_vae", "diffusion", _vae, "diffusers"),
    Family("timm_resnet", "timm", _timm("resnet18"), "timm"),
    Family("timm_vit", "timm", _timm("vit_tiny_patch16_224", img_size=32, patch_size=8,
                                     depth=2), "timm"),
    Family("timm_convnext", "timm", _timm("convnext_atto"), "timm"),
    Family("timm_efficientnet", "timm", _timm("efficientnet_b0"), "timm"),
])
