"""The 3DTrajMaster object injector, as an extension of diffusers' CogVideoX block.

Every second block of the release (index % 2 == 0) carries, under these exact names:
  attn_injector       a second attention shaped like attn1 (to_q/k/v, to_out.0, norm_q/k)
  pose_fuse_layer     Linear 12 -> width, one pose 12-vector per entity and latent frame
  attn_null_feature   the token that fills the slots of absent entities
and, between attn1's residual update and norm2, adds a gated attention over the visual tokens,
the projected empty-prompt tokens and 3 x 50 entity tokens per latent frame (model reference,
section 4). The release hard-codes its sizes (19,726 tokens, 1,350 per frame, 226 text tokens);
here they are read from the tensors, so tiny test models take exactly this code path.

The release's data flow has a quirk the weights were trained with: queries and keys are
reordered to [text, visual, entity] while the values stay in the interleaved order
[text, (visual_f, entity_f) for each frame f], so key slot r pairs with value slot r of the
interleaved order. InjectorAttnProcessor computes the same thing without the reorder copies:
keys are built directly in the reordered order, values in the interleaved one, and only the
visual queries are computed because only their outputs are used. reference_injector.py has the
literal form; the tests hold the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention import Attention
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from torch import nn

MAX_ENTITIES = 3  # entity slots per latent frame; absent entities get attn_null_feature
ENTITY_TOKENS = 50  # leading tokens of each entity prompt the injector sees
POSE_DIM = 12  # rotation column by column, then translation (model reference, section 2)
INJECTOR_EVERY = 2  # blocks with index % 2 == 0 carry an injector
INJECTOR_KEY = "injector"  # the attention_kwargs entry that carries InjectorInputs to the blocks


@dataclass
class InjectorInputs:
    """One forward's injector inputs, already at the transformer's width.

    Batch dimensions are 1 or the latent batch: both classifier-free-guidance halves get the
    same poses and entity tokens (only the global prompt differs).
    """

    text: torch.Tensor  # (b, T, D): the empty prompt through patch_embed.text_proj
    entities: torch.Tensor  # (b, N, K, D): entity prompts projected, padding zeroed, K <= 50
    poses: torch.Tensor  # (b, N, F, 12): one pose per entity and latent frame

    @property
    def num_frames(self) -> int:
        return self.poses.shape[-2]


def entity_tokens(pose_fuse_layer: nn.Linear, null_feature: torch.Tensor, inputs: InjectorInputs) -> torch.Tensor:
    """The injector's entity tokens, (b, F * 3 * K, D): frame-major, then entity, then token.

    Token (n, f, k) is pose_fuse_layer(pose[n, f]) + entity[n, k]; the slots of absent entities
    are attn_null_feature throughout.
    """
    dtype = pose_fuse_layer.weight.dtype
    pose = pose_fuse_layer(inputs.poses.to(dtype))  # (b, N, F, D)
    tokens = pose[:, :, None, :, :] + inputs.entities.to(dtype)[:, :, :, None, :]  # (b, N, K, F, D)
    b, n, k, f, d = tokens.shape
    if n > MAX_ENTITIES:
        raise ValueError(f"the injector takes at most {MAX_ENTITIES} entities, got {n}")
    null = null_feature.to(dtype).expand(b, MAX_ENTITIES - n, k, f, d)
    tokens = torch.cat([tokens, null], dim=1)  # (b, 3, K, F, D)
    return tokens.permute(0, 3, 1, 2, 4).reshape(b, f * MAX_ENTITIES * k, d)


class InjectorAttnProcessor:
    """attn_injector's attention in the cheap equivalent form (see the module docstring).

    Returns the attention output (after to_out) for the visual tokens only, in their order.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        entity_hidden_states: torch.Tensor | None = None,
        num_frames: int = 1,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if entity_hidden_states is None:
            raise ValueError("attn_injector needs entity_hidden_states")
        batch, visual, _ = hidden_states.shape
        frames = num_frames
        if visual % frames or entity_hidden_states.shape[1] % frames:
            raise ValueError(f"{visual} visual and {entity_hidden_states.shape[1]} entity tokens for {frames} frames")

        def heads(x: torch.Tensor, linear: nn.Module) -> torch.Tensor:
            return linear(x).unflatten(-1, (attn.heads, -1)).transpose(1, 2)  # (b, H, n, d)

        def keys(x: torch.Tensor) -> torch.Tensor:
            k = heads(x, attn.to_k)
            return attn.norm_k(k) if attn.norm_k is not None else k

        query = heads(hidden_states, attn.to_q)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        key_visual = keys(hidden_states)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb)
            key_visual = apply_rotary_emb(key_visual, image_rotary_emb)

        def full_batch(x: torch.Tensor) -> torch.Tensor:
            return x.expand(batch, *x.shape[1:])

        # Keys in the reordered order: text, all visual tokens, all entity tokens.
        key = torch.cat(
            [full_batch(keys(encoder_hidden_states)), key_visual, full_batch(keys(entity_hidden_states))], dim=2
        )
        # Values in the interleaved order: text, then per frame its visual and its entity tokens.
        value_visual = heads(hidden_states, attn.to_v).unflatten(2, (frames, -1))
        value_entity = full_batch(heads(entity_hidden_states, attn.to_v)).unflatten(2, (frames, -1))
        value = torch.cat(
            [
                full_batch(heads(encoder_hidden_states, attn.to_v)),
                torch.cat([value_visual, value_entity], dim=3).flatten(2, 3),
            ],
            dim=2,
        )
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        out = out.transpose(1, 2).flatten(2)
        return attn.to_out[1](attn.to_out[0](out))


