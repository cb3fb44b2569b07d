"""The fast relative-attention path against the reference method (eager output_attentions passes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zwz.analytics.attention import capture
from zwz.analytics.attention.relative_attention import (
    GENERIC_INSTRUCTION,
    build_pair,
    default_layer,
    relative_attention,
    resolve_layers,
)


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def loaded(request, tiny_models):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_models[request.param]
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(
        folder, dtype=torch.float32, attn_implementation=capture.attn_implementation()).eval()
    return model, processor


@pytest.mark.parametrize("size", [(448, 448), (500, 300), (333, 517)])
def test_fast_matches_reference_on_every_layer(loaded, images, size):
    model, processor = loaded
    pair = build_pair(processor, images.noise(*size, seed=size[0]), "What color is the small car on the left?")
    fast = relative_attention(model, processor, pair, layers="all")
    ref = relative_attention(model, processor, pair, layers="all", method="reference")
    assert fast.layers.keys() == ref.layers.keys() == set(range(model.config.get_text_config().num_hidden_layers))
    for layer in fast.layers:
        scale = np.abs(ref.layers[layer]).max()
        assert np.abs(fast.layers[layer] - ref.layers[layer]).max() <= 1e-4 * scale, layer
        np.testing.assert_allclose(fast.question[layer], ref.question[layer], rtol=1e-4, atol=1e-9)
    rows, cols = pair.grid_shape
    assert fast.grid.shape == (rows, cols)
    # Qwen-VL grid: the processor's patches (2x2 merged) of the resized image.
    assert (rows * 2, cols * 2) == pair.image_grid_thw[1:]


def test_pair_shares_prefix_and_ends_like_the_question(loaded, images):
    model, processor = loaded
    pair = build_pair(processor, images.noise(320, 320), "How many birds?")
    q, g = pair.inputs["input_ids"][0], pair.generic_ids[0]
    P = pair.prefix_len
    assert torch.equal(q[:P], g[:P])
    assert processor.tokenizer.decode(g[P:]).startswith(GENERIC_INSTRUCTION)
    tail = processor.tokenizer.decode(q[-5:])
    assert processor.tokenizer.decode(g[-5:]) == tail  # same closing tokens (end of turn, assistant header)
    start, end = pair.image_span
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (q[start:end] == image_id).all() and q[start - 1] != image_id and end == P - 1


def test_probabilities_are_a_valid_share_of_the_softmax(loaded, images):
    model, processor = loaded
    pair = build_pair(processor, images.noise(448, 448), "Read the sign.")
    result = relative_attention(model, processor, pair, layers=[0, -1])
    for layer in result.layers:
        assert (result.question[layer] > 0).all() and result.question[layer].sum() < 1.0
        assert (result.generic[layer] > 0).all() and result.generic[layer].sum() < 1.0


def test_layer_selection():
    assert default_layer(36) == 23  # the paper's 24th layer of 36
    assert resolve_layers("all", 4) == [0, 1, 2, 3]
    assert resolve_layers([3, -1, 3], 6) == [3, 5]
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers(6, 6)
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers([-7], 6)


def test_fast_path_needs_the_capture_attention(tiny_models, images):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_models["qwen2_5_vl"]
    processor = AutoProcessor.from_pretrained(folder)
    plain = AutoModelForImageTextToText.from_pretrained(folder, attn_implementation="sdpa")
    pair = build_pair(processor, images.noise(224, 224), "What is this?")
    with pytest.raises(ValueError, match="capture"):
        relative_attention(plain, processor, pair)
