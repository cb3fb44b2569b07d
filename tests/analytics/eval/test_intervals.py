"""The eval report's 95% intervals against published values, and their coverage by simulation."""

from __future__ import annotations

import doctest
import random

import pytest

import zwz.analytics.eval.intervals as intervals
from zwz.analytics.eval.intervals import Z95, mean_interval, newcombe_independent, newcombe_paired, wilson


def test_doctests():
    result = doctest.testmod(intervals)
    assert result.attempted > 0 and result.failed == 0


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat. Med. 17:857-872, Table II,
# method 3 (Wilson's score interval without continuity correction).
@pytest.mark.parametrize("k, n, low, high", [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605),
                                             (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_matches_newcombe_table_ii(k, n, low, high):
    r = wilson(k, n)
    assert (round(r.low, 4), round(r.high, 4)) == (low, high) and r.estimate == k / n and r.n == n


def test_wilson_edges_and_errors():
    assert wilson(10, 10).high == 1.0 and round(wilson(10, 10).low, 4) == 0.7225
    assert Z95 == pytest.approx(1.959964, abs=1e-6)
    with pytest.raises(ValueError):
        wilson(1, 0)
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_newcombe_independent_matches_the_published_example():
    # Newcombe (1998), "Interval estimation for the difference between independent proportions", Stat. Med.
    # 17:873-890: 56/70 - 48/80, method 10: 0.0524 to 0.3339.
    r = newcombe_independent(56, 70, 48, 80)
    assert (round(r.low, 4), round(r.high, 4)) == (0.0524, 0.3339)


def test_newcombe_paired():
    # Altman et al. (2000), Statistics with Confidence, Table 6.2 (14 both, 5 first only, 0 second only, 22
    # neither), the example of biostatUZH::confIntPairedProportion (Newcombe 1998, method 10).
    first, second = [1] * 19 + [0] * 22, [1] * 14 + [0] * 27
    r = newcombe_paired(first, second)
    assert (round(r.estimate, 4), round(r.low, 4), round(r.high, 4), r.n) == (0.122, 0.0115, 0.2265, 41)
    # No discordant pair: the estimate is 0 but the interval is not zero-width (a Wald interval would be).
    same = newcombe_paired([1, 0] * 10, [1, 0] * 10)
    assert same.estimate == 0 and same.low < -0.05 and same.high > 0.05
    # phi corrected to 0 (0 <= ad - bc <= n/2): the independent interval on the two marginals.
    a, b = [1, 1, 0, 0, 1, 0], [1, 0, 1, 0, 0, 0]
    paired, indep = newcombe_paired(a, b), newcombe_independent(sum(a), 6, sum(b), 6)
    assert (paired.low, paired.high) == pytest.approx((indep.low, indep.high))
    with pytest.raises(ValueError, match="0 or 1"):
        newcombe_paired([0.5], [1])
    with pytest.raises(ValueError, match="not pairs"):
        newcombe_paired([1, 0], [1])


def test_mean_interval():
    r = mean_interval([0.1, 0.2, 0.3, 0.4])  # sd 0.1291: 0.25 +- 1.96 * 0.1291 / 2
    assert (round(r.low, 4), round(r.high, 4)) == (0.1235, 0.3765)
    assert mean_interval([0.5]).low is None
    assert mean_interval([0.0, 0.0, 0.3], bounds=(0.0, 1.0)).low == 0.0


def test_the_intervals_cover_95_percent():
    """Simulated: a wrong formula (a missing square root, z = 1) would cover far from 95%."""
    rng = random.Random(0)
    trials, hit_wilson, hit_paired, hit_mean = 2000, 0, 0, 0
    for _ in range(trials):
        # 40 items: global right with p 0.5; regional right with p 0.9 when global is, 0.5 when not (gap 0.2).
        g = [int(rng.random() < 0.5) for _ in range(40)]
        r = [int(rng.random() < (0.9 if x else 0.5)) for x in g]
        w, d = wilson(sum(g), 40), newcombe_paired(r, g)
        hit_wilson += w.low <= 0.5 <= w.high
        hit_paired += d.low <= 0.2 <= d.high
        m = mean_interval([rng.random() for _ in range(40)])
        hit_mean += m.low <= 0.5 <= m.high
    for hits in (hit_wilson, hit_paired, hit_mean):
        assert 0.92 <= hits / trials <= 0.985
