"""mnistbench.stats against scipy and statsmodels on known inputs: every interval and p-value the
benchmark, the gate and the leaderboard state."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.proportion import proportion_confint

from mnistbench import stats

RNG = np.random.default_rng(0)
A = [0.9781, 0.9766, 0.9752, 0.9790, 0.9744, 0.9771, 0.9760, 0.9783, 0.9749, 0.9768]
B = [0.9731, 0.9744, 0.9718, 0.9760, 0.9722, 0.9739, 0.9751, 0.9727, 0.9748, 0.9730]


def test_the_seed_interval_is_students_t_from_scipy():
    ci = stats.seed_interval(A)
    mean, sem = np.mean(A), scipy_stats.sem(A)
    low, high = scipy_stats.t.interval(0.95, len(A) - 1, loc=mean, scale=sem)
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12)


def test_with_every_seed_alike_the_total_interval_is_the_binomial_normal_interval():
    """No spread over seeds: what is left is the test set's sampling, sqrt(p(1 - p) / N)."""
    row = RNG.random(10_000) < 0.976
    correct = np.tile(row, (5, 1))
    ci = stats.total_interval(correct)
    low, high = proportion_confint(row.sum(), row.size, alpha=0.05, method="normal")
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=2e-6)  # t at 9,999 df, ddof 1: a hair wider


def test_the_total_interval_covers_the_spread_a_two_level_bootstrap_finds():
    """Seeds that differ, on images of various difficulty: the analytic sum against resampling both."""
    difficulty = RNG.random(2_000) * 0.2  # each image's chance of being missed
    skill = RNG.normal(0, 0.01, size=(8, 1))
    correct = RNG.random((8, 2_000)) > difficulty + skill
    means = []
    for _ in range(400):
        seeds, images = RNG.integers(0, 8, 8), RNG.integers(0, 2_000, 2_000)
        means.append(correct[np.ix_(seeds, images)].mean())
    ci = stats.total_interval(correct)
    boot_half = 1.96 * np.std(means, ddof=1)
    assert (ci.high - ci.low) / 2 == pytest.approx(boot_half, rel=0.15)
    seeds_only_half = 1.96 * correct.mean(1).std(ddof=1) / np.sqrt(8)
    assert (ci.high - ci.low) / 2 > seeds_only_half  # the test set's share is there


def test_with_the_test_set_term_gone_the_total_interval_is_the_seeds_t_interval():
    """Seeds that get different shares right while every image's mean correctness is the same: no
    test-set term is left, and Welch-Satterthwaite gives the seeds' n - 1 degrees of freedom."""
    correct = np.array([[1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1]], dtype=bool)
    assert stats.image_variance(correct) == 0.0  # each image: right for 2 seeds of 4
    ci, seeds = stats.total_interval(correct), stats.seed_interval(correct.mean(1))
    assert (ci.low, ci.high) == pytest.approx((seeds.low, seeds.high), abs=1e-12)


