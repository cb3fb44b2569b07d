"""Per-row decoding, pinned down where mutation testing (tools/mutation.sh decoding) found it loose.

Each test names the behaviour a user would see change: the distribution a temperature, top-k or top-p asks
for, a seed that reproduces, the held-back text that must come out at the end, and the exact deltas (text,
token ids, finish reason) a stream is made of.
"""

from __future__ import annotations

import torch

from zwz.server.engines.decoding import ReplayPrefix, RowSampler, RowState, RowTracker, _held_back, row_generator
from zwz.server.engines.request_policy import RowSettings

CPU = torch.device("cpu")
# "\ufffd" is what a byte-level tokenizer decodes half of a multi-byte character to.
VOCAB = {1: "ab", 2: "c", 3: "d", 5: "xSxS", 7: "\ufffd", 9: "<eos>"}


def decode(tokens: list[int]) -> str:
    return "".join(VOCAB[t] for t in tokens)


def track(settings: list[RowSettings], steps: list[list[int]]):
    """Feed ``steps`` (the newest token of every row, per step) through one tracker; return it and the deltas."""
    events: list[list[tuple]] = [[] for _ in settings]
    states = [RowState(settings=s, emit=lambda t, ids, f, i=i: events[i].append((t, ids, f)))
              for i, s in enumerate(settings)]
    tracker = RowTracker(states, decode, eos_ids={9})
    for newest in steps:
        tracker(torch.tensor(newest)[:, None], None)
    return tracker, states, events


def draws(row: RowSettings, logits: list[float], seeds: range) -> list[int]:
    """The token RowSampler forces for each seed (a one-row batch)."""
    out = []
    for seed in seeds:
        row.seed = seed
        scores = RowSampler([row], CPU)(None, torch.tensor([logits]))
        assert scores[0].isinf().sum() == len(logits) - 1  # one token left, the rest at -inf
        out.append(int(scores[0].argmax()))
    return out


def reference_draws(probs: list[float], seeds: range) -> list[int]:
    """What one multinomial draw from ``probs`` gives with each seed: the sampler must draw exactly this."""
    return [int(torch.multinomial(torch.tensor(probs), 1, generator=torch.Generator().manual_seed(s)))
            for s in seeds]


LOGITS = [2.0, 1.0, 0.5, 0.0, -1.0]


def test_temperature_divides_the_logits():
    seeds = range(60)
    for temperature in (0.5, 2.0):
        want = torch.softmax(torch.tensor(LOGITS) / temperature, dim=-1).tolist()
        assert draws(RowSettings(max_tokens=1, temperature=temperature), LOGITS, seeds) == reference_draws(want, seeds)


def test_top_k_keeps_exactly_k_tokens():
    seeds = range(60)
    kept = torch.softmax(torch.tensor(LOGITS[:3]), dim=-1).tolist() + [0.0, 0.0]
    got = draws(RowSettings(max_tokens=1, temperature=1.0, top_k=3), LOGITS, seeds)
    assert got == reference_draws(kept, seeds)
    assert set(got) == {0, 1, 2}


def test_top_k_1_is_greedy():
    assert set(draws(RowSettings(max_tokens=1, temperature=1.0, top_k=1), LOGITS, range(30))) == {0}


def test_top_p_stops_at_the_token_that_reaches_the_mass():
    # Two tokens of exactly 0.5 each: top_p=0.5 is reached by the first, so the second is never drawn.
    logits = [0.0, 0.0, float("-inf"), float("-inf")]
    assert len(set(draws(RowSettings(max_tokens=1, temperature=1.0, top_p=0.5), logits, range(30)))) == 1
    assert set(draws(RowSettings(max_tokens=1, temperature=1.0, top_p=0.51), logits, range(30))) == {0, 1}


def test_seed_reproduces_and_no_seed_varies():
    uniform = [[0.0] * 16]

    def sequence(seed: int | None) -> list[int]:
        sampler = RowSampler([RowSettings(max_tokens=64, temperature=1.0, seed=seed)], CPU)
        return [int(sampler(None, torch.tensor(uniform))[0].argmax()) for _ in range(64)]

    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)
    assert sequence(None) != sequence(None)  # 16**-64: a coincidence is out of the question


def test_end_token_flushes_the_held_back_text():
    # "ab" ends in "b", which may start the stop string "bc": held back, then due when the model ends.
    _, states, events = track([RowSettings(max_tokens=10, stop=("bc",))], [[1], [9]])
    assert events[0] == [("a", [1], None), ("b", [], "stop")]
    assert states[0].generated == 2


def test_stop_string_flushes_the_text_before_it():
    _, _, events = track([RowSettings(max_tokens=10, stop=("bc", "d"))], [[1], [3]])
    assert events[0] == [("a", [1], None), ("b", [], "stop")]  # "abd": cut at "d", the held "b" is answer


