"""Inside vLLM's workers: capture a mapped request's prompt keys and last query, and compute its map there.

vLLM returns no attention weights, but it lets a deployment add methods to its workers
(``worker_extension_cls="zwz.server.engines.vllm_attention_worker.AttentionCaptureWorker"``) and call them
from the engine (``collective_rpc``). ``zwz_attention_install`` wraps the model runner's ``execute_model``;
a request asks for a capture through its sampling parameters
(``SamplingParams(extra_args={"zwz_attention": {...}})``, see :class:`CaptureSpec`). Only in a step that
computes rows of such a request are the attention layers' ``impl.forward`` swapped for a hook, and only for
the layers that request wants: other steps run vLLM's code untouched, so requests without a map do not pay.

The hook sees each layer's post-RoPE (M-RoPE) queries ``(tokens, Hq, D)`` and keys ``(tokens, Hkv, D)`` for
the rows this step computes; ``query_start_loc`` splits them per request and ``num_computed_tokens`` gives
each request's first absolute position. Keys are stored by absolute position, so chunked prefill (a prompt
over several steps) and preemption with recompute (rows again from 0 or a cache hit) simply overwrite; the
last prompt position's query is kept when its row is computed. ``zwz_attention_map`` then runs
``zwz.kernels.image_span_attention`` (Triton on GPU, torch on CPU) over the question's prefix + suffix keys
and the generic instruction's suffix keys, and returns only head-summed ``(2, T)`` probabilities per layer;
with tensor parallelism each rank returns its heads' sum and the engine adds the ranks up.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

EXTRA_ARG = "zwz_attention"  # the SamplingParams.extra_args key that arms a request
WORKER_EXTENSION = f"{__name__}.AttentionCaptureWorker"
# Captures not yet turned into maps (e.g. the engine lost track of one): beyond this many the oldest is
# dropped, and asking for its map says so instead of returning a wrong one.
MAX_OPEN_CAPTURES = 256
_LAYER_NAME = re.compile(r"(?:^|\.)layers\.(\d+)\.self_attn\.attn$")


@dataclass(frozen=True)
class CaptureSpec:
    """What the engine attaches to a request (as a plain dict: extra_args travel as MessagePack).

    ``keep_from``: first prompt position whose keys are kept (0 for the question, the shared prefix length for
    the generic instruction, whose prefix keys the question already holds).
    """

    map_id: str
    role: str  # "question" or "generic"
    layers: tuple[int, ...]
    prompt_len: int
    keep_from: int = 0

    def to_extra_args(self) -> dict[str, Any]:
        return {EXTRA_ARG: {"map_id": self.map_id, "role": self.role, "layers": list(self.layers),
                            "prompt_len": self.prompt_len, "keep_from": self.keep_from}}

    @classmethod
    def from_sampling_params(cls, params: Any) -> CaptureSpec | None:
        extra = getattr(params, "extra_args", None) if params is not None else None
        spec = extra.get(EXTRA_ARG) if extra else None
        if spec is None:
            return None
        return cls(map_id=str(spec["map_id"]), role=str(spec["role"]), layers=tuple(int(x) for x in spec["layers"]),
                   prompt_len=int(spec["prompt_len"]), keep_from=int(spec.get("keep_from", 0)))


@dataclass
class _Capture:
    """One request's captured keys (positions [keep_from, prompt_len)) and last-position query, per layer."""

    spec: CaptureSpec
    keys: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (prompt_len - keep_from, Hkv, D)
    filled: dict[int, np.ndarray] = field(default_factory=dict)  # layer -> bool per kept position
    query: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (Hq, D)
    closed: bool = False  # its map was made or dropped: nothing more to record

    def release(self) -> None:
        """Free the captured tensors (the request may still be decoding and reference this object)."""
        self.closed = True
        self.keys.clear()
        self.filled.clear()
        self.query.clear()

    def record(self, layer: int, query: torch.Tensor, key: torch.Tensor, start: int) -> None:
        """Rows ``query``/``key`` sit at absolute positions ``start, start + 1, ...`` of the prompt."""
        spec = self.spec
        lo, hi = max(start, spec.keep_from), min(start + key.shape[0], spec.prompt_len)
        if lo < hi:
            buffer = self.keys.get(layer)
            if buffer is None:
                buffer = key.new_empty((spec.prompt_len - spec.keep_from, *key.shape[1:]))
                self.keys[layer] = buffer
                self.filled[layer] = np.zeros(spec.prompt_len - spec.keep_from, dtype=bool)
            buffer[lo - spec.keep_from : hi - spec.keep_from].copy_(key[lo - start : hi - start])
            self.filled[layer][lo - spec.keep_from : hi - spec.keep_from] = True
        last = spec.prompt_len - 1
        if start <= last < start + query.shape[0]:
            self.query[layer] = query[last - start].clone()

    def missing(self) -> str | None:
        """Why this capture cannot make a map yet (None when complete)."""
        for layer in self.spec.layers:
            if layer not in self.query:
                return f"layer {layer}: the last prompt position was not captured"
            filled = self.filled.get(layer)
            if filled is None or not filled.all():
                gaps = len(filled) - int(filled.sum()) if filled is not None else self.spec.prompt_len - self.spec.keep_from
                return f"layer {layer}: {gaps} prompt keys were not captured"
        return None


