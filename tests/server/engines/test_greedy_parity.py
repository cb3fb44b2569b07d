"""Greedy output of the server equals a direct transformers ``generate`` on the same folder."""

from __future__ import annotations

import openai
import pytest
import torch


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_server_equals_direct_generate(serve, tiny_models, images, family):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_models[family]
    picture = images.noise(448, 336, seed=3)
    question = "What is written on the small sign?"
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
        add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[picture], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    expected = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]

    with serve(folder) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": images.data_url(picture)}},
                                                 {"type": "text", "text": question}]}]
        r = client.chat.completions.create(model=family, messages=messages, max_tokens=24, temperature=0)
    assert r.choices[0].message.content == expected
    assert r.usage.prompt_tokens == inputs["input_ids"].shape[1]
