"""The model families of the sweep (bench/sweep.py): each a small config with random weights,
built in code (no hub downloads), with the inputs of one forward and, where the family has a
head for it, of one training step.

A family is a name, a group and a builder. Builders import their library when called, so a
process that runs only some families imports only what those need. Sizes are the smallest
that keep every layer type the family has: 1-2 layers, hidden 32-64, 16 tokens, 32x32 images.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch


@dataclasses.dataclass
class Case:
    """What one family runs: ``model(**inputs)`` under ``no_grad`` in eval mode, then (if
    ``train``) ``loss(model(**train))`` and its backward in train mode."""
    model: torch.nn.Module
    inputs: dict[str, Any]
    train: dict[str, Any] | None = None
    loss: Callable[[Any], torch.Tensor] | None = None


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    group: str
    build: Callable[[], Case]
    library: str = "transformers"


FAMILIES: list[Family] = []

# The shape most decoders take (grouped-query attention: 4 query heads, 2 key/value heads).
DEC = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
           num_key_value_heads=2, vocab_size=256, max_position_embeddings=128)
ENC = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
           vocab_size=256, max_position_embeddings=128, num_labels=3)
SEQ2SEQ = dict(d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
               decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
               vocab_size=256, max_position_embeddings=128)
VIT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
           image_size=32, patch_size=8, num_labels=3)
SPEECH = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
              conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3),
              num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_labels=3,
              vocab_size=32)
BATCH, TOKENS = 2, 16


def _tokens(vocab: int = 256, length: int = TOKENS) -> torch.Tensor:
    return torch.randint(3, vocab, (BATCH, length))


def _image(size: int = 32, channels: int = 3) -> torch.Tensor:
    return torch.randn(BATCH, channels, size, size)


def _labels(n: int = 3) -> torch.Tensor:
    return torch.arange(BATCH) % n


def _quiet(config: Any) -> Any:
    """Every dropout, layer drop and SpecAugment probability of ``config`` (and its
    sub-configs) set to 0, so a training step is deterministic and comparable with eager."""
    for key, value in list(vars(config).items()):
        if hasattr(value, "to_dict") and hasattr(value, "model_type"):
            _quiet(value)
        elif isinstance(value, float) and ("drop" in key or key in (
                "mask_time_prob", "mask_feature_prob", "router_jitter_noise")):
            setattr(config, key, 0.0)
    return config


def _no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Dropout modules a config does not reach (a library's own defaults) set to 0."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
    return model


def _hf(model_type: str, cls: str, **kwargs: Any) -> tuple[Any, torch.nn.Module]:
    import transformers

    transformers.logging.set_verbosity_error()
    config = _quiet(transformers.AutoConfig.for_model(model_type, **kwargs))
    return config, _no_dropout(getattr(transformers, cls)(config))


def _add(name: str, group: str, library: str = "transformers") -> Callable:
    def register(build: Callable[[], Case]) -> Callable[[], Case]:
        FAMILIES.append(Family(name, group, build, library))
        return build
    return register


# ------------------------------------------------------------------ decoders (causal LM)

def _decoder(name: str, model_type: str, cls: str, **kwargs: Any) -> None:
    def build() -> Case:
        config, model = _hf(model_type, cls, **kwargs)
        ids = _tokens(config.vocab_size)
        inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
        return Case(model, inputs, train={**inputs, "labels": ids})
    FAMILIES.append(Family(name, "decoder", build))


for _name, _type, _cls, _extra in [
    ("llama", "llama", "LlamaForCausalLM", {}),
    ("mistral", "mistral", "MistralForCausalLM", {}),
    ("qwen2", "qwen2", "Qwen2ForCausalLM", {}),
    ("qwen3", "qwen3", "Qwen3ForCausalLM", dict(head_dim=16)),
    ("gemma", "gemma", "GemmaForCausalLM", dict(head_dim=16)),
    ("gemma2", "gemma2", "Gemma2ForCausalLM", dict(head_dim=16)),
    ("gemma3", "gemma3_text", "Gemma3ForCausalLM", dict(head_dim=16)),
    ("phi3", "phi3", "Phi3ForCausalLM", dict(pad_token_id=0)),
    ("phi", "phi", "PhiForCausalLM", {}),
    ("mixtral", "mixtral", "MixtralForCausalLM", dict(num_local_experts=4, num_experts_per_tok=2)),
    ("qwen2_moe", "qwen2_moe", "Qwen2MoeForCausalLM",
     dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
          shared_expert_intermediate_size=64)),
    ("qwen3_moe", "qwen3_moe", "Qwen3MoeForCausalLM",
     dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, head_dim=16)),
    ("deepseek_v3", "deepseek_v3", "DeepseekV3ForCausalLM",
     dict(n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
          kv_lora_rank=16, q_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=8,
          v_head_dim=16, first_k_dense_replace=1, n_group=1, topk_group=1,
          num_key_value_heads=4)),  # multi-head latent attention: as many k/v heads as q
    ("olmo", "olmo", "OlmoForCausalLM", {}),
    ("olmo2", "olmo2", "Olmo2ForCausalLM", {}),
    ("starcoder2", "starcoder2", "Starcoder2ForCausalLM", {}),
    ("granite", "granite", "GraniteForCausalLM", {}),
    ("cohere", "cohere", "CohereForCausalLM", {}),
    ("stablelm", "stablelm", "StableLmForCausalLM", {}),
    ("smollm3", "smollm3", "SmolLM3ForCausalLM", dict(pad_token_id=0)),
    ("falcon", "falcon", "FalconForCausalLM",
     dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=256)),
    ("gpt2", "gpt2", "GPT2LMHeadModel",
     dict(n_embd=64, n_layer=2, n_head=4, vocab_size=256, n_positions=128)),
    ("gpt_neox", "gpt_neox", "GPTNeoXForCausalLM",
     {k: v for k, v in DEC.items() if k != "num_key_value_heads"}),
    ("gptj", "gptj", "GPTJForCausalLM",
     dict(n_embd=64, n_layer=2, n_head=4, vocab_size=256, n_positions=128, rotary_dim=8)),
    ("opt", "opt", "OPTForCausalLM",
     dict(hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
          word_embed_proj_dim=64, vocab_size=256, max_position_embeddings=128)),
    ("bloom", "bloom", "BloomForCausalLM", dict(hidden_size=64, n_layer=2, n_head=4,
                                                vocab_size=256)),
    ("mamba", "mamba", "MambaForCausalLM",
     dict(hidden_size=64, num_hidden_layers=2, vocab_size=256, state_size=8)),
]:
    _decoder(_name, _type, _cls, **({**DEC, **_extra} if _type not in (
        "falcon", "gpt2", "gpt_neox", "gptj", "opt", "bloom", "mamba") else _extra))


# ------------------------------------------------------------------ encoders (classification)

def _encoder(name: str, model_type: str, cls: str, **kwargs: Any) -> None:
    def build() -> Case:
        config, model = _hf(model_type, cls, **{**ENC, **kwargs})
        ids = _tokens(config.vocab_size)
        inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids))
        return Case(model, inputs, train={**inputs, "labels": _labels()})
    FAMILIES.append(Family(name, "encoder", build))


_encoder("bert", "bert", "BertForSequenceClassification")
_encoder("roberta", "roberta", "RobertaForSequenceClassification")
_encoder("xlm_roberta", "xlm-roberta", "XLMRobertaForSequenceClassification")
_encoder("electra", "electra", "ElectraForSequenceClassification", embedding_size=64)
_encoder("albert", "albert", "AlbertForSequenceClassification", embedding_size=32)
_encoder("deberta_v2", "deberta-v2", "DebertaV2ForSequenceClassification")
_encoder("modernbert", "modernbert", "ModernBertForSequenceClassification",
         global_attn_every_n_layers=2, local_attention=8, pad_token_id=0)
_encoder("distilbert", "distilbert", "DistilBertForSequenceClassification",
         dim=64, n_layers=2, n_heads=4, hidden_dim=128)


# ------------------------------------------------------------------ encoder-decoders

def _seq2seq(name: str, model_type: str, cls: str, **kwargs: Any) -> None:
    def build() -> Case:
        config, model = _hf(model_type, cls, **kwargs)
        ids, dec = _tokens(config.vocab_size), _tokens(config.vocab_size, 8)
        inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                      decoder_input_ids=dec, use_cache=False)
        return Case(model, inputs, train={**inputs, "labels": dec})
    FAMILIES.append(Family(name, "encoder-decoder", build))


_seq2seq("t5", "t5", "T5ForConditionalGeneration", d_model=64, d_ff=128, d_kv=16, num_layers=2,
         num_heads=4, vocab_size=256)
_seq2seq("bart", "bart", "BartForConditionalGeneration", **SEQ2SEQ)
_seq2seq("mbart", "mbart", "MBartForConditionalGeneration", **SEQ2SEQ)
_seq2seq("pegasus", "pegasus", "PegasusForConditionalGeneration", **SEQ2SEQ)
_seq2seq("marian", "marian", "MarianMTModel", **SEQ2SEQ, decoder_vocab_size=256, pad_token_id=0,
         decoder_start_token_id=0)


@_add("whisper", "audio")
def _whisper() -> Case:
    config, model = _hf("whisper", "WhisperForConditionalGeneration",
                        **{k: v for k, v in SEQ2SEQ.items() if k != "max_position_embeddings"},
                        num_mel_bins=16, max_source_positions=32, max_target_positions=64,
                        decoder_start_token_id=1, pad_token_id=0, bos_token_id=1,
                        eos_token_id=2, suppress_tokens=[], begin_suppress_tokens=[])
    dec = _tokens(config.vocab_size, 8)
    inputs = dict(input_features=torch.randn(BATCH, 16, 64), decoder_input_ids=dec,
                  use_cache=False)
    return Case(model, inputs, train={**inputs, "labels": dec})


# ------------------------------------------------------------------ vision (classification)

def _vision(name: str, model_type: str, cls: str, **kwargs: Any) -> None:
    def build() -> Case:
        _, model = _hf(model_type, cls, **kwargs)
        inputs = dict(pixel_values=_image())
        return Case(model, inputs, train={**inputs, "labels": _labels()})
    FAMILIES.append(Family(name, "vision", build))


_vision("vit", "vit", "ViTForImageClassification", **VIT)
_vision("deit", "deit", "DeiTForImageClassification", **VIT)
_vision("dinov2", "dinov2", "Dinov2ForImageClassification",
        **{k: v for k, v in VIT.items() if k != "intermediate_size"}, mlp_ratio=2)
_vision("beit", "beit", "BeitForImageClassification", **VIT)
_vision("swin", "swin", "SwinForImageClassification", image_size=32, patch_size=4, embed_dim=16,
        depths=[1, 1], num_heads=[2, 2], window_size=4, num_labels=3)
_vision("convnext", "convnext", "ConvNextForImageClassification", hidden_sizes=[16, 32],
        depths=[1, 1], num_stages=2, num_labels=3)
_vision("resnet", "resnet", "ResNetForImageClassification", embedding_size=16,
        hidden_sizes=[16, 32], depths=[1, 1], num_labels=3)


# ------------------------------------------------------------------ audio (classification)

def _speech(name: str, model_type: str, cls: str) -> None:
    def build() -> Case:
        _, model = _hf(model_type, cls, **SPEECH)
        inputs = dict(input_values=torch.randn(BATCH, 1600))
        return Case(model, inputs, train={**inputs, "labels": _labels()})
    FAMILIES.append(Family(name, "audio", build))


_speech("wav2vec2", "wav2vec2", "Wav2Vec2ForSequenceClassification")
_speech("hubert", "hubert", "HubertForSequenceClassification")
_speech("wavlm", "wavlm", "WavLMForSequenceClassification")


# ------------------------------------------------------------------ multimodal

def _dual(name: str, model_type: str, cls: str) -> None:
    def build() -> Case:
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, vocab_size=256, max_position_embeddings=32)
        vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, image_size=32, patch_size=8)
        extra = {"projection_dim": 32} if model_type == "clip" else {}
        config, model = _hf(model_type, cls, text_config=text, vision_config=vision, **extra)
        inputs = dict(input_ids=_tokens(256, 8), pixel_values=_image())
        return Case(model, inputs, train={**inputs, "return_loss": True})
    FAMILIES.append(Family(name, "multimodal", build))


_dual("clip", "clip", "CLIPModel")
_dual("siglip", "siglip", "SiglipModel")