@dataclass
class _StepRows:
    """The rows of one step that belong to armed requests: (capture, first row, row count, first position)."""

    rows: list[tuple[_Capture, int, int, int]]


class AttentionCaptureWorker:
    """Mixed into vLLM's worker class by ``worker_extension_cls``; its methods run in every worker process."""

    # -- set-up ---------------------------------------------------------------------------------------
    def zwz_attention_install(self) -> dict[str, Any]:
        """Wrap the model runner's ``execute_model`` (idempotent); return this rank's layer layout."""
        if getattr(self, "_zwz_layers", None) is None:
            runner = self.model_runner
            context = runner.vllm_config.compilation_config.static_forward_context
            self._zwz_layers: dict[int, Any] = {}
            for name, module in context.items():
                match = _LAYER_NAME.search(name)
                if match and hasattr(module, "impl"):
                    self._zwz_layers[int(match.group(1))] = module
            if not self._zwz_layers:
                raise RuntimeError("no decoder attention layers found in vLLM's forward context")
            self._zwz_armed: dict[str, _Capture] = {}  # vLLM request id -> its capture
            self._zwz_captures: OrderedDict[tuple[str, str], _Capture] = OrderedDict()  # (map id, role)
            self._zwz_step: _StepRows | None = None
            execute = runner.execute_model

            def execute_model(scheduler_output, *args, **kwargs):
                active = self._zwz_arm(scheduler_output)
                if not active:
                    return execute(scheduler_output, *args, **kwargs)
                return self._zwz_execute(execute, active, scheduler_output, *args, **kwargs)

            runner.execute_model = execute_model
        any_impl = next(iter(self._zwz_layers.values())).impl
        return {"layers": sorted(self._zwz_layers), "num_heads": int(any_impl.num_heads),
                "num_kv_heads": int(any_impl.num_kv_heads), "head_size": int(any_impl.head_size)}

    # -- per step -------------------------------------------------------------------------------------
    def _zwz_arm(self, scheduler_output: Any) -> dict[str, _Capture]:
        """Track armed requests as they arrive and leave; return those computing rows in this step."""
        for new in scheduler_output.scheduled_new_reqs:
            spec = CaptureSpec.from_sampling_params(new.sampling_params)
            if spec is not None:
                self._zwz_armed[new.req_id] = self._zwz_open(spec)
        if not self._zwz_armed:
            return {}
        for req_id in scheduler_output.finished_req_ids:
            self._zwz_armed.pop(req_id, None)  # its capture stays until the engine takes or drops the map
        for req_id in [req_id for req_id, cap in self._zwz_armed.items() if cap.closed]:
            del self._zwz_armed[req_id]  # its map is made: the rest of its decoding runs unhooked
        scheduled = scheduler_output.num_scheduled_tokens
        return {req_id: cap for req_id, cap in self._zwz_armed.items()
                if req_id in scheduled and cap.missing() is not None}

    def _zwz_open(self, spec: CaptureSpec) -> _Capture:
        key = (spec.map_id, spec.role)
        capture = self._zwz_captures.get(key)
        if capture is None or capture.spec != spec:
            capture = _Capture(spec)
            self._zwz_captures[key] = capture
            while len(self._zwz_captures) > MAX_OPEN_CAPTURES:
                (old_id, old_role), old = self._zwz_captures.popitem(last=False)
                old.release()
                logger.warning("dropping the unclaimed %s capture of attention map %s", old_role, old_id)
        return capture

    def _zwz_execute(self, execute, active: dict[str, _Capture], scheduler_output, *args, **kwargs):
        """Run one step with the wanted layers' attention hooked."""
        wanted = sorted({layer for cap in active.values() for layer in cap.spec.layers if layer in self._zwz_layers})
        originals = {}
        for layer in wanted:
            impl = self._zwz_layers[layer].impl
            originals[layer] = impl.forward
            impl.forward = self._zwz_hook(layer, impl.forward, active)
        self._zwz_step = None
        try:
            return execute(scheduler_output, *args, **kwargs)
        finally:
            for layer, forward in originals.items():
                self._zwz_layers[layer].impl.forward = forward
            self._zwz_step = None

    def _zwz_hook(self, layer_index: int, forward, active: dict[str, _Capture]):
        def hooked(layer, query, key, value, kv_cache, attn_metadata, *args, **kwargs):
            if attn_metadata is not None and key is not None:
                for capture, row, count, start in self._zwz_rows(active).rows:
                    if layer_index in capture.spec.layers:
                        capture.record(layer_index, query[row : row + count], key[row : row + count], start)
            return forward(layer, query, key, value, kv_cache, attn_metadata, *args, **kwargs)

        return hooked

    def _zwz_rows(self, active: dict[str, _Capture]) -> _StepRows:
        """Where the armed requests' rows are in this step's flattened batch (read once per step)."""
        if self._zwz_step is None:
            runner = self.model_runner
            batch = runner.input_batch
            starts = runner.query_start_loc.np  # set by _prepare_inputs for this step, on the host
            rows = []
            for i, req_id in enumerate(batch.req_ids[: batch.num_reqs]):
                capture = active.get(req_id)
                if capture is not None:
                    row, end = int(starts[i]), int(starts[i + 1])
                    rows.append((capture, row, end - row, int(batch.num_computed_tokens_cpu[i])))
            self._zwz_step = _StepRows(rows)
        return self._zwz_step

    # -- results --------------------------------------------------------------------------------------
    def zwz_attention_map(self, map_id: str, prefix_len: int, image_start: int, image_end: int) -> dict[str, Any]:
        """Head-summed image-span probabilities of this rank's heads, per layer; frees the map's captures.

        Returns ``{"layers": [...], "head_sums": (L, 2, T) nested lists, "num_heads": H}`` or ``{"error": why}``
        (lists: vLLM's RPC transport carries plain values, not numpy arrays).
        """
        question = self._zwz_captures.pop((map_id, "question"), None)
        generic = self._zwz_captures.pop((map_id, "generic"), None)
        try:
            return self._zwz_map(map_id, question, generic, prefix_len, image_start, image_end)
        finally:
            for capture in (question, generic):
                if capture is not None:
                    capture.release()

    def _zwz_map(self, map_id: str, question: _Capture | None, generic: _Capture | None, prefix_len: int,
                 image_start: int, image_end: int) -> dict[str, Any]:
        from zwz.kernels import image_span_attention

        if question is None or generic is None:
            return {"error": f"attention map {map_id}: its capture is gone (evicted or never armed)"}
        for capture in (question, generic):
            why = capture.missing()
            if why is not None:
                return {"error": f"attention map {map_id}: the {capture.spec.role} capture is incomplete ({why})"}
        if generic.spec.keep_from != prefix_len:
            return {"error": f"attention map {map_id}: generic keys start at {generic.spec.keep_from}, not {prefix_len}"}
        layers = [layer for layer in question.spec.layers if layer in self._zwz_layers]
        if not layers:
            return {"layers": [], "head_sums": [], "num_heads": 0}
        impl = self._zwz_layers[layers[0]].impl
        q = torch.stack([torch.stack([question.query[i], generic.query[i]]) for i in layers])  # (L, 2, Hq, D)
        k_question = torch.stack([question.keys[i] for i in layers]).transpose(1, 2)  # (L, Hkv, Sq_all, D)
        k_generic = torch.stack([generic.keys[i] for i in layers]).transpose(1, 2)  # (L, Hkv, Sg_suffix, D)
        probs = image_span_attention(q, k_question[:, :, :prefix_len], k_question[:, :, prefix_len:], k_generic,
                                     image_start, image_end, scale=float(impl.scale))  # (L, 2, T) head mean
        num_heads = int(q.shape[2])
        return {"layers": layers, "head_sums": (probs * num_heads).cpu().tolist(), "num_heads": num_heads}

    def zwz_attention_drop(self, map_id: str) -> int:
        """Free a map's captures without computing it (its request failed or was cancelled)."""
        dropped = 0
        for role in ("question", "generic"):
            capture = self._zwz_captures.pop((map_id, role), None)
            if capture is not None:
                capture.release()
                dropped += 1
        return dropped

    def zwz_attention_open(self) -> int:
        """Captures held in this worker (for tests and leak checks)."""
        return len(self._zwz_captures)
