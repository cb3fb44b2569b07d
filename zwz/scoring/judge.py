"""LLM-as-a-judge through any OpenAI-compatible ``/v1/chat/completions`` endpoint (paper App. 9.2-9.3, 10).

The judge sees the paper's App. 10 prompt and must answer ``\\boxed{Yes}`` or ``\\boxed{No}``. A reply without a
parseable verdict, an HTTP error or a transport failure (after retries) raises :class:`JudgeError`: a failed
judge is an error to report, never a silent 0. Verdicts are cached in a JSONL file so a rerun makes no new calls.

    judge = Judge("http://127.0.0.1:8000/v1", "Qwen3-30B-A3B", cache_path="judge_cache.jsonl")
    judge.judge("What color is the handle?", "blue", "It is navy blue.")          # -> True / False
    judge.judge_many([(question, gt, response), ...])                              # concurrent, deduplicated
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx

from zwz.endpoint import RETRY_STATUS, auth_headers, chat_url, error_message
from zwz.reply_format import boxed_contents

logger = logging.getLogger(__name__)

__all__ = ["JUDGE_PROMPT", "Judge", "JudgeError", "format_judge_prompt", "parse_verdict"]

# Paper App. 10, "Prompt of LLM-as-a-Judge", line by line as printed (the line break inside the parenthesis
# is the paper's own). Placeholders are filled by `format_judge_prompt`, not `str.format`, because the prompt
# itself contains braces (`\boxed{}`).
JUDGE_PROMPT = (
    "Your task is to judge whether the response expresses the same meaning as the answer of a question.\n"
    "The question is: {question}\n"
    "The answer is: {gt}\n"
    "The response is: {response}\n"
    "Please check and compare them and then judge. Consider them equivalent if:\n"
    "Different phrasings of the same answer (e.g., 5 people vs five people)\n"
    "Slight variations in description that refer to the same entity\n"
    "Minor differences in precision that don't change the core answer (such as two colors that are similar:\n"
    "e.g., brown and dark brown, white and off-white)\n"
    "Do NOT consider them equivalent if:\n"
    "They refer to different objects, numbers, or concepts\n"
    "They represent different interpretations of the question.\n"
    "If the response is correct, your output should be Yes. Otherwise, your output should be No.\n"
    "Put your output within \\boxed{}."
)
# Part of every cache key, so editing the prompt invalidates old verdicts.
_PROMPT_SHA = hashlib.sha256(JUDGE_PROMPT.encode()).hexdigest()[:16]
_PLACEHOLDER = re.compile(r"\{(question|gt|response)\}")
_TEXT_WRAP = re.compile(r"\\text(?:bf|rm|tt)?\s*\{([^{}]*)\}")


class JudgeError(RuntimeError):
    """The judge could not give a verdict (HTTP/transport failure or an unparseable reply)."""


def format_judge_prompt(question: str, gt: str, response: str) -> str:
    """Fill the App. 10 prompt; text inside the values is left as is (even if it contains ``{gt}``).

    >>> p = format_judge_prompt("How many fish?", "3", "three fish")
    >>> p.splitlines()[1:4]
    ['The question is: How many fish?', 'The answer is: 3', 'The response is: three fish']
    >>> p.endswith("Put your output within \\\\boxed{}.")
    True
    """
    values = {"question": question, "gt": gt, "response": response}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], JUDGE_PROMPT)


def parse_verdict(text: str) -> bool:
    """``\\boxed{Yes}`` -> True, ``\\boxed{No}`` -> False (case-insensitive; the last box wins).

    Anything else raises :class:`JudgeError`.

    >>> parse_verdict("Both say three. \\\\boxed{yes}")
    True
    >>> parse_verdict("<think>\\\\boxed{Yes}?</think> On reflection: \\\\boxed{\\\\text{No}}")
    False
    >>> parse_verdict("Yes")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    JudgeError: judge reply has no \\boxed{Yes|No}: 'Yes'
    """
    boxes = boxed_contents(text or "")
    if not boxes:
        raise JudgeError(f"judge reply has no \\boxed{{Yes|No}}: {text[-200:]!r}")
    last = _TEXT_WRAP.sub(r"\1", boxes[-1]).strip().strip("*.!\"' ").lower()
    if last == "yes":
        return True
    if last == "no":
        return False
    raise JudgeError(f"judge verdict is neither Yes nor No: {boxes[-1]!r}")


class Judge:
    """A binary equivalence judge behind an OpenAI-compatible chat endpoint, with an on-disk verdict cache.

    Calls use temperature 0. ``max_retries`` extra attempts (exponential backoff from ``retry_backoff``
    seconds) are made on transport errors, timeouts, 429 and 5xx; other HTTP errors and unparseable replies
    raise :class:`JudgeError` at once. The instance pickles (connections are opened per batch), so it can ride
    along with a reward function into worker processes.

    >>> Judge("http://127.0.0.1:9/v1", "judge-model").url
    'http://127.0.0.1:9/v1/chat/completions'
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 2,
        cache_path: str | os.PathLike[str] | None = None,
        max_tokens: int | None = None,
        concurrency: int = 8,
        retry_backoff: float = 0.5,
    ) -> None:
        if not base_url or not model:
            raise ValueError("Judge needs a base_url and a model name")
        if timeout <= 0 or max_retries < 0 or concurrency < 1 or retry_backoff < 0:
            raise ValueError("Judge: timeout > 0, max_retries >= 0, concurrency >= 1, retry_backoff >= 0")
        self.url = chat_url(base_url)
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        self.retry_backoff = retry_backoff
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.calls = 0  # HTTP requests made by this instance (retries included)
        self._cache: dict[str, bool] = self._load_cache()
        self._init_runtime()

    # -- pickling: drop the lock, keep configuration and cache -------------------------------------------
    def _init_runtime(self) -> None:
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def __repr__(self) -> str:
        return f"Judge(url={self.url!r}, model={self.model!r}, cache_path={self.cache_path!r})"

    # -- cache ---------------------------------------------------------------------------------------------
    def cache_key(self, question: str, gt: str, response: str) -> str:
        """Hash of (prompt version, model, question, gt, response)."""
        blob = json.dumps([_PROMPT_SHA, self.model, question, gt, response], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _load_cache(self) -> dict[str, bool]:
        cache: dict[str, bool] = {}
        if self.cache_path is None or not self.cache_path.exists():
            return cache
        with self.cache_path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                try:
                    row = json.loads(line)
                    cache[row["key"]] = bool(row["verdict"])
                except (ValueError, KeyError, TypeError):
                    # A run killed mid-write leaves a torn last line; skip it rather than refuse the cache.
                    logger.warning("judge cache %s: skipping unreadable line %d", self.cache_path, lineno)
        logger.info("judge cache %s: %d verdicts", self.cache_path, len(cache))
        return cache

    def _store(self, key: str, verdict: bool, output: str) -> None:
        with self._lock:
            self._cache[key] = verdict
            if self.cache_path is None:
                return
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            row = {"key": key, "verdict": verdict, "model": self.model, "output": output}
            with self.cache_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def cached(self, question: str, gt: str, response: str) -> bool | None:
        """The cached verdict, or None when this triple has not been judged."""
        return self._cache.get(self.cache_key(question, gt, response))

    # -- HTTP ----------------------------------------------------------------------------------------------
    def _payload(self, question: str, gt: str, response: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": format_judge_prompt(question, gt, response)}],
            "temperature": 0,
        }
        if self.max_tokens is not None:
            payload["max_tokens"] = self.max_tokens
        return payload

    @property
    def _headers(self) -> dict[str, str]:
        return auth_headers(self.api_key)

    def _read_reply(self, resp: httpx.Response) -> str | None:
        """Reply text on 200; None when the status is worth a retry; JudgeError otherwise."""
        if resp.status_code == 200:
            try:
                content = resp.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise JudgeError(f"judge reply is not a chat completion: {resp.text[:200]!r}") from exc
            if not isinstance(content, str):
                raise JudgeError("judge reply has no text content")
            return content
        if resp.status_code in RETRY_STATUS:
            return None
        raise JudgeError(f"judge returned {error_message(resp, status=resp.status_code)}")

    def _backoff(self, attempt: int) -> float:
        return min(self.retry_backoff * 2**attempt, 30.0)

    async def _acall(self, client: httpx.AsyncClient, payload: dict[str, Any]) -> str:
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            self.calls += 1
            try:
                reply = self._read_reply(await client.post(self.url, json=payload, headers=self._headers))
            except httpx.HTTPError as exc:
                reply, last = None, f"{type(exc).__name__}: {exc}"
            else:
                if reply is not None:
                    return reply
                last = "retryable HTTP status"
            if attempt < self.max_retries:
                await asyncio.sleep(self._backoff(attempt))
        raise JudgeError(f"judge call to {self.url} failed after {self.max_retries + 1} attempt(s): {last}")

    # -- public API ----------------------------------------------------------------------------------------
    def judge(self, question: str, gt: str, response: str) -> bool:
        """True when the judge says the response matches the ground truth (cached).

        One request path for sync and async callers: this runs :meth:`ajudge` (from inside a running event
        loop too), so retries and errors behave the same everywhere.
        """
        cached = self.cached(question, gt, response)
        if cached is not None:
            return cached
        return self.judge_many([(question, gt, response)])[0]

    async def ajudge(
        self, question: str, gt: str, response: str, *, client: httpx.AsyncClient | None = None
    ) -> bool:
        """Async :meth:`judge`; pass ``client`` to share connections across many calls."""
        key = self.cache_key(question, gt, response)
        if key in self._cache:
            return self._cache[key]
        payload = self._payload(question, gt, response)
        if client is None:
            async with httpx.AsyncClient(timeout=self.timeout) as own:
                output = await self._acall(own, payload)
        else:
            output = await self._acall(client, payload)
        verdict = parse_verdict(output)
        self._store(key, verdict, output)
        return verdict

    async def ajudge_many(self, triples: Iterable[Sequence[str]]) -> list[bool]:
        """Judge (question, gt, response) triples concurrently (at most ``concurrency`` in flight).

        Duplicate triples are sent once. Every call runs to completion (verdicts obtained are cached); then
        the first failure, if any, is raised as :class:`JudgeError`.
        """
        triples = [tuple(t) for t in triples]
        unique = list(dict.fromkeys(triples))
        sem = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(timeout=self.timeout) as client:

            async def one(t: tuple[str, ...]) -> bool:
                async with sem:
                    return await self.ajudge(t[0], t[1], t[2], client=client)

            outcomes = await asyncio.gather(*(one(t) for t in unique), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            logger.error("judge: %d of %d calls failed", len(failures), len(unique))
            raise failures[0]
        by_triple = dict(zip(unique, outcomes))
        return [by_triple[t] for t in triples]

    def judge_many(self, triples: Iterable[Sequence[str]]) -> list[bool]:
        """Synchronous front of :meth:`ajudge_many` (safe to call from inside a running event loop)."""
        triples = list(triples)
        if not triples:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.ajudge_many(triples))
        # Called from async code (a notebook, a server): run the batch on its own loop in a helper thread.
        result: list[bool] = []
        error: list[BaseException] = []

        def worker() -> None:
            try:
                result.extend(asyncio.run(self.ajudge_many(triples)))
            except BaseException as exc:  # re-raised in the caller's thread
                error.append(exc)

        thread = threading.Thread(target=worker, name="zwz-judge")
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return result

    def close(self) -> None:
        """Nothing to release: each batch opens and closes its own connections (kept for ``with Judge(...)``)."""

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
