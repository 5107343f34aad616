"""The injector written out literally, step by step, as the model reference (section 4) states
it and the release computes it: build the interleaved sequence, project every token, reorder Q
and K (not V), apply RoPE to the visual part, attend with all queries, keep the visual rows.

Not used to generate: the tests hold TrajMasterBlock's efficient form equal to this, and the
benchmark times the two against each other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import apply_rotary_emb

from .injector import MAX_ENTITIES, InjectorInputs, TrajMasterBlock


def literal_injector_residual(
    block: TrajMasterBlock,
    hidden_states: torch.Tensor,
    temb: torch.Tensor,
    inputs: InjectorInputs,
    image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """What the injector adds to the visual hidden states, computed the release's way."""
    attn = block.attn_injector
    dtype = block.pose_fuse_layer.weight.dtype
    frames = inputs.num_frames
    batch, visual, width = hidden_states.shape
    per_frame = visual // frames

    # 1. The block's own norm1 on (visual tokens, projected empty-prompt tokens, time embedding).
    norm_visual, norm_text, gate, _ = block.norm1(hidden_states, inputs.text, temb)
    norm_text = norm_text.expand(batch, -1, -1)
    text_len = norm_text.shape[1]

    # 2. Entity tokens per (entity slot n, frame f, token k); absent entities are the null feature.
    poses, entities = inputs.poses.to(dtype), inputs.entities.to(dtype)
    present, tokens = entities.shape[1], entities.shape[2]
    per_frame_entity = []
    for f in range(frames):
        slots = []
        for n in range(MAX_ENTITIES):
            if n < present:
                pose = block.pose_fuse_layer(poses[:, n, f])  # (b, D)
                slots.append(pose[:, None, :] + entities[:, n])  # (b, K, D)
            else:
                slots.append(block.attn_null_feature.to(dtype).expand(poses.shape[0], tokens, width))
        per_frame_entity.append(torch.cat(slots, dim=1).expand(batch, -1, -1))  # entity-major, then token

    # 3. The sequence: the text tokens, then per frame its visual tokens and its entity tokens.
    pieces = [norm_text]
    visual_positions, entity_positions = [], []
    position = text_len
    for f in range(frames):
        pieces.append(norm_visual[:, f * per_frame : (f + 1) * per_frame])
        visual_positions.extend(range(position, position + per_frame))
        position += per_frame
        pieces.append(per_frame_entity[f])
        entity_positions.extend(range(position, position + per_frame_entity[f].shape[1]))
        position += per_frame_entity[f].shape[1]
    sequence = torch.cat(pieces, dim=1)

    # 4. Project, then reorder Q and K to [text, visual, entity]; V stays in sequence order.
    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (attn.heads, -1)).transpose(1, 2)

    query, key, value = heads(attn.to_q(sequence)), heads(attn.to_k(sequence)), heads(attn.to_v(sequence))
    if attn.norm_q is not None:
        query, key = attn.norm_q(query), attn.norm_k(key)
    order = torch.tensor(list(range(text_len)) + visual_positions + entity_positions, device=sequence.device)
    query, key = query[:, :, order], key[:, :, order]
    if image_rotary_emb is not None:
        visual_part = slice(text_len, text_len + visual)
        query = torch.cat(
            [
                query[:, :, :text_len],
                apply_rotary_emb(query[:, :, visual_part], image_rotary_emb),
                query[:, :, visual_part.stop :],
            ],
            dim=2,
        )
        key = torch.cat(
            [
                key[:, :, :text_len],
                apply_rotary_emb(key[:, :, visual_part], image_rotary_emb),
                key[:, :, visual_part.stop :],
            ],
            dim=2,
        )
    out = F.scaled_dot_product_attention(query, key, value)
    out = attn.to_out[1](attn.to_out[0](out.transpose(1, 2).flatten(2)))

    # 5. The output rows of the visual tokens (rows follow Q's order), gated.
    return gate * out[:, text_len : text_len + visual]
