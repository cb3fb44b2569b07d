"""The SAM3 box proposer: the one-instance rule (a pure function, tested directly), the post-processing math,
and the whole path through a tiny random SAM3 built offline (shapes, dtypes, devices, pixel coordinates,
prompt batching)."""

from __future__ import annotations

import doctest
import importlib
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from zwz.distill.sam3.boxes import (
    DROP_REASONS,
    Sam3BoxProposer,
    detections_from_outputs,
    propose_boxes_sam3,
    select_unique_instance,
)

BOXES = [[10, 20, 50, 60], [100, 100, 140, 150], [0, 0, 8, 8]]


@pytest.mark.parametrize(
    ("scores", "kwargs", "reason", "n"),
    [
        ([0.9, 0.4, 0.1], {}, "kept", 1),  # the others are not instances (<= 0.5)
        ([0.9, 0.6, 0.1], {}, "multiple_instances", 2),  # a second plausible instance: not unique
        ([0.9, 0.5, 0.5], {}, "kept", 1),  # exactly 0.5 is not above the instance threshold
        ([0.75, 0.2, 0.1], {}, "kept", 1),  # min_score is inclusive (the official code drops < 0.75)
        ([0.7499, 0.2, 0.1], {}, "low_score", 1),
        ([0.4, 0.3, 0.2], {}, "no_instance", 0),
        ([0.9, 0.6, 0.1], {"instance_threshold": 0.75}, "kept", 1),  # "exactly one >= 0.75" reading
        ([0.9, 0.8, 0.1], {"instance_threshold": 0.75}, "multiple_instances", 2),
        ([0.3, 0.95, 0.1], {"min_score": 0.9}, "kept", 1),
    ],
)
def test_one_instance_rule(scores, kwargs, reason, n):
    got_reason, box, score, count = select_unique_instance(BOXES, scores, **kwargs)
    assert (got_reason, count) == (reason, n)
    if n:
        best = max(range(3), key=lambda i: scores[i])
        assert box == tuple(float(v) for v in BOXES[best])
        assert score == pytest.approx(scores[best])
    else:
        assert box is None and score is None


def test_rule_clips_to_the_image_and_drops_empty_or_large_boxes():
    assert select_unique_instance([[-5, -3, 30, 900]], [0.9], image_size=(40, 600))[1] == (0.0, 0.0, 30.0, 600.0)
    assert select_unique_instance([[50, 50, 60, 60]], [0.9], image_size=(40, 40))[0] == "empty_box"
    assert select_unique_instance([[5, 5, 5, 9]], [0.9])[0] == "empty_box"
    # The paper keeps area(B)/area(I) < tau: 0.099 passes, exactly 0.1 does not.
    assert select_unique_instance([[0, 0, 99, 10]], [0.9], image_size=(100, 100), max_area_ratio=0.1)[0] == "kept"
    assert select_unique_instance([[0, 0, 100, 10]], [0.9], image_size=(100, 100),
                                  max_area_ratio=0.1)[0] == "too_large"
    assert set(DROP_REASONS) >= {"no_instance", "multiple_instances", "low_score", "empty_box", "too_large"}


def test_rule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="instance_threshold"):
        select_unique_instance(BOXES, [0.9, 0.1, 0.1], instance_threshold=0.8, min_score=0.75)
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        select_unique_instance(BOXES, [0.9, 0.1])
    with pytest.raises(ValueError, match="needs image_size"):
        select_unique_instance(BOXES, [0.9, 0.1, 0.1], max_area_ratio=0.1)


def test_post_processing_math():
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, -3.0, 0.5]], dtype=torch.bfloat16)  # (B=2, Q=3)
    presence = torch.tensor([[1.5], [-0.5]], dtype=torch.bfloat16)  # (B, 1)
    boxes = torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.1, 0.1]]] * 2,
                         dtype=torch.bfloat16)  # (B, Q, 4) normalised xyxy
    outputs = SimpleNamespace(pred_logits=logits, presence_logits=presence, pred_boxes=boxes)
    found = detections_from_outputs(outputs, [(480, 640), (100, 200)])  # (height, width) per row
    expected = logits.float().sigmoid() * presence.float().sigmoid()
    for row, (h, w) in enumerate([(480, 640), (100, 200)]):
        order = expected[row].argsort(descending=True)
        assert found[row].scores.dtype == found[row].boxes.dtype == torch.float32
        assert torch.allclose(found[row].scores, expected[row][order])
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        assert torch.allclose(found[row].boxes, boxes[row].float()[order] * scale)
    assert found[0].boxes[0].tolist() == pytest.approx([320.0, 240.0, 640.0, 480.0])  # query 1: highest score


@pytest.fixture(scope="module")
def tiny_sam3(tmp_path_factory):
    from zwz.distill.sam3.tiny import build_tiny_sam3

    return build_tiny_sam3(tmp_path_factory.mktemp("tiny-sam3") / "sam3")


