"""Intervals over resampled whole groups and paired differences, on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from damagenet.evaluation.intervals import (
    MAX_LEVELS,
    Interval,
    _Table,
    grouped_interval,
    groups_for,
    paired_difference,
    spatial_blocks,
)
from damagenet.evaluation.scores import average_precision, f1_at, roc_auc


def _clustered(n_groups: int = 12, per_group: int = 200, seed: int = 0):
    """Units whose groups differ: each group's damage stands out by its own amount, so units of
    one group are correlated (as neighbouring patches of one town are)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n_groups * per_group) < 0.3).astype(int)
    groups = np.repeat(np.arange(n_groups), per_group)
    shift = rng.normal(1.0, 1.2, n_groups)[groups]
    return y, rng.normal(0, 1, len(y)) + shift * y, groups


def test_grouped_interval_is_wider_than_resampling_units_one_by_one():
    y, s, groups = _clustered()
    grouped = grouped_interval(roc_auc, y, s, groups, n_resamples=400)
    per_unit = grouped_interval(roc_auc, y, s, np.arange(len(y)), n_resamples=400)
    assert grouped.value == per_unit.value == pytest.approx(roc_auc(y, s))
    assert grouped.low < grouped.value < grouped.high
    assert (grouped.high - grouped.low) > 2 * (per_unit.high - per_unit.low)
    assert grouped.groups == 12 and grouped.resamples == 400


def test_paired_difference_of_identical_scores_is_exactly_zero():
    y, s, groups = _clustered(seed=1)
    for metric in (roc_auc, average_precision, f1_at(0.7)):
        diff = paired_difference(metric, y, s, s.copy(), groups, n_resamples=200)
        assert (diff.value, diff.low, diff.high) == (0.0, 0.0, 0.0)


def test_paired_difference_is_narrower_than_the_separate_intervals():
    """Both models gain and lose on the same towns: the difference is much surer than either."""
    y, s, groups = _clustered(seed=2)
    better = s + 0.3 * y
    diff = paired_difference(roc_auc, y, better, s, groups, n_resamples=400)
    a = grouped_interval(roc_auc, y, better, groups, n_resamples=400)
    assert diff.value == pytest.approx(a.value - roc_auc(y, s))
    assert 0 < diff.low < diff.value < diff.high
    assert diff.high - diff.low < (a.high - a.low) / 2


def test_same_seed_same_interval_other_seed_other_draws():
    y, s, groups = _clustered(seed=3)
    first = grouped_interval(roc_auc, y, s, groups, n_resamples=300, seed=5)
    assert grouped_interval(roc_auc, y, s, groups, n_resamples=300, seed=5) == first
    assert grouped_interval(roc_auc, y, s, groups, n_resamples=300, seed=6) != first


def test_resamples_holding_one_class_are_skipped():
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(4), 50)
    y = np.where(groups == 0, 1, 0)  # only the first town holds damage
    y[:10] = 0
    s = rng.random(200) + y
    ci = grouped_interval(roc_auc, y, s, groups, n_resamples=500)
    # a resample without town 0 has no damage: (3/4)^4 of them, about 32 %
    assert 250 < ci.resamples < 420 and ci.low is not None
    few = grouped_interval(roc_auc, y, s, groups, n_resamples=20)
    assert few.low is None and few.value is not None and "both classes" in few.note


def test_one_group_gives_no_interval_and_says_why():
    y, s, _ = _clustered(seed=5)
    ci = grouped_interval(roc_auc, y, s, np.zeros(len(y)))
    assert ci.value == pytest.approx(roc_auc(y, s)) and ci.low is None and ci.high is None
    assert "one group" in ci.note
    assert ci.as_dict() == {"value": ci.value, "low": None, "high": None}
    assert grouped_interval(roc_auc, np.zeros(5), np.arange(5.0), np.arange(5)) == Interval(
        None, groups=5, note="the units hold one class"
    )


def test_three_cities_give_an_interval():
    """3 groups have 10 distinct resamples; the percentile interval stays defined."""
    y, s, groups = _clustered(n_groups=3, seed=6)
    ci = grouped_interval(roc_auc, y, s, groups, n_resamples=1000)
    assert ci.low <= ci.value <= ci.high and ci.groups == 3


def test_spatial_blocks_are_640_m_squares():
    x = np.array([0.0, 100.0, 639.0, 640.0, 1300.0, 5.0])
    y = np.array([0.0, 600.0, 10.0, 10.0, 10.0, 700.0])
    ids = spatial_blocks(x, y)
    assert ids[0] == ids[1] == ids[2]
    assert len({ids[0], ids[3], ids[4], ids[5]}) == 4
    with pytest.raises(ValueError):
        spatial_blocks(x, y, 0)


def test_one_aoi_is_grouped_by_blocks_several_by_aoi():
    lat = 50.5 + np.arange(40) * 0.001  # 111 m apart: 4.4 km north-south
    lon = np.full(40, 30.2)
    one = groups_for(np.full(40, "bucha"), lon, lat)
    assert one.by == "block" and one.block_m == 640.0
    assert 6 <= one.describe()["groups"] <= 8  # 4.4 km in 640 m blocks
    several = groups_for(np.repeat(["a", "b"], 20), lon, lat)
    assert several.by == "aoi" and several.describe()["groups"] == 2
    assert groups_for(np.full(40, "bucha"), None, None).describe()["groups"] == 1


def test_many_distinct_scores_keep_threshold_counts_exact():
    """Scores binned to quantile levels for the resamples never straddle the threshold."""
    rng = np.random.default_rng(7)
    n = 3 * MAX_LEVELS
    y = (rng.random(n) < 0.2).astype(int)
    s = rng.random(n) + 0.3 * y
    groups = rng.integers(0, 6, n)
    codes = np.unique(groups, return_inverse=True)[1]
    metric = f1_at(0.61234)
    table = _Table.build(y, s, codes, 6, [metric.threshold])
    assert len(table.levels) <= MAX_LEVELS + 1
    every_group_once = np.ones((1, 6))
    assert table.evaluate(metric, every_group_once)[0] == pytest.approx(metric(y, s), abs=1e-12)
    assert abs(table.evaluate(roc_auc, every_group_once)[0] - roc_auc(y, s)) < 1e-3
