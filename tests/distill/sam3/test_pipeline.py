"""The SAM3 way of proposing boxes inside the R2I pipeline: the inventory teacher (the live scripted stand-in)
names each image's objects, a tiny random SAM3 looks for them, and the funnel reports why nothing is kept
(random weights score every query about sigmoid(0)^2 = 0.25, so no instance is ever found)."""

from __future__ import annotations

import json

import pytest
import torch

from zwz.distill.pipeline import run_local


@pytest.fixture(scope="module")
def tiny_sam3(tmp_path_factory):
    from zwz.distill.sam3.tiny import build_tiny_sam3

    return build_tiny_sam3(tmp_path_factory.mktemp("tiny-sam3") / "sam3")


def test_random_sam3_drops_every_inventoried_object_with_the_reason(zw_pool, teacher, tiny_sam3, tmp_path):
    from zwz.distill.config import DistillConfig
    from zwz.distill.teachers import Endpoint

    rows = [json.loads(line) for line in (zw_pool / "items.jsonl").read_text().splitlines()]
    n_objects = sum(len(r["meta"]["panels"]) for r in rows)  # the scripted inventory names every panel
    config = DistillConfig(images=str(zw_pool / "images"), sam3_model=str(tiny_sam3),
                           teachers=[Endpoint(teacher, "oracle")], question_teacher=Endpoint(teacher, "oracle"),
                           progress=False, retry_backoff=0.01)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = run_local(config, tmp_path / "out")
    finally:
        torch.set_num_threads(threads)
    stages = {s["name"]: (s["items_in"], s["items_out"], s["drops"]) for s in report["stages"]}
    # every object dropped by SAM3 with its reason, and so every image left without a box
    assert stages["propose"] == (len(rows), 0, {"sam3_no_instance": n_objects, "no_boxes": len(rows)})
    assert report["kept"] == 0
