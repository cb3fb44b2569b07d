"""One settings object for the server; every field can also come from a ``ZWZ_<NAME>`` variable."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZWZ_", extra="ignore")

    model: str | None = Field(None, description="Model folder; None serves the embedded default, zwz-nano.")
    engine: Literal["transformers", "vllm", "auto"] = Field(
        "auto", description="auto: vLLM when it is installed and a CUDA GPU is present, else transformers.")
    served_model_name: str | None = Field(None, description="Name clients use; defaults to the folder name.")
    api_key: str | None = Field(None, description="If set, /v1 requests need 'Authorization: Bearer <key>'.")
    host: str = "127.0.0.1"
    port: int = 8000

    # Engine
    device: str = "auto"
    dtype: str = "auto"
    max_model_len: int | None = None
    max_batch_size: int | None = Field(
        None, description="Most requests decoded together (vLLM's max_num_seqs); None: 8 on transformers, "
                          "vLLM's default on vLLM.")
    max_queue: int = Field(64, description="Requests waiting beyond the running ones before 503s.")
    batch_wait_ms: float = 0.0
    default_max_tokens: int = 512

    # vLLM engine only (vLLM's names)
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    limit_images: int | None = Field(
        None, description="Images per prompt vLLM budgets for; None: max_images_per_request.")
    enforce_eager: bool | None = Field(None, description="No CUDA graphs / compilation; None: eager on CPU only.")

    # Request limits
    max_body_bytes: int = 32 * 1024 * 1024
    max_images_per_request: int = 32  # a zoom agent re-sends every crop (Qwen-Agent allows 20 calls)
    max_image_pixels: int = 64_000_000
    allowed_local_media_dir: str | None = Field(None, description="file:// image URLs allowed only below this folder.")
    allow_remote_media: bool = Field(False, description="Fetch http(s) image URLs (off: the server fetches nothing).")
    remote_media_timeout_s: float = 10.0

    # Request-shape limits, checked on the raw JSON before any item is validated (server/api/request_shape.py):
    # a request over one is a 400 in microseconds, whatever it carries. Generous for real clients (an agent
    # conversation of 50 turns is ~100 messages), small enough that no request can stall its batch neighbours.
    max_messages: int = Field(2048, ge=1, description="Messages in one chat request.")
    max_content_parts: int = Field(
        4096, ge=1, description="Content parts (text and image) over all messages of one request.")
    max_text_chars: int = Field(
        1_000_000, ge=1, description="Characters of text in one request (every string but image URLs): "
                                     "about 250K tokens, the largest Qwen3-VL context.")
    max_stop_sequences: int = Field(
        16, ge=1, description="Stop strings in one request (OpenAI allows 4; each is checked at every step).")
    max_stop_chars: int = Field(1024, ge=1, description="Characters in one stop string.")
    max_tools: int = Field(128, ge=1, description="Tools in one request (OpenAI's limit).")
    max_json_values: int = Field(
        100_000, ge=1, description="JSON values (objects, arrays, strings, numbers) in one request body.")
