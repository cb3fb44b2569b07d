"""Per-row decoding inside one batched ``generate`` call.

transformers applies one generation config to a whole batch; requests batched together still need their
own temperature, top-p, seed, stop strings and token limit. ``RowSampler`` samples rows that asked for
sampling (greedy rows pass through untouched, so greedy output equals a plain ``generate``), and
``RowTracker`` - a stopping criterion, called once per step with the new tokens - decides per row when
to stop and hands out text deltas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor, StoppingCriteria

from zwz.server.engines.base import FinishReason
from zwz.server.engines.request_policy import RowSettings


class RowSampler(LogitsProcessor):
    """Samples the rows with temperature > 0 and forces the chosen token (so the caller's argmax keeps it)."""

    def __init__(self, rows: Sequence[RowSettings], device: torch.device) -> None:
        self.rows = list(rows)
        self.generators: list[torch.Generator | None] = []
        for row in self.rows:
            if row.temperature > 0:
                gen = torch.Generator(device=device)
                if row.seed is None:
                    gen.seed()
                else:
                    gen.manual_seed(row.seed)
                self.generators.append(gen)
            else:
                self.generators.append(None)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for i, (row, gen) in enumerate(zip(self.rows, self.generators)):
            if gen is None:
                continue
            logits = scores[i].float() / row.temperature  # (V,)
            if row.top_k > 0:
                kth = torch.topk(logits, min(row.top_k, logits.numel())).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            if row.top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True)
                # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
                drop = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= row.top_p
                sorted_probs = sorted_probs.masked_fill(drop, 0.0)
                probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
            token = torch.multinomial(probs, 1, generator=gen)
            scores[i] = float("-inf")
            scores[i, token] = 0.0
        return scores


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters might still become a stop string (or are an incomplete character)."""
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    if text.endswith("\ufffd"):  # a multi-byte character split across tokens
        hold = max(hold, 1)
    return hold


@dataclass
class RowState:
    settings: RowSettings
    emit: Callable[[str, list[int], FinishReason | None], None]
    tokens: list[int] = field(default_factory=list)
    generated: int = 0  # tokens produced, the end-of-sequence token included (as OpenAI and vLLM count)
    emitted_chars: int = 0
    finish_reason: FinishReason | None = None
    cancelled: bool = False


class RowTracker(StoppingCriteria):
    """Per-row stop logic and streaming, evaluated on the newest token of every row at each step."""

    def __init__(self, rows: Sequence[RowState], decode: Callable[[list[int]], str], eos_ids: set[int]) -> None:
        self.rows = list(rows)
        self.decode = decode
        self.eos_ids = eos_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        newest = input_ids[:, -1].tolist()
        for row, token in zip(self.rows, newest):
            if row.finish_reason is None:
                self._advance(row, token)
        return torch.tensor([row.finish_reason is not None for row in self.rows], device=input_ids.device)

    def _advance(self, row: RowState, token: int) -> None:
        if row.cancelled:
            self._finish(row, "cancelled", final_text=None)
            return
        row.generated += 1
        if token in self.eos_ids:
            self._finish(row, "stop", final_text=self.decode(row.tokens))
            return
        row.tokens.append(token)
        text = self.decode(row.tokens)
        for stop in row.settings.stop:
            at = text.find(stop)
            if at >= 0:
                self._finish(row, "stop", final_text=text[:at])
                return
        if len(row.tokens) >= row.settings.max_tokens:
            self._finish(row, "length", final_text=text)
            return
        safe = len(text) - _held_back(text, row.settings.stop)
        if safe > row.emitted_chars:
            row.emit(text[row.emitted_chars : safe], [token], None)
            row.emitted_chars = safe
        else:
            row.emit("", [token], None)

    def _finish(self, row: RowState, reason: FinishReason, final_text: str | None) -> None:
        row.finish_reason = reason
        rest = "" if final_text is None else final_text[row.emitted_chars :]
        row.emitted_chars += len(rest)
        row.emit(rest, [], reason)

    def finish_all(self, reason: FinishReason = "length") -> None:
        """Close rows that ``generate`` stopped without our say (its own max length)."""
        for row in self.rows:
            if row.finish_reason is None:
                self._finish(row, reason, final_text=self.decode(row.tokens))
