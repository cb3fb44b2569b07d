"""Request and response models of the OpenAI chat completions API, with zwz's extensions after them."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from zwz.analytics.zoom.agent import AgentResult
from zwz.analytics.zoom.attention_zoom import AttentionZoomResult
from zwz.defaults import AGENT_FIXED_TURNS, AGENT_MAX_TURNS
from zwz.server.api.request_shape import check_attention_shape, check_chat_shape, current_limits
from zwz.server.engines.request_policy import SEED_MAX, SEED_MIN

# Integers the engines hand to torch and (vLLM) msgpack must fit 64 bits; beyond, a 400 here, not a 500 there.
_INT64_MAX = 2**63 - 1


# -- request ---------------------------------------------------------------------------------------------
class ImageURL(BaseModel):
    url: str = Field(description="data:image/...;base64,... URL; file:// and http(s) only where the operator allows.")
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class MMProcessorKwargs(BaseModel):
    """Per-request image pixel budget, in vLLM's field name so both engines read the same request."""

    model_config = ConfigDict(extra="forbid")
    min_pixels: int | None = Field(None, ge=1, le=_INT64_MAX)
    max_pixels: int | None = Field(None, ge=1, le=_INT64_MAX)


# No model has more than a few hundred LLM layers: a longer list is refused before it is resolved.
LayerChoice = int | Annotated[list[int], Field(max_length=1024)] | Literal["all"] | None
Box = Annotated[list[float], Field(min_length=4, max_length=4, description="[x1, y1, x2, y2] in original-image pixels")]


class AttentionOptions(BaseModel):
    """zwz extension on chat completions: return the answer's relative-attention map with it."""

    model_config = ConfigDict(extra="forbid")
    layer: LayerChoice = Field(None, description="LLM layer(s): an index, a list, 'all'; default by relative depth.")
    box: Box | None = Field(None, description="Evidence box on the last image, for the coverage ratio.")
    heatmap: bool = Field(False, description="Include the heatmap overlay as a base64 PNG.")


class AgentOptions(BaseModel):
    """Settings of the tool-use zoom agent mode."""

    model_config = ConfigDict(extra="forbid")
    max_turns: int = Field(AGENT_MAX_TURNS, ge=1, le=50, description="Model calls at most (Qwen-Agent allows 20).")
    fixed_turns: int = Field(AGENT_FIXED_TURNS, ge=0, le=50,
                             description="Timing harness: zoom this many times even if the model does not ask.")


class ChatCompletionRequest(BaseModel):
    # Unknown OpenAI fields are accepted and ignored, as vLLM does.
    model_config = ConfigDict(extra="allow")

    messages: list[Message] = Field(min_length=1)
    model: str
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(None, ge=1, le=_INT64_MAX)
    max_tokens: int | None = Field(None, ge=1, le=_INT64_MAX, description="Deprecated OpenAI name of max_completion_tokens.")
    n: int | None = Field(1, ge=1, le=128)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX, description="A 64-bit integer, as vLLM's server takes.")
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    user: str | None = None
    # zwz extensions
    top_k: int | None = Field(None, ge=0, le=_INT64_MAX, description="Sample from the k most likely tokens (0: off).")
    mm_processor_kwargs: MMProcessorKwargs | None = Field(None, description="Image pixel budget for this request.")
    zwz_attention: AttentionOptions | None = Field(None, description="Return the relative-attention map too.")
    zwz_mode: Literal["single", "agent", "attention_zoom"] = Field(
        "single", description="single: one pass; agent: tool-use zoom agent; attention_zoom: answer on [image, crop "
                              "chosen from the relative-attention map].")
    zwz_agent: AgentOptions | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_shape(cls, data: Any) -> Any:
        check_chat_shape(data, current_limits())  # on the raw JSON, before any message is validated
        return data


class ZoomAttentionRequest(BaseModel):
    """POST /v1/zoom/attention: where the model looks to answer ``question`` about ``image``."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="Served model name; optional when one model is served.")
    image: str = Field(description="Image URL: data:image/...;base64,..., or file:// / http(s) where allowed.")
    question: str = Field(min_length=1)
    box: Box | None = Field(None, description="Evidence box for the coverage ratio (paper Eq. 2).")
    layer: LayerChoice = Field(None, description="LLM layer(s): an index, a list, 'all'; default by relative depth.")
    method: Literal["fast", "reference"] = Field("fast", description="'reference': eager output_attentions passes.")
    heatmap: bool = Field(True, description="Include the heatmap overlay as a base64 PNG.")
    mm_processor_kwargs: MMProcessorKwargs | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_shape(cls, data: Any) -> Any:
        check_attention_shape(data, current_limits())
        return data


# -- response --------------------------------------------------------------------------------------------
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    visual_tokens: int = Field(description="zwz extension: prompt tokens that encode images.")


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None
    logprobs: None = None


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class AttentionMap(BaseModel):
    """A relative-attention map over the merged visual-token grid of one image."""

    layer: int = Field(description="LLM layer of `grid` (0-based).")
    grid: list[list[float]] = Field(description="Relative attention, rows x cols of the merged token grid.")
    grid_shape: tuple[int, int]
    image_size: tuple[int, int] = Field(description="Original image (width, height) in pixels.")
    layer_grids: dict[str, list[list[float]]] | None = Field(None, description="Every requested layer's map.")
    coverage: float | None = Field(None, description="Share of the map's mass inside `box` (paper Eq. 2).")
    coverage_by_layer: dict[str, float] | None = None
    suggested_box: tuple[int, int, int, int] = Field(description="Region with the most excess attention.")
    heatmap_png: str | None = Field(None, description="Base64 PNG: the map over the image, boxes drawn.")
    method: str
    timings_ms: dict[str, float]


# The zoom modes' trajectories are the strategies' own result records (stdlib dataclasses, one definition):
# pydantic validates and documents them as they are, told apart by their `mode`.
Trajectory = Annotated[AgentResult | AttentionZoomResult, Field(discriminator="mode")]
_TRAJECTORY_DOC = "zwz extension: the model calls of the agent and attention_zoom modes."


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=new_completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    zwz_attention: AttentionMap | None = Field(None, description="zwz extension: the answer's attention map.")
    zwz_trajectory: Trajectory | None = Field(None, description=_TRAJECTORY_DOC)


class ZoomAttentionResponse(AttentionMap):
    object: Literal["zoom.attention"] = "zoom.attention"
    model: str
    visual_tokens: int


class ToolCallDelta(BaseModel):
    index: int
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class StreamChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[StreamChoice]
    usage: Usage | None = None
    zwz_attention: AttentionMap | None = None
    zwz_trajectory: Trajectory | None = Field(None, description=_TRAJECTORY_DOC + " On the finishing chunk.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "zwz"
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
