"""diffusers' CogVideoX transformer with the 3DTrajMaster injector blocks.

TrajMasterTransformer3DModel is CogVideoXTransformer3DModel with its blocks replaced by
TrajMasterBlock (the stock block, plus the injector on every second block). It keeps the
stock config (so the release's injector folder and the stock folder both load with
from_pretrained; config keys it does not know are ignored) and the class declarations that
offloading, layerwise casting and regional compilation rely on.

A job's trajectory reaches the blocks through attention_kwargs, diffusers' channel for per-call
extras, so the stock pipeline can drive this model unchanged:
    attention_kwargs={"trajectory": TrajectoryCondition(...)}
With no trajectory, or one switched off (`active = False`, the annealed sampler does this after
its injector steps), the forward is exactly the stock one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXTransformer3DModel
from torch import nn

from .injector import ENTITY_TOKENS, INJECTOR_EVERY, INJECTOR_KEY, InjectorInputs, TrajMasterBlock

TRAJECTORY_KEY = "trajectory"


@dataclass
class TrajectoryCondition:
    """A job's injector conditioning as the text encoder and the pose math give it.

    poses (1, N, F, 12); entity_embeds (1, N, T, C) and entity_mask (1, N, T): the T5 encodings
    of the entity prompts and their tokenizer masks; empty_embeds (1, T, C): T5 of "".
    """

    poses: torch.Tensor
    entity_embeds: torch.Tensor
    entity_mask: torch.Tensor
    empty_embeds: torch.Tensor
    active: bool = True


class TrajMasterTransformer3DModel(CogVideoXTransformer3DModel):
    # Read by diffusers' offloading, device maps and regional compilation.
    _no_split_modules: ClassVar[list[str]] = ["TrajMasterBlock", "CogVideoXBlock", "CogVideoXPatchEmbed"]
    _repeated_blocks: ClassVar[list[str]] = ["TrajMasterBlock"]

    # Same signature and config as the stock class (functools.wraps makes diffusers' config
    # machinery see the stock __init__), then the blocks are rebuilt as TrajMasterBlocks.
    @functools.wraps(CogVideoXTransformer3DModel.__init__)
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        config = self.config
        self.transformer_blocks = nn.ModuleList(
            [
                TrajMasterBlock(
                    dim=config.num_attention_heads * config.attention_head_dim,
                    num_attention_heads=config.num_attention_heads,
                    attention_head_dim=config.attention_head_dim,
                    time_embed_dim=config.time_embed_dim,
                    dropout=config.dropout,
                    activation_fn=config.activation_fn,
                    attention_bias=config.attention_bias,
                    norm_elementwise_affine=config.norm_elementwise_affine,
                    norm_eps=config.norm_eps,
                    injector=index % INJECTOR_EVERY == 0,
                )
                for index in range(config.num_layers)
            ]
        )

    @property
    def injector_blocks(self) -> list[int]:
        return [i for i, block in enumerate(self.transformer_blocks) if block.has_injector]

    def injector_inputs(self, condition: TrajectoryCondition) -> InjectorInputs:
        """Project the T5 encodings to the transformer's width (model reference, section 3)."""
        text_proj = self.patch_embed.text_proj
        dtype = text_proj.weight.dtype
        entities = text_proj(condition.entity_embeds.to(dtype))
        entities = entities.masked_fill(condition.entity_mask[..., None] < 1, 0.0)  # padding -> exactly 0
        return InjectorInputs(
            text=text_proj(condition.empty_embeds.to(dtype)),
            entities=entities[:, :, :ENTITY_TOKENS],
            poses=condition.poses,
        )

    def forward(self, *args: Any, attention_kwargs: dict[str, Any] | None = None, **kwargs: Any):
        attention_kwargs = dict(attention_kwargs or {})
        condition = attention_kwargs.pop(TRAJECTORY_KEY, None)
        if condition is not None and condition.active:
            # Inside forward, so offloading hooks have put patch_embed on the device.
            attention_kwargs[INJECTOR_KEY] = self.injector_inputs(condition)
        return super().forward(*args, attention_kwargs=attention_kwargs or None, **kwargs)


def count_parameters(model: nn.Module, injector_only: bool = False) -> int:
    names = ("attn_injector", "pose_fuse_layer", "attn_null_feature")
    return sum(p.numel() for n, p in model.named_parameters() if not injector_only or any(s in n for s in names))


def release_config(**overrides: Any) -> dict[str, Any]:
    """The transformer config of CogVideoX-5B (for the benchmark's random weights)."""
    config = {
        "num_attention_heads": 48,
        "attention_head_dim": 64,
        "in_channels": 16,
        "out_channels": 16,
        "time_embed_dim": 512,
        "text_embed_dim": 4096,
        "num_layers": 42,
        "sample_width": 90,
        "sample_height": 60,
        "sample_frames": 49,
        "patch_size": 2,
        "temporal_compression_ratio": 4,
        "max_text_seq_length": 226,
        "use_rotary_positional_embeddings": True,
        "use_learned_positional_embeddings": False,
    }
    config.update(overrides)
    return config


def empty_like_release(dtype: torch.dtype = torch.bfloat16, **overrides: Any) -> TrajMasterTransformer3DModel:
    """The release's architecture with uninitialised weights on the meta device."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = TrajMasterTransformer3DModel(**release_config(**overrides))
    return model.to(dtype) if dtype else model