class TrajMasterBlock(CogVideoXBlock):
    """diffusers' CogVideoX block, plus the injector when built with `injector=True`.

    Without InjectorInputs in attention_kwargs (or without an injector) it computes exactly
    what the stock block computes.
    """

    def __init__(self, *args: Any, injector: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.has_injector = injector
        if not injector:
            return
        reference = self.attn1
        dim = reference.query_dim
        self.attn_injector = Attention(
            query_dim=dim,
            dim_head=reference.inner_dim // reference.heads,
            heads=reference.heads,
            qk_norm="layer_norm" if reference.norm_q is not None else None,
            eps=1e-6,
            bias=reference.to_q.bias is not None,
            out_bias=reference.to_out[0].bias is not None,
            processor=InjectorAttnProcessor(),
        )
        self.pose_fuse_layer = nn.Linear(POSE_DIM, dim)
        self.attn_null_feature = nn.Parameter(torch.zeros(dim))

    def injector_residual(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        inputs: InjectorInputs,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """gate * attn_injector(...) for the visual tokens (steps 1-5 of the model reference)."""
        norm_visual, norm_text, gate, _ = self.norm1(hidden_states, inputs.text, temb)
        out = self.attn_injector(
            norm_visual,
            encoder_hidden_states=norm_text,
            entity_hidden_states=entity_tokens(self.pose_fuse_layer, self.attn_null_feature, inputs),
            num_frames=inputs.num_frames,
            image_rotary_emb=image_rotary_emb,
        )
        return gate * out

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # The stock block's forward with the injector between attn1 and norm2; it has to be
        # restated because the injector sits in the middle of it.
        attention_kwargs = dict(attention_kwargs or {})
        injector_inputs = attention_kwargs.pop(INJECTOR_KEY, None)
        text_seq_length = encoder_hidden_states.size(1)

        norm_hidden_states, norm_encoder_hidden_states, gate_msa, enc_gate_msa = self.norm1(
            hidden_states, encoder_hidden_states, temb
        )
        attn_hidden_states, attn_encoder_hidden_states = self.attn1(
            hidden_states=norm_hidden_states,
            encoder_hidden_states=norm_encoder_hidden_states,
            image_rotary_emb=image_rotary_emb,
            **attention_kwargs,
        )
        hidden_states = hidden_states + gate_msa * attn_hidden_states
        encoder_hidden_states = encoder_hidden_states + enc_gate_msa * attn_encoder_hidden_states

        if injector_inputs is not None and self.has_injector:
            hidden_states = hidden_states + self.injector_residual(
                hidden_states, temb, injector_inputs, image_rotary_emb
            )

        norm_hidden_states, norm_encoder_hidden_states, gate_ff, enc_gate_ff = self.norm2(
            hidden_states, encoder_hidden_states, temb
        )
        norm_hidden_states = torch.cat([norm_encoder_hidden_states, norm_hidden_states], dim=1)
        ff_output = self.ff(norm_hidden_states)
        hidden_states = hidden_states + gate_ff * ff_output[:, text_seq_length:]
        encoder_hidden_states = encoder_hidden_states + enc_gate_ff * ff_output[:, :text_seq_length]
        return hidden_states, encoder_hidden_states