def test_the_first_stop_occurrence_cuts():
    _, _, events = track([RowSettings(max_tokens=10, stop=("S",))], [[5]])
    assert events[0] == [("x", [], "stop")]


def test_every_step_emits_its_token_even_without_new_text():
    _, _, events = track([RowSettings(max_tokens=3)], [[1], [7], [2]])
    assert events[0] == [("ab", [1], None), ("", [7], None), ("\ufffdc", [], "length")]


def test_cancelled_row_ends_with_an_empty_delta():
    tracker, states, events = track([RowSettings(max_tokens=10)], [[1]])
    states[0].cancelled = True
    assert tracker(torch.tensor([[2]]), None).tolist() == [True]
    assert events[0] == [("ab", [1], None), ("", [], "cancelled")]


def test_finish_all_closes_open_rows_with_their_held_text():
    tracker, states, events = track([RowSettings(max_tokens=10, stop=("bc",)), RowSettings(max_tokens=1)],
                                    [[1, 2]])
    tracker.finish_all()
    assert [s.finish_reason for s in states] == ["length", "length"]
    assert events[0] == [("a", [1], None), ("b", [], "length")]
    assert events[1] == [("c", [], "length")]  # finished before: finish_all leaves it alone
    tracker.finish_all("stop")
    assert states[0].finish_reason == "length" and len(events[0]) == 2


def test_row_generator_per_row():
    assert row_generator(RowSettings(max_tokens=1), CPU) is None  # greedy: no stream
    seeded = row_generator(RowSettings(max_tokens=1, temperature=0.5, seed=11), CPU)
    assert seeded.initial_seed() == 11 and seeded.device == CPU
    a, b = (row_generator(RowSettings(max_tokens=1, temperature=0.5), CPU) for _ in range(2))
    assert a.initial_seed() != b.initial_seed()  # unseeded rows draw fresh seeds


def test_sampler_uses_the_generators_it_is_given():
    rows = [RowSettings(max_tokens=8, temperature=1.0, seed=1)]
    given = RowSampler(rows, CPU, generators=[torch.Generator().manual_seed(2)])
    own = RowSampler([RowSettings(max_tokens=8, temperature=1.0, seed=2)], CPU)
    uniform = torch.zeros(1, 16)
    assert [int(given(None, uniform.clone())[0].argmax()) for _ in range(8)] == \
        [int(own(None, uniform.clone())[0].argmax()) for _ in range(8)]


def test_restart_replays_silently_then_goes_on():
    settings = RowSettings(max_tokens=10, temperature=1.0, seed=4)
    events: list[tuple] = []
    row = RowState(settings=settings, emit=lambda t, ids, f: events.append((t, ids, f)),
                   generator=row_generator(settings, CPU))
    first = int(torch.multinomial(torch.ones(16), 1, generator=row.generator))
    tracker = RowTracker([row], decode, eos_ids={9})
    tracker(torch.tensor([[1]]), None)
    tracker(torch.tensor([[2]]), None)
    assert events == [("ab", [1], None), ("c", [2], None)]
    row.restart()
    assert (row.replay, row.replayed, row.replaying) == (2, 0, True)
    # The generator is rewound to its seed: the next draw repeats the first one.
    assert row.generator.initial_seed() == 4
    assert int(torch.multinomial(torch.ones(16), 1, generator=row.generator)) == first
    # The replay forces the known tokens in order; other rows are left alone.
    other = RowState(settings=RowSettings(max_tokens=10), emit=lambda *a: None)
    replay = ReplayPrefix([row, other])
    scores = torch.zeros(2, 10)
    replay(None, scores)
    assert scores[0].argmax() == 1 and scores[0].isinf().sum() == 9 and torch.equal(scores[1], torch.zeros(10))
    tracker(torch.tensor([[1]]), None)
    replay(None, scores := torch.zeros(2, 10))
    assert scores[0].argmax() == 2
    tracker(torch.tensor([[2]]), None)
    assert (row.replaying, row.generated, len(events)) == (False, 2, 2)  # silent, not counted again
    tracker(torch.tensor([[3]]), None)
    assert events[2:] == [("d", [3], None)] and row.tokens == [1, 2, 3] and row.generated == 3


def test_held_back_is_the_longest_tail_that_starts_a_stop():
    assert _held_back("say abab", ("ababc",)) == 4
    assert _held_back("xaba", ("abc", "bax")) == 2  # "ba" begins "bax"; "a" alone begins "abc"
    assert _held_back("abc", ("abc",)) == 0  # the whole stop is found by the tracker, never held
    assert _held_back("a", ("abcdef",)) == 1
    assert _held_back("zzaab", ("abab",)) == 2  # the first "a" of the tail does not begin it, the next one does
    assert _held_back("xxaaba", ("abaab",)) == 3  # the earliest tail that fits wins, not the last "a"
    assert _held_back("", ("ab",)) == 0
