"""The injector (model reference, sections 3-4) against its literal, step-by-step statement,
and the rest of the transformer against diffusers' stock classes."""

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock

from backend.cogvideox.injector import ENTITY_TOKENS, MAX_ENTITIES, InjectorInputs, entity_tokens
from backend.cogvideox.reference_injector import literal_injector_residual
from backend.cogvideox.transformer import TrajectoryCondition, TrajMasterTransformer3DModel

CONFIG = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 4,
    "time_embed_dim": 16,
    "text_embed_dim": 24,
    "num_layers": 3,
    "sample_width": 6,
    "sample_height": 4,
    "max_text_seq_length": 64,
    "use_rotary_positional_embeddings": True,
}
WIDTH = 32


def random_model(seed: int = 0) -> TrajMasterTransformer3DModel:
    torch.manual_seed(seed)
    model = TrajMasterTransformer3DModel(**CONFIG).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if name.endswith("norm_q.weight") or name.endswith("norm_k.weight") else 0.0, 0.3)
    return model


def rotary(frames: int, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    return get_3d_rotary_pos_embed(CONFIG["attention_head_dim"], ((0, 0), grid), grid, frames)


def test_release_layout_every_second_block_carries_the_injector_under_the_released_names():
    names = {n for n, _ in random_model().named_parameters()}
    for i in (0, 2):
        assert f"transformer_blocks.{i}.attn_injector.to_q.weight" in names
        assert f"transformer_blocks.{i}.attn_injector.norm_k.weight" in names
        assert f"transformer_blocks.{i}.attn_injector.to_out.0.bias" in names
        assert f"transformer_blocks.{i}.pose_fuse_layer.weight" in names
        assert f"transformer_blocks.{i}.attn_null_feature" in names
    assert not any(n.startswith("transformer_blocks.1.") and "injector" in n for n in names)


@pytest.mark.parametrize(
    ("frames", "grid", "entities", "tokens", "batch", "text"),
    [
        (13, (2, 3), 1, 5, 2, 10),  # the real frame count, CFG batch of 2
        (3, (2, 2), 3, 4, 1, 7),  # all three entity slots used
        (2, (3, 2), 2, 7, 2, 1),  # odd sizes everywhere
    ],
)
def test_production_injector_equals_the_literal_reference(frames, grid, entities, tokens, batch, text):
    model = random_model()
    block = model.transformer_blocks[0]
    torch.manual_seed(1)
    hidden = torch.randn(batch, frames * grid[0] * grid[1], WIDTH)
    temb = torch.randn(batch, CONFIG["time_embed_dim"])
    inputs = InjectorInputs(
        text=torch.randn(1, text, WIDTH),
        entities=torch.randn(1, entities, tokens, WIDTH),
        poses=torch.randn(1, entities, frames, 12),
    )
    with torch.no_grad():
        production = block.injector_residual(hidden, temb, inputs, rotary(frames, grid))
        literal = literal_injector_residual(block, hidden, temb, inputs, rotary(frames, grid))
    assert literal.abs().max() > 0.1  # the comparison is not between two near-zero tensors
    torch.testing.assert_close(production, literal, atol=1e-5, rtol=1e-5)


def test_values_really_stay_in_the_interleaved_order():
    """The release's quirk matters: reordering V along with Q and K gives something else."""
    model = random_model()
    block = model.transformer_blocks[0]
    frames, grid = 3, (2, 2)
    torch.manual_seed(2)
    hidden, temb = torch.randn(1, frames * 4, WIDTH), torch.randn(1, CONFIG["time_embed_dim"])
    inputs = InjectorInputs(torch.randn(1, 5, WIDTH), torch.randn(1, 2, 4, WIDTH), torch.randn(1, 2, frames, 12))
    attn = block.attn_injector
    with torch.no_grad():
        norm_visual, norm_text, gate, _ = block.norm1(hidden, inputs.text, temb)
        entity = entity_tokens(block.pose_fuse_layer, block.attn_null_feature, inputs)
        sequence = torch.cat([norm_text, norm_visual, entity], dim=1)  # Q, K and V all reordered

        def heads(x):
            return x.unflatten(-1, (attn.heads, -1)).transpose(1, 2)

        q, k = attn.norm_q(heads(attn.to_q(sequence))), attn.norm_k(heads(attn.to_k(sequence)))
        visual = slice(5, 5 + frames * 4)
        from diffusers.models.embeddings import apply_rotary_emb

        q[:, :, visual] = apply_rotary_emb(q[:, :, visual], rotary(frames, grid))
        k[:, :, visual] = apply_rotary_emb(k[:, :, visual], rotary(frames, grid))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, heads(attn.to_v(sequence)))
        naive = gate * attn.to_out[0](out.transpose(1, 2).flatten(2))[:, visual]
        production = block.injector_residual(hidden, temb, inputs, rotary(frames, grid))
    assert (naive - production).abs().max() > 1e-3


def test_entity_tokens_are_pose_plus_prompt_frame_major_with_null_slots():
    model = random_model()
    block = model.transformer_blocks[0]
    frames, k = 4, 3
    torch.manual_seed(3)
    inputs = InjectorInputs(torch.zeros(1, 1, WIDTH), torch.randn(1, 2, k, WIDTH), torch.randn(1, 2, frames, 12))
    with torch.no_grad():
        tokens = entity_tokens(block.pose_fuse_layer, block.attn_null_feature, inputs).reshape(
            frames, MAX_ENTITIES, k, -1
        )
        for f in range(frames):
            for n in range(2):
                expected = block.pose_fuse_layer(inputs.poses[0, n, f]) + inputs.entities[0, n]
                torch.testing.assert_close(tokens[f, n], expected)
            assert torch.equal(tokens[f, 2], block.attn_null_feature.expand(k, -1))