@pytest.fixture
def one_thread():
    """Tiny matrices run far faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


NAMES = ["red car", "street sign", "dog", "coffee cup", "red car"]


def test_end_to_end_with_a_tiny_random_sam3(tiny_sam3, one_thread):
    image = Image.linear_gradient("L").resize((640, 480)).convert("RGB")
    proposer = Sam3BoxProposer(tiny_sam3, device="cpu", prompt_batch_size=2)
    assert (proposer.settings.height, proposer.settings.width) == (224, 224)  # read from the folder
    assert proposer.dtype == torch.float32 and next(proposer.model.parameters()).device.type == "cpu"

    found = proposer.detect(image, NAMES[:4])
    queries = proposer.model.config.detr_decoder_config.num_queries
    assert len(found) == 4
    for det in found:
        assert det.boxes.shape == (queries, 4) and det.scores.shape == (queries,)
        assert det.boxes.dtype == det.scores.dtype == torch.float32 and det.boxes.device.type == "cpu"
        assert torch.all(det.scores[:-1] >= det.scores[1:])  # best first

    # The batched, image-features-shared path equals a plain forward of each prompt with its own pixels,
    # and boxes are in pixels of the original 640 x 480 image.
    from zwz.distill.sam3.preprocess import preprocess_images

    pixels, _ = preprocess_images([image], proposer.settings)
    for name, det in zip(NAMES[:4], found):
        text = proposer.tokenizer([name], padding="max_length", max_length=32, return_tensors="pt")
        with torch.inference_mode():
            out = proposer.model(pixel_values=pixels, input_ids=text["input_ids"],
                                 attention_mask=text["attention_mask"])
        scores = out.pred_logits[0].sigmoid() * out.presence_logits[0].sigmoid()
        order = scores.argsort(descending=True)
        assert torch.allclose(det.scores, scores[order], atol=1e-5)
        assert torch.allclose(det.boxes, out.pred_boxes[0][order] * torch.tensor([640, 480, 640, 480]), atol=1e-3)

    results = proposer.propose(image, NAMES)
    assert [r.name for r in results] == NAMES
    for r, det in zip(results, found + [found[0]]):  # the repeated name gets the first one's answer
        assert (r.reason, r.box, r.score, r.n_instances) == select_unique_instance(det.boxes, det.scores,
                                                                                    image_size=(640, 480))
        assert r.kept == (r.reason == "kept")
        assert r.to_dict()["name"] == r.name
    # A random model scores about sigmoid(0)^2 = 0.25 everywhere: nothing is an instance.
    assert {r.reason for r in results} == {"no_instance"}
    # With the thresholds lowered for one call, the same detections count as instances.
    lowered = proposer.propose(image, NAMES[:1], min_score=0.0, instance_threshold=0.0)
    assert lowered[0].reason == "multiple_instances" and lowered[0].n_instances == queries
    assert proposer.detect(image, []) == []


def test_cached_function_and_bad_folder(tiny_sam3, one_thread, tmp_path):
    image = Image.new("RGB", (300, 200), (200, 30, 30))
    first = propose_boxes_sam3(image, ["red car"], tiny_sam3, score_threshold=0.75)
    second = propose_boxes_sam3(image, ["red car"], tiny_sam3, score_threshold=0.75)
    assert first == second and len(first) == 1
    with pytest.raises(FileNotFoundError, match="not a SAM3 model folder"):
        Sam3BoxProposer(tmp_path)


def test_proposer_around_a_loaded_model(tiny_sam3, one_thread):
    from_folder = Sam3BoxProposer(tiny_sam3, device="cpu")
    wrapped = Sam3BoxProposer.from_model(from_folder.model, from_folder.tokenizer, prompt_batch_size=3)
    assert wrapped.settings == from_folder.settings  # default settings at the model's 224 px input
    assert (wrapped.device.type, wrapped.dtype) == ("cpu", torch.float32)
    image = Image.new("RGB", (200, 300), (90, 90, 200))
    for a, b in zip(wrapped.detect(image, NAMES[:4]), from_folder.detect(image, NAMES[:4])):
        assert torch.allclose(a.scores, b.scores, atol=1e-6) and torch.allclose(a.boxes, b.boxes, atol=1e-4)
    with pytest.raises(ValueError, match="prompt_batch_size"):
        Sam3BoxProposer.from_model(from_folder.model, from_folder.tokenizer, prompt_batch_size=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_on_gpu(tiny_sam3):
    proposer = Sam3BoxProposer(tiny_sam3, device="cuda")
    assert proposer.dtype == torch.bfloat16
    found = proposer.detect(Image.new("RGB", (320, 240)), ["dog", "cat", "car"])
    assert all(d.boxes.dtype == torch.float32 and d.boxes.device.type == "cpu" for d in found)
    reference = Sam3BoxProposer(tiny_sam3, device="cpu").detect(Image.new("RGB", (320, 240)), ["dog", "cat", "car"])
    for got, want in zip(found, reference):
        assert torch.allclose(got.scores.sort().values, want.scores.sort().values, atol=3e-2)


def test_doctests():
    assert doctest.testmod(importlib.import_module("zwz.distill.sam3.boxes")).failed == 0
