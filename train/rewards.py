"""The RL reward's faces for TRL, verl and plain batches, over one core (:class:`zwz.scoring.RewardFn`).

The paper's tiers (App. 9.2): rule match (normalised/symbolic; the option letter for multiple choice) -> the
continuous counting reward (Eq. 3-4) when both sides parse as numbers -> an LLM judge (App. 10 prompt, any
OpenAI-compatible endpoint, verdicts cached) when rules cannot decide. Answers are read from
``<answer>...</answer>``, ``\\boxed{}`` or the text after the thinking (a ``</think>`` with or without its
``<think>``). A judge that fails raises; it never turns into a silent 0.

TRL (one machine)::

    from zwz.train.rewards import make_trl_reward
    GRPOTrainer(..., reward_funcs=[make_trl_reward(judge=Judge(url, model), length_cap=300)])

verl 0.9 (its ``reward.custom_reward_function`` loads this file by path; no torch, numpy or PIL needed here;
``zwz train verl`` writes these overrides)::

    reward.custom_reward_function.path=$(python -c "from zwz.train.rewards import REWARD_MODULE_PATH as p; print(p)")
    reward.custom_reward_function.name=compute_score      # compute_score_batch for verl's batch reward manager
    +reward.custom_reward_function.reward_kwargs.judge_base_url=http://judge:8000/v1
    +reward.custom_reward_function.reward_kwargs.judge_model=Qwen3-30B-A3B
    +reward.custom_reward_function.reward_kwargs.length_cap=300

Plain batches: ``score_batch(responses, answers, questions=..., options=...)``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import zwz.scoring  # noqa: F401
except ModuleNotFoundError as exc:  # loaded by path from a checkout in an environment without zwz installed
    _CHECKOUT = Path(__file__).resolve().parents[1]
    if exc.name != "zwz" or not (_CHECKOUT / "zwz" / "__init__.py").is_file():
        raise
    sys.path.append(str(_CHECKOUT))  # appended: the checkout's folders never shadow installed packages

from zwz.scoring import RewardFn, ScoreResult, extract_options, make_reward_fn  # noqa: E402
from zwz.scoring.rules import check_same_length  # noqa: E402
from zwz.scoring.scorer import completion_text  # noqa: E402

if TYPE_CHECKING:
    from zwz.scoring.judge import Judge

logger = logging.getLogger(__name__)

__all__ = [
    "OFFICIAL_LENGTH_CAP",
    "REWARD_MODULE_PATH",
    "VERL_BATCH_FUNCTION",
    "VERL_FUNCTION",
    "TrlReward",
    "compute_score",
    "compute_score_batch",
    "make_trl_reward",
    "score_batch",
]

# What launchers write into verl's config: this file and its hooks.
REWARD_MODULE_PATH = Path(__file__).resolve()
VERL_FUNCTION = "compute_score"
VERL_BATCH_FUNCTION = "compute_score_batch"

# The official reward (inclusionAI/Zooming-without-Zooming, EasyR1/examples/reward_function/perception.py,
# compute_score) gives accuracy 0 when ``len(answer_text) >= 300``, where answer_text is the stripped content
# of the reply's first <answer>...</answer>, or the whole stripped reply when it has no tag; it checks this
# before any matching. Here the same test runs on the <answer> content or else the text after the thinking
# (Qwen3's thinking is cut off by </think>, which that prompt format did not have), and it is opt-in.
OFFICIAL_LENGTH_CAP = 300

_JUDGE_KEYS = ("judge", "judge_base_url", "judge_model", "judge_api_key", "judge_cache_path", "judge_timeout",
               "judge_max_retries")  # fmt: skip
_JUDGES: dict[tuple[Any, ...], Judge] = {}


# ---------------------------------------------------------------------------------------------- item context
def item_context(question: Any, options: Any) -> tuple[str, list[str] | None]:
    """The question text and the option list, read from the question when no list is given.

    >>> item_context("Which?\\nA. wreath\\nB. crown", None)
    ('Which?\\nA. wreath\\nB. crown', ['wreath', 'crown'])
    >>> item_context(None, ("red", "blue"))
    ('', ['red', 'blue'])
    """
    text = "" if question is None else str(question)
    if options is not None and len(options) > 0:  # parquet readers may hand over arrays or tuples
        return text, [str(o) for o in options]
    return text, extract_options(text)


# ------------------------------------------------------------------------------------------------------- TRL
class TrlReward:
    """A TRL reward function: ``f(prompts, completions, completion_ids=None, **dataset_columns)``.

    TRL passes every dataset column (one value per completion) as a keyword list; ``answer_column`` holds
    the ground truth, ``question_column`` and ``options_column`` the context when the dataset has them (else
    the question is the prompt's last message). Returns ``list[float | None]``: None where rules could not
    decide and no judge is configured (TRL then warns about that row). Build it with :func:`make_trl_reward`.
    """

    # A plain class, not a dataclass: verl may exec this file without registering it in sys.modules, and
    # dataclasses look string annotations up there.
    __slots__ = ("answer_column", "options_column", "question_column", "reward")

    # TRL names a reward function's log columns after __name__.
    __name__ = "zwz_reward"

    def __init__(self, reward: RewardFn, answer_column: str = "answer", question_column: str = "question",
                 options_column: str = "options") -> None:  # fmt: skip
        self.reward = reward
        self.answer_column = answer_column
        self.question_column = question_column
        self.options_column = options_column

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.__getstate__() == other.__getstate__()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"TrlReward({self.reward!r}, answer_column={self.answer_column!r})"

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[str | Sequence[dict[str, Any]]],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        if self.answer_column not in columns:
            known = sorted(k for k in columns if k not in ("trainer_state", "log_extra", "log_metric", "environments"))
            raise KeyError(f"the dataset has no {self.answer_column!r} column for the reward (it has: {known})")
        answers = [str(a) for a in columns[self.answer_column]]
        n = len(completions)
        questions = columns.get(self.question_column) or [None] * n
        options = columns.get(self.options_column) or [None] * n
        check_same_length(prompts, completions, answers, questions, options)
        contexts = [
            item_context(q if q is not None else completion_text(p), o) for p, q, o in zip(prompts, questions, options)
        ]
        results = self.reward.score_many(
            [completion_text(c) for c in completions],
            answers,
            questions=[q for q, _ in contexts],
            options=[o for _, o in contexts],
        )
        log_metric: Callable[[str, float], None] | None = columns.get("log_metric")
        if callable(log_metric) and results:  # TRL >= 1.x: averaged into its logs per step
            log_metric("zwz_reward/unjudged", sum(r.method == "unjudged" for r in results) / len(results))
            log_metric("zwz_reward/judged", sum(r.method == "judge" for r in results) / len(results))
        return [r.score for r in results]


def make_trl_reward(
    judge: Judge | None = None,
    length_cap: int | None = None,
    answer_column: str = "answer",
    *,
    question_column: str = "question",
    options_column: str = "options",
    counting: bool = True,
) -> TrlReward:
    """A picklable TRL reward function over the paper's tiers (see :class:`TrlReward`).

    >>> f = make_trl_reward(length_cap=OFFICIAL_LENGTH_CAP)
    >>> f.__name__
    'zwz_reward'
    >>> f(["How many fish?"] * 3, ["4 or 5?</think>5", "<answer>4</answer>", [{"role": "assistant", "content": "B"}]],
    ...   answer=["5", "5", "B"])
    [1.0, 0.8, 1.0]
    >>> make_trl_reward(answer_column="")
    Traceback (most recent call last):
    ...
    ValueError: answer_column must be a non-empty column name
    """
    for name, value in (("answer_column", answer_column), ("question_column", question_column),
                        ("options_column", options_column)):  # fmt: skip
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty column name")
    reward = make_reward_fn(judge, counting=counting, length_cap=length_cap)
    return TrlReward(reward, answer_column, question_column, options_column)


# ------------------------------------------------------------------------------------------------------ verl
def _judge_from_kwargs(kwargs: dict[str, Any]) -> Judge | None:
    unknown = sorted(k for k in kwargs if k.startswith("judge") and k not in _JUDGE_KEYS)
    if unknown:  # a misspelt judge setting would otherwise silently leave the judge off
        raise ValueError(f"unknown judge setting(s) {unknown}; known: {list(_JUDGE_KEYS)}")
    if kwargs.get("judge") is not None:
        from zwz.scoring.judge import Judge

        judge = kwargs["judge"]
        if not isinstance(judge, Judge):
            raise TypeError(f"judge must be a Judge, got {type(judge).__name__}")
        return judge
    base_url, model = kwargs.get("judge_base_url"), kwargs.get("judge_model")
    if not base_url and not model:
        return None
    if not (base_url and model):
        raise ValueError("judge_base_url and judge_model must be given together")
    settings = {
        "api_key": kwargs.get("judge_api_key"),
        "cache_path": kwargs.get("judge_cache_path"),
        "timeout": float(kwargs.get("judge_timeout", 60.0)),
        "max_retries": int(kwargs.get("judge_max_retries", 2)),
    }
    key = (base_url, model, *settings.values())
    if key not in _JUDGES:  # one judge (and its cache) per worker process
        from zwz.scoring.judge import Judge

        _JUDGES[key] = Judge(base_url, model, **settings)
    return _JUDGES[key]


def _verl_reward(kwargs: dict[str, Any]) -> RewardFn:
    cap = kwargs.get("length_cap")
    return make_reward_fn(_judge_from_kwargs(kwargs), length_cap=None if cap is None else int(cap))


def _verl_context(ground_truth: Any, extra_info: dict[str, Any] | None) -> tuple[str, str, list[str] | None]:
    info = extra_info or {}
    question, options = item_context(info.get("question") or info.get("prompt"), info.get("options"))
    return str(ground_truth), question, options


def _as_verl(result: ScoreResult, return_dict: bool) -> float | dict[str, Any]:
    if result.method == "unjudged":
        logger.warning("reward undecided by rules and no judge configured: scoring 0.0 (flagged unjudged)")
    score = 0.0 if result.score is None else float(result.score)
    if return_dict:  # verl logs every key; strings are skipped by its metric aggregation
        return {"score": score, "method": result.method, "unjudged": result.method == "unjudged"}
    return score


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> float | dict[str, Any]:
    """verl reward hook (App. 9.2): [length cap] -> rule -> counting reward -> judge (if configured).

    ``extra_info`` may carry ``question`` (or ``prompt``) and ``options``. Judge: ``judge=Judge(...)`` or
    ``judge_base_url``/``judge_model`` (+ ``judge_api_key``, ``judge_cache_path``, ``judge_timeout``,
    ``judge_max_retries``); ``length_cap=300`` as the official code. Undecided without a judge scores 0.0 with a
    warning; ``return_dict=True`` returns ``{"score", "method", "unjudged"}`` so verl logs the flag. A failing
    judge raises. Other keyword arguments verl adds are ignored.

    >>> compute_score("zoomworld", "<think>about 9</think><answer>8</answer>", "10")
    0.8
    >>> compute_score("zoomworld", "I count 4 or 5 fish.</think>5", "5")
    1.0
    >>> compute_score("zoomworld", "teal", "blue", return_dict=True)
    {'score': 0.0, 'method': 'unjudged', 'unjudged': True}
    """
    gold, question, options = _verl_context(ground_truth, extra_info)
    result = _verl_reward(kwargs).score(solution_str, gold, question=question, options=options)
    return _as_verl(result, bool(kwargs.get("return_dict", False)))


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[dict[str, Any] | None] | None = None,
    **kwargs: Any,
) -> list[float | dict[str, Any]]:
    """verl batch reward hook: like :func:`compute_score`, with the judge calls made concurrently.

    >>> compute_score_batch(["zw", "zw"], ["(B)", "7"], ["B", "7"])
    [1.0, 1.0]
    """
    infos = extra_infos if extra_infos is not None else [None] * len(solution_strs)
    check_same_length(data_sources, solution_strs, ground_truths, infos)
    contexts = [_verl_context(gt, info) for gt, info in zip(ground_truths, infos)]
    golds, questions, options = ([c[k] for c in contexts] for k in range(3))
    results = _verl_reward(kwargs).score_many(list(solution_strs), golds, questions=questions, options=options)
    return [_as_verl(r, bool(kwargs.get("return_dict", False))) for r in results]


# ---------------------------------------------------------------------------------------------------- plain
def score_batch(
    responses: Sequence[str | Sequence[dict[str, Any]]],
    answers: Sequence[Any],
    *,
    questions: Sequence[str | None] | None = None,
    options: Sequence[Sequence[str] | None] | None = None,
    judge: Judge | None = None,
    length_cap: int | None = None,
    counting: bool = True,
) -> list[float | None]:
    """Rewards for a batch of replies: ``list[float | None]``, None where undecided and no judge is given.

    Options missing for an item are read from its question, as the other faces do.

    >>> score_batch(["4 or 5?</think>5", "\\\\boxed{9}", "navy", "x" * 300], ["5", "10", "blue", "x" * 300],
    ...             length_cap=OFFICIAL_LENGTH_CAP)
    [1.0, 0.9, None, 0.0]
    """
    n = len(responses)
    qs = questions if questions is not None else [None] * n
    opts = options if options is not None else [None] * n
    check_same_length(responses, answers, qs, opts)
    contexts = [item_context(q, o) for q, o in zip(qs, opts)]
    reward = make_reward_fn(judge, counting=counting, length_cap=length_cap)
    results = reward.score_many(
        [completion_text(r) for r in responses],
        [str(a) for a in answers],
        questions=[q for q, _ in contexts],
        options=[o for _, o in contexts],
    )
    return [r.score for r in results]
