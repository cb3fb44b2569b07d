"""Per-row sampling and stopping inside one batched generate call."""

from __future__ import annotations

import torch

from zwz.server.engines.decoding import RowSampler, RowState, RowTracker, _held_back
from zwz.server.engines.request_policy import RowSettings

VOCAB = {1: "ab", 2: "c", 3: "d", 4: "é"[:1], 9: "<eos>"}


def decode(tokens):
    return "".join(VOCAB[t] for t in tokens)


def run(rows, steps):
    """Feed ``steps`` (one list of newest tokens per step) through a tracker; return events per row."""
    events = [[] for _ in rows]
    states = [RowState(settings=s, emit=lambda t, ids, f, i=i: events[i].append((t, f))) for i, s in enumerate(rows)]
    tracker = RowTracker(states, decode, eos_ids={9})
    done = None
    for newest in steps:
        done = tracker(torch.tensor(newest)[:, None], None)
    return states, events, done


def test_stop_string_spanning_tokens_is_never_streamed():
    states, events, done = run([RowSettings(max_tokens=10, stop=("bc",))], [[1], [1], [2], [3]])
    text = "".join(t for t, _ in events[0])
    assert text == "ab" + "a"  # "ab" + "ab" + "c": cut before "bc"; the held-back "b" never went out
    assert states[0].finish_reason == "stop"
    assert done.tolist() == [True]


def test_rows_finish_independently():
    rows = [RowSettings(max_tokens=2), RowSettings(max_tokens=10), RowSettings(max_tokens=10, stop=("d",))]
    states, events, done = run(rows, [[1, 1, 3], [2, 9, 1], [3, 3, 3]])
    assert [s.finish_reason for s in states] == ["length", "stop", "stop"]
    assert [s.generated for s in states] == [2, 2, 1]  # the end token counts; stopped rows take no more
    assert "".join(t for t, _ in events[0]) == "abc"
    assert "".join(t for t, _ in events[1]) == "ab"
    assert "".join(t for t, _ in events[2]) == ""
    assert [e[-1][1] for e in events] == ["length", "stop", "stop"]


def test_cancelled_row_stops():
    states, events, _ = run([RowSettings(max_tokens=10)], [[1]])
    states[0].cancelled = True
    tracker = RowTracker(states, decode, eos_ids={9})
    assert tracker(torch.tensor([[2]]), None).tolist() == [True]
    assert states[0].finish_reason == "cancelled"


def test_held_back_prefixes():
    assert _held_back("hello wor", ("world",)) == 3
    assert _held_back("hello", ("xyz",)) == 0
    assert _held_back("ab\ufffd", ()) == 1


def test_row_sampler_leaves_greedy_rows_and_respects_top_k_seed():
    scores = torch.tensor([[0.0, 5.0, 1.0, 2.0], [0.0, 5.0, 1.0, 2.0]])
    rows = [RowSettings(max_tokens=1), RowSettings(max_tokens=1, temperature=1.0, top_k=2, seed=0)]
    picks = set()
    for seed in range(20):
        rows[1].seed = seed
        out = RowSampler(rows, torch.device("cpu"))(None, scores.clone())
        assert torch.equal(out[0], scores[0])
        picks.add(int(out[1].argmax()))
        assert out[1].isinf().sum() == 3
    assert picks == {1, 3}  # only the top-2 tokens are ever drawn
    a = RowSampler(rows, torch.device("cpu"))(None, scores.clone())
    b = RowSampler(rows, torch.device("cpu"))(None, scores.clone())
    assert torch.equal(a, b)


def test_top_p_keeps_smallest_prefix():
    scores = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    rows = [RowSettings(max_tokens=1, temperature=1.0, top_p=0.5)]
    for seed in range(10):
        rows[0].seed = seed
        assert int(RowSampler(rows, torch.device("cpu"))(None, scores.clone())[0].argmax()) == 0