def test_entity_prompts_are_projected_padding_zeroed_and_cut_to_50_tokens():
    model = random_model()
    text = CONFIG["max_text_seq_length"]
    torch.manual_seed(4)
    mask = torch.zeros(1, 2, text)
    mask[0, 0, :30] = 1
    mask[0, 1, :55] = 1
    condition = TrajectoryCondition(
        poses=torch.randn(1, 2, 13, 12),
        entity_embeds=torch.randn(1, 2, text, CONFIG["text_embed_dim"]),
        entity_mask=mask,
        empty_embeds=torch.randn(1, text, CONFIG["text_embed_dim"]),
    )
    with torch.no_grad():
        inputs = model.injector_inputs(condition)
        projected = model.patch_embed.text_proj(condition.entity_embeds)
        empty = model.patch_embed.text_proj(condition.empty_embeds)
    assert inputs.entities.shape == (1, 2, ENTITY_TOKENS, WIDTH)
    assert torch.equal(inputs.entities[0, 0, :30], projected[0, 0, :30])
    assert torch.count_nonzero(inputs.entities[0, 0, 30:]) == 0  # padding: exactly zero, not the bias
    assert torch.equal(inputs.entities[0, 1], projected[0, 1, :ENTITY_TOKENS])
    assert torch.equal(inputs.text, empty)  # the empty prompt keeps all its tokens, unmasked


def test_a_block_without_injector_inputs_is_the_stock_block():
    model = random_model()
    for index in (0, 1):
        ours = model.transformer_blocks[index]
        stock = CogVideoXBlock(WIDTH, 2, 16, CONFIG["time_embed_dim"], attention_bias=True)
        missing, unexpected = stock.load_state_dict(ours.state_dict(), strict=False)
        assert not missing and all("injector" in k or "pose_fuse" in k or "null_feature" in k for k in unexpected)
        torch.manual_seed(5)
        hidden, text, temb = torch.randn(2, 12, WIDTH), torch.randn(2, 7, WIDTH), torch.randn(2, 16)
        with torch.no_grad():
            ours_out = ours(hidden, text, temb, rotary(3, (2, 2)))
            stock_out = stock(hidden, text, temb, rotary(3, (2, 2)))
            for a, b in zip(ours_out, stock_out, strict=True):
                assert torch.equal(a, b)


def test_without_an_active_trajectory_the_model_is_the_stock_transformer():
    model = random_model()
    stock = CogVideoXTransformer3DModel(**CONFIG).eval()
    stock.load_state_dict(model.state_dict(), strict=False)
    torch.manual_seed(6)
    latents = torch.randn(2, 13, 4, 4, 6)
    prompt = torch.randn(2, CONFIG["max_text_seq_length"], CONFIG["text_embed_dim"])
    args = {"timestep": torch.tensor([500, 500]), "image_rotary_emb": rotary(13, (2, 3)), "return_dict": False}
    condition = TrajectoryCondition(
        poses=torch.randn(1, 1, 13, 12),
        entity_embeds=torch.randn(1, 1, CONFIG["max_text_seq_length"], CONFIG["text_embed_dim"]),
        entity_mask=torch.ones(1, 1, CONFIG["max_text_seq_length"]),
        empty_embeds=torch.randn(1, CONFIG["max_text_seq_length"], CONFIG["text_embed_dim"]),
        active=False,
    )
    with torch.no_grad():
        expected = stock(latents, prompt, **args)[0]
        assert torch.equal(model(latents, prompt, **args)[0], expected)
        assert torch.equal(model(latents, prompt, attention_kwargs={"trajectory": condition}, **args)[0], expected)
        condition.active = True
        assert not torch.equal(model(latents, prompt, attention_kwargs={"trajectory": condition}, **args)[0], expected)


def test_the_injector_sits_after_attn1_and_before_norm2_in_the_block():
    """Model reference 4: the injector's norm1 sees the hidden states *after* attn1's residual
    update, its gated output is added before norm2, and the text stream is left alone. Written
    out with diffusers' stock block for everything but the injector itself."""
    from backend.cogvideox.injector import INJECTOR_KEY

    model = random_model()
    ours = model.transformer_blocks[0]
    stock = CogVideoXBlock(WIDTH, 2, 16, CONFIG["time_embed_dim"], attention_bias=True).eval()
    stock.load_state_dict(ours.state_dict(), strict=False)
    frames, grid = 3, (2, 2)
    torch.manual_seed(8)
    hidden, text, temb = torch.randn(2, frames * 4, WIDTH), torch.randn(2, 7, WIDTH), torch.randn(2, 16)
    inputs = InjectorInputs(torch.randn(1, 5, WIDTH), torch.randn(1, 2, 4, WIDTH), torch.randn(1, 2, frames, 12))
    rope = rotary(frames, grid)
    with torch.no_grad():
        norm_h, norm_e, gate, enc_gate = stock.norm1(hidden, text, temb)
        attn_h, attn_e = stock.attn1(hidden_states=norm_h, encoder_hidden_states=norm_e, image_rotary_emb=rope)
        h = hidden + gate * attn_h
        e = text + enc_gate * attn_e
        h = h + literal_injector_residual(ours, h, temb, inputs, rope)
        norm_h, norm_e, gate_ff, enc_gate_ff = stock.norm2(h, e, temb)
        ff = stock.ff(torch.cat([norm_e, norm_h], dim=1))
        expected = (h + gate_ff * ff[:, 7:], e + enc_gate_ff * ff[:, :7])
        got = ours(hidden, text, temb, rope, attention_kwargs={INJECTOR_KEY: inputs})
        plain = stock(hidden, text, temb, rope)
    assert (got[0] - plain[0]).abs().max() > 1e-2  # the injector really changed the block's output
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