def test_a_comparison_is_welchs_test_and_interval_from_scipy():
    c = stats.compare(A, B)
    welch = scipy_stats.ttest_ind(A, B, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert c.difference == pytest.approx(np.mean(A) - np.mean(B), abs=1e-15)
    assert c.p == pytest.approx(welch.pvalue, abs=1e-15)
    assert (c.seeds.low, c.seeds.high) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_p_outperform_is_mann_whitneys_u_over_the_pairs_ties_half():
    assert stats.p_outperform([3, 4], [1, 2]) == 1.0
    assert stats.p_outperform([1, 2], [3, 4]) == 0.0
    assert stats.p_outperform([1, 2], [2, 1]) == 0.5  # 1 tie and 1 win of 4 pairs, ... symmetric
    u = scipy_stats.mannwhitneyu(A, B).statistic
    assert stats.p_outperform(A, B) == u / 100
    c = stats.compare(A, B)
    assert c.p_a_better == u / 100 and c.p_a_better_interval.low <= c.p_a_better <= c.p_a_better_interval.high
    assert stats.compare(A, B) == c  # a seeded bootstrap: the same interval every run


def test_the_paired_test_set_term_cancels_images_both_cells_get_alike():
    """Two cells that differ only on 30 images: the test set's share of their difference is small,
    far smaller than two independent binomials' would be."""
    base = RNG.random(10_000) < 0.97
    better = base.copy()
    better[np.flatnonzero(~base)[:30]] = True
    a, b = np.tile(better, (5, 1)), np.tile(base, (5, 1))
    c = stats.compare(a.mean(1) + RNG.normal(0, 1e-4, 5), b.mean(1) + RNG.normal(0, 1e-4, 5), a, b)
    unpaired = 1.96 * np.sqrt(2 * 0.97 * 0.03 / 10_000)
    assert (c.total.high - c.total.low) / 2 < unpaired / 2
    assert 0.003 - 0.002 < c.difference < 0.003 + 0.002


def test_against_one_draw_the_test_is_one_sample_welchs_with_that_sides_variance_zero():
    """A deterministic cell is one value: the seeds' test is scipy's one-sample t, which is Welch's
    with that side's variance 0 (its df then the other side's n - 1); either order."""
    draw = 0.9750
    c, reverse = stats.compare([draw], B), stats.compare(B, [draw])
    one = scipy_stats.ttest_1samp(B, draw)
    ci = one.confidence_interval(0.95)  # of mean(B)
    welch = scipy_stats.ttest_ind_from_stats(draw, 0.0, 2, np.mean(B), np.std(B, ddof=1), len(B), equal_var=False)
    assert c.difference == pytest.approx(draw - np.mean(B), abs=1e-15) and c.p == pytest.approx(one.pvalue, abs=1e-15)
    assert c.p == pytest.approx(welch.pvalue, rel=1e-12)
    assert (c.seeds.low, c.seeds.high) == pytest.approx((draw - ci.high, draw - ci.low), abs=1e-12)
    assert (reverse.seeds.low, reverse.seeds.high) == pytest.approx((ci.low - draw, ci.high - draw), abs=1e-12)
    assert c.seeds.low < c.difference < c.seeds.high
    assert reverse.p == c.p and reverse.p_a_better == pytest.approx(1 - c.p_a_better, abs=1e-15)
    assert c.p_a_better == np.mean(np.array(B) < draw)
    assert c.p_a_better_interval.low <= c.p_a_better <= c.p_a_better_interval.high
    assert stats.compare([draw], B) == c  # seeded: the same every run


def test_against_one_draw_the_total_interval_has_no_seed_term_on_that_side():
    base = RNG.random((1, 2_000)) < 0.97
    seeds = RNG.random((6, 2_000)) < 0.96
    c = stats.compare(base.mean(1), seeds.mean(1), base, seeds)
    paired = base.mean(0) - seeds.mean(0)
    half = stats.t_half_width([(seeds.mean(1).var(ddof=1) / 6, 5), (paired.var(ddof=1) / 2_000, 1_999)])
    assert (c.total.low, c.total.high) == pytest.approx((c.difference - half, c.difference + half), abs=1e-15)
    assert c.total.low < c.seeds.low and c.seeds.high < c.total.high


def test_two_draws_differ_exactly_on_this_test_set_and_only_its_sampling_can_tie_them():
    a, b = RNG.random((1, 10_000)) < 0.97, RNG.random((1, 10_000)) < 0.96
    c = stats.compare(a.mean(1), b.mean(1), a, b)
    assert c.seeds.low == c.seeds.high == c.difference and c.p == 0.0
    assert c.p_a_better_interval.low == c.p_a_better_interval.high == c.p_a_better == 1.0
    paired = a[0].astype(float) - b[0]
    half = 1.96 * paired.std(ddof=1) / 100
    assert (c.total.high - c.total.low) / 2 == pytest.approx(half, rel=1e-3)


def test_holm_is_statsmodels_holm():
    p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.0001]
    assert stats.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]), abs=1e-15)


def test_welch_from_summary_statistics_is_scipys_on_the_raw_values():
    p = stats.welch_from_stats(np.mean(A), np.std(A, ddof=1), 10, np.mean(B), np.std(B, ddof=1), 10)
    assert p == pytest.approx(scipy_stats.ttest_ind(A, B, equal_var=False).pvalue, abs=1e-12)


@pytest.mark.parametrize("n, sd, alpha", [(10, 0.0014, 0.01), (10, 0.0023, 0.01), (5, 0.001, 0.05)])
def test_the_detectable_drop_is_statsmodels_power_solved_for_the_effect(n, sd, alpha):
    """Equal n and sd: Welch's degrees of freedom are the pooled test's, 2n - 2, so statsmodels'
    two-sample t power gives the same effect size."""
    effect = TTestIndPower().solve_power(nobs1=n, alpha=alpha, power=0.9, ratio=1.0, alternative="larger")
    assert stats.detectable_drop(sd, n, sd, n, alpha) == pytest.approx(effect * sd, rel=1e-6)


def test_one_draws_f1_interval_is_the_test_sets_alone():
    labels = RNG.integers(0, 10, 1_000)
    predicted = np.where(RNG.random((1, 1_000)) < 0.9, labels, RNG.integers(0, 10, 1_000))
    interval = stats.total_interval_f1(predicted, labels)
    f1 = stats.macro_f1(predicted, labels)[0]
    assert interval.low < f1 < interval.high and np.isfinite([interval.low, interval.high]).all()


def test_macro_f1_is_scikit_learns_and_its_total_interval_holds_the_seeds_interval():
    from sklearn.metrics import f1_score

    labels = RNG.integers(0, 10, 3_000)
    predicted = np.where(RNG.random((4, 3_000)) < 0.9, labels, RNG.integers(0, 10, (4, 3_000)))
    predicted[0, :] = np.where(labels == 9, 8, predicted[0])  # a class never predicted by one seed
    ours = stats.macro_f1(predicted, labels)
    assert ours == pytest.approx([f1_score(labels, row, average="macro") for row in predicted], abs=1e-12)
    total = stats.total_interval_f1(predicted, labels)
    seeds_half = 1.96 * ours.std(ddof=1) / 2
    assert (total.high - total.low) / 2 > seeds_half and total.low < ours.mean() < total.high
    assert stats.total_interval_f1(predicted, labels) == total  # seeded
