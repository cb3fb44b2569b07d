"""Per-row decoding inside one batched ``generate`` call.

transformers applies one generation config to a whole batch; requests batched together still need their
own temperature, top-p, seed, stop strings and token limit. ``RowSampler`` samples rows that asked for
sampling (greedy rows pass through untouched, so greedy output equals a plain ``generate``), and
``RowTracker`` - a stopping criterion, called once per step with the new tokens - decides per row when
to stop and hands out text deltas. A row that must run again after its batch failed (``RowState.restart``)
re-produces the tokens it already has, forced by ``ReplayPrefix`` and silent in the tracker, then goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor, StoppingCriteria

from zwz.server.engines.base import FinishReason
from zwz.server.engines.request_policy import RowSettings


def row_generator(row: RowSettings, device: torch.device) -> torch.Generator | None:
    """A sampled row's own random stream (None for a greedy row); the engine makes it when the request
    arrives, so a seed torch refuses fails that request alone, never the batch it would have joined."""
    if row.temperature <= 0:
        return None
    gen = torch.Generator(device=device)
    if row.seed is None:
        gen.seed()
    else:
        gen.manual_seed(row.seed)
    return gen


def _forced(scores: torch.FloatTensor, i: int, token: int) -> None:
    scores[i] = float("-inf")
    scores[i, token] = 0.0


class RowSampler(LogitsProcessor):
    """Samples the rows with temperature > 0 and forces the chosen token (so the caller's argmax keeps it).

    ``generators``: each row's stream from ``row_generator`` (made here from the settings when not given).
    """

    def __init__(self, rows: Sequence[RowSettings], device: torch.device,
                 generators: Sequence[torch.Generator | None] | None = None) -> None:
        self.rows = list(rows)
        self.generators = list(generators) if generators is not None else [row_generator(r, device) for r in self.rows]

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
            _forced(scores, i, int(token))
        return scores


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters might still become a stop string (or are an incomplete character).

    The longest tail of ``text`` that begins a stop: only the positions holding the stop's first character
    are tried, so a step costs about one scan of the stop's length, not its square.
    """
    hold = 0
    for stop in stops:
        at = text.find(stop[0], max(0, len(text) - len(stop) + 1))
        while at != -1:
            if stop.startswith(text[at:]):
                hold = max(hold, len(text) - at)
                break
            at = text.find(stop[0], at + 1)
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
    generator: torch.Generator | None = None  # a sampled row's stream (``row_generator``)
    replay: int = 0  # tokens of ``tokens`` to re-produce silently before going on (after ``restart``)
    replayed: int = 0

    def restart(self) -> None:
        """Run again from the prompt (its batch failed): re-produce the tokens already handed out, exactly,
        from a generator rewound to its seed, so the answer goes on as if nothing had happened."""
        self.replay, self.replayed = len(self.tokens), 0
        if self.generator is not None:
            self.generator = torch.Generator(device=self.generator.device).manual_seed(self.generator.initial_seed())

    @property
    def replaying(self) -> bool:
        return self.replayed < self.replay


class ReplayPrefix(LogitsProcessor):
    """Forces a restarted row's known tokens (after ``RowSampler`` drew, so its generator keeps step)."""

    def __init__(self, rows: Sequence[RowState]) -> None:
        self.rows = list(rows)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for i, row in enumerate(self.rows):
            if row.replaying:
                _forced(scores, i, row.tokens[row.replayed])
        return scores


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
        if row.replaying:  # counted and handed out before the restart
            row.replayed += 1
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
