"""One settings object for the server; every field can also come from a ``ZWZ_<NAME>`` variable."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZWZ_", extra="ignore")

    model: str | None = Field(None, description="Model folder; None serves the embedded tiny default.")
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
