"""A request's prompt as both engines build it: our messages in the processor's chat format, templated.

One implementation, so the transformers and vLLM engines see the same prompt text for the same request.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from zwz.server.engines.base import GenerationRequest, InvalidRequestError


def to_hf_conversation(request: GenerationRequest) -> tuple[list[dict[str, Any]], list[Image.Image]]:
    """Our messages -> the processor's chat format, plus the images in prompt order.

    >>> from zwz.server.engines.base import ChatMessage
    >>> image = Image.new("RGB", (8, 8))
    >>> to_hf_conversation(GenerationRequest([ChatMessage("user", [image, "What is it?"])]))[0]
    [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'What is it?'}]}]
    """
    conversation: list[dict[str, Any]] = []
    images: list[Image.Image] = []
    for message in request.messages:
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, Image.Image):
                images.append(part)
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": part})
        turn: dict[str, Any] = {"role": message.role, "content": parts}
        if message.tool_calls:
            turn["tool_calls"] = message.tool_calls
        conversation.append(turn)
    return conversation, images


def render_prompt(processor: Any, request: GenerationRequest) -> tuple[str, list[Image.Image]]:
    """The prompt text (the model's chat template, generation prompt added) and its images, in order."""
    conversation, images = to_hf_conversation(request)
    text = processor.apply_chat_template(conversation, tools=request.tools or None, add_generation_prompt=True,
                                         tokenize=False)
    # The API refuses such text with its field named; this covers every other way in (messages, tools, a
    # zoom mode's own turns), on both engines, before the tokenizer fails on it with a TypeError.
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError("the prompt holds an unpaired UTF-16 surrogate (such as \\ud800), which is "
                                      "not Unicode; send valid UTF-8 text", param="messages",
                                      code="invalid_unicode") from None
    return text, images
