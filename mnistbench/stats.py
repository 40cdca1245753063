"""The statistics the benchmark, the gate and the leaderboard state, each with what it covers.

    seeds = seed_interval(accuracies)                    # 95% over seeds (Student's t): this test set
    total = total_interval(correct)                      # 95% over seeds and the test set's sampling
    pair = compare(a, b, correct_a, correct_b)           # difference, Welch test, P(A > B), their intervals
    adjusted = holm([p1, p2, ...])                       # multiple comparisons, family-wise at the level

One training run is one draw: test accuracy moves from seed to seed (initialization and order).
The test set is a sample too: 10,000 images give any accuracy p a binomial standard error
sqrt(p(1 - p) / 10,000), 0.15 pp at p = 0.976, as large as the default MLP's seed-to-seed sd. So
every interval here says which of the two it covers:

- over seeds: the spread of the mean over `n` seeds, on this very test set (Student's t; what the
  gate's Welch test compares, since both sides are scored on the same images);
- over seeds and test images: also the sampling of the test set, as the analytic sum of the two
  variances, sd_seeds^2 / n + var_images / N, where var_images is the variance over images of each
  image's correctness averaged over seeds (so images every seed gets right or wrong count once);
  Student's t at the Welch-Satterthwaite degrees of freedom of the two terms. It holds the
  seed-by-image interaction twice, so it errs wide, never narrow.

Comparisons within one dataset pair the test images: the test-set term of a difference is the
variance over images of the difference of the two cells' mean correctness, so the images both
get right, or both wrong, cancel. P(A > B) is the Mann-Whitney probability that a seed of A scores
above a seed of B (ties count half), with a percentile bootstrap interval over seeds
(Bouthillier et al. 2021). Everything is checked against scipy and statsmodels on known inputs
(tests/test_stats.py).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

LEVEL = 0.95  # every interval's coverage
ALPHA = 0.05  # the benchmark's family-wise level (Holm)
BOOTSTRAP = 2000  # resamples for P(A > B)'s interval; seeded: the same interval every run
DECIMALS = 6  # as every metric here (the evaluate stage's)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


def seed_interval(values) -> Interval:
    """95% interval of the mean over seeds, Student's t (needs 2 seeds at least)."""
    values = np.asarray(values, dtype=float)
    if values.std() == 0:
        return Interval(float(values.mean()), float(values.mean()))
    ci = stats.ttest_1samp(values, 0.0).confidence_interval(LEVEL)
    return Interval(float(ci.low), float(ci.high))


def image_variance(correct: np.ndarray) -> float:
    """Variance over test images of each image's correctness averaged over seeds: (S, N) bool."""
    return float(np.asarray(correct, dtype=float).mean(0).var(ddof=1))


def t_half_width(parts: list[tuple[float, int]]) -> float:
    """Half the 95% interval of a sum of independent variance terms (variance of the mean, its
    degrees of freedom): Student's t at the Welch-Satterthwaite degrees of freedom, so a few seeds'
    term widens it as a t interval would, and a test set's 10,000 images' term leaves it normal."""
    total = sum(v for v, _ in parts)
    if total == 0:
        return 0.0
    df = total**2 / sum(v**2 / d for v, d in parts if v > 0)
    return float(stats.t.ppf(0.5 + LEVEL / 2, df) * math.sqrt(total))


def total_interval(correct: np.ndarray) -> Interval:
    """95% interval of the mean accuracy over seeds and test images: (S, N) correctness, one row a seed."""
    correct = np.asarray(correct, dtype=float)
    per_seed = correct.mean(1)
    n, images = correct.shape
    seeds = [(per_seed.var(ddof=1) / n, n - 1)] if n > 1 else []  # one row: a deterministic method's one draw
    half = t_half_width([*seeds, (image_variance(correct) / images, images - 1)])
    return Interval(float(per_seed.mean() - half), float(per_seed.mean() + half))


def macro_f1(predicted: np.ndarray, labels: np.ndarray, classes: int = 10) -> np.ndarray:
    """Each seed's macro-F1: (S, N) predicted classes against (N,) labels -> (S,); the mean F1 over
    the classes present in the labels or the predictions (scikit-learn's macro average)."""
    predicted, labels = np.atleast_2d(predicted).astype(np.int64), np.asarray(labels, dtype=np.int64)
    out = []
    for row in predicted:
        counts = np.bincount(labels * classes + row, minlength=classes * classes).reshape(classes, classes)
        tp, actual, guessed = np.diag(counts), counts.sum(1), counts.sum(0)
        present = (actual + guessed) > 0
        f1 = np.divide(2 * tp, actual + guessed, out=np.zeros(classes), where=present)
        out.append(f1[present].mean())
    return np.array(out)


def total_interval_f1(predicted: np.ndarray, labels: np.ndarray, resamples: int = 200, seed: int = 0) -> Interval:
    """95% interval of the mean macro-F1 over seeds and test images. Macro-F1 is no mean over images,
    so its test-set share is a bootstrap over the images (seeded: the same every run); the seeds'
    share is their variance over n, as for accuracy; a normal interval of the sum."""
    per_seed = macro_f1(predicted, labels)
    rng = np.random.default_rng(seed)
    means = [
        macro_f1(predicted[:, idx], labels[idx]).mean()
        for idx in (rng.integers(0, len(labels), len(labels)) for _ in range(resamples))
    ]
    seeds = [(per_seed.var(ddof=1) / len(per_seed), len(per_seed) - 1)] if len(per_seed) > 1 else []
    half = t_half_width([*seeds, (float(np.var(means, ddof=1)), len(labels) - 1)])
    return Interval(float(per_seed.mean() - half), float(per_seed.mean() + half))


def p_outperform(a, b) -> float:
    """P(A > B): the share of (seed of A, seed of B) pairs where A scores higher, ties counting half."""
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").statistic / (len(a) * len(b)))


@dataclass(frozen=True)
class Comparison:
    difference: float  # mean(A) - mean(B)
    seeds: Interval  # 95%, Welch, over seeds: on this test set
    total: Interval  # 95%, over seeds and the test set's sampling, images paired
    p: float  # Welch's two-sided p-value (not adjusted)
    p_a_better: float  # P(A > B)
    p_a_better_interval: Interval  # 95% percentile bootstrap over seeds


def _seeds_test(a: np.ndarray, b: np.ndarray) -> tuple[Interval, float]:
    """The 95% interval of mean(a) - mean(b) over seeds and its two-sided p: Welch's test; one draw
    of a deterministic method (one value) is a constant, so the test is one-sample on the other side
    (Welch's with that side's variance 0); with no spread on either side the difference is exact."""
    if a.std() == 0 and b.std() == 0:
        difference = float(a.mean() - b.mean())
        return Interval(difference, difference), (1.0 if difference == 0 else 0.0)
    if len(a) == 1 or len(b) == 1:
        sign, constant, seeds = (1, a[0], b) if len(a) == 1 else (-1, b[0], a)
        test = stats.ttest_1samp(seeds, constant)
        ci = test.confidence_interval(LEVEL)  # of mean(seeds), the constant not subtracted
        low, high = sorted(sign * (constant - float(x)) for x in (ci.low, ci.high))
        return Interval(low, high), float(test.pvalue)
    welch = stats.ttest_ind(a, b, equal_var=False)
    ci = welch.confidence_interval(LEVEL)
    return Interval(float(ci.low), float(ci.high)), float(welch.pvalue)


def _p_outperform_interval(a: np.ndarray, b: np.ndarray, seed: int) -> Interval:
    """95% percentile bootstrap of P(A > B) over seeds; a one-draw side is not resampled."""
    if len(a) == 1 and len(b) == 1:
        value = p_outperform(a, b)
        return Interval(value, value)
    if len(a) == 1 or len(b) == 1:
        data, statistic = ((b,), lambda s: p_outperform(a, s)) if len(a) == 1 else ((a,), lambda s: p_outperform(s, b))
    else:
        data, statistic = (a, b), p_outperform
    boot = stats.bootstrap(
        data,
        statistic,
        paired=False,
        vectorized=False,
        n_resamples=BOOTSTRAP,
        confidence_level=LEVEL,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    ci = boot.confidence_interval
    return Interval(float(ci.low), float(ci.high))


def compare(
    a, b, correct_a: np.ndarray | None = None, correct_b: np.ndarray | None = None, seed: int = 0
) -> Comparison:
    """Cell A against cell B on the same test set: per-seed accuracies a and b, and, for the
    test-set-aware interval, their (S, N) correctness matrices on the same images in the same order.
    A side of one value is a deterministic method's one draw: no seed term on that side."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    difference = float(a.mean() - b.mean())
    seeds, p = _seeds_test(a, b)
    total = seeds
    if correct_a is not None and correct_b is not None:
        paired = np.asarray(correct_a, dtype=float).mean(0) - np.asarray(correct_b, dtype=float).mean(0)
        half = t_half_width(
            [(x.var(ddof=1) / len(x), len(x) - 1) for x in (a, b) if len(x) > 1]
            + [(paired.var(ddof=1) / len(paired), len(paired) - 1)]
        )
        total = Interval(difference - half, difference + half)
    return Comparison(difference, seeds, total, p, p_outperform(a, b), _p_outperform_interval(a, b, seed))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order: reject where adjusted < alpha, and
    the chance of any false rejection in the family stays below alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def welch_from_stats(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int) -> float:
    """Welch's two-sided p-value from summary statistics alone (what `dvc exp show` holds)."""
    if sd_a == 0 and sd_b == 0:
        return 1.0 if mean_a == mean_b else 0.0
    return float(stats.ttest_ind_from_stats(mean_a, sd_a, n_a, mean_b, sd_b, n_b, equal_var=False).pvalue)


def detectable_drop(sd_a: float, n_a: int, sd_b: float, n_b: int, alpha: float, power: float = 0.9) -> float:
    """The smallest drop of the mean that a one-sided Welch test at `alpha` detects with `power`,
    for these sds and numbers of seeds: the noncentral t, solved for its noncentrality."""
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    critical = stats.t.ppf(1 - alpha, df)
    shift = optimize.brentq(lambda d: stats.nct.sf(critical, df, d) - power, 0.0, 100.0)
    return float(shift * se)


@dataclass(frozen=True)
class Equivalence:
    difference: float  # current mean - committed mean
    ci90: tuple[float, float]  # the TOST's interval: 1 - 2 * alpha
    p: float  # TOST's p-value: the larger of the two one-sided tests
    margin: float
    equivalent: bool


def tost(
    mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int, margin: float, alpha: float = 0.05
):
    """Two one-sided Welch t-tests (Schuirmann's TOST) of |mean_b - mean_a| < margin, from summary
    statistics: equivalent when both reject at `alpha`, that is when the 1 - 2 alpha interval of
    the difference lies within (-margin, margin). Checked against statsmodels' ttost_ind."""
    difference = mean_b - mean_a
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:  # no spread on either side (deterministic methods): the difference is exact
        inside = -margin < difference < margin
        return Equivalence(difference, (difference, difference), 0.0 if inside else 1.0, margin, inside)
    df = (va + vb) ** 2 / ((va**2 / (n_a - 1) if n_a > 1 else 0) + (vb**2 / (n_b - 1) if n_b > 1 else 0))
    p_lower = float(stats.t.sf((difference + margin) / se, df))  # H0: difference <= -margin
    p_upper = float(stats.t.cdf((difference - margin) / se, df))  # H0: difference >= margin
    half = float(stats.t.ppf(1 - alpha, df) * se)
    p = max(p_lower, p_upper)
    return Equivalence(difference, (difference - half, difference + half), p, margin, p < alpha)


def tost_power(sd_a: float, n_a: int, sd_b: float, n_b: int, margin: float, shift: float, alpha: float = 0.05) -> float:
    """The probability that the TOST finds equivalence when the true difference is `shift` (at
    shift 0: its power; at a shift of the margin or more: at most alpha), by the normal
    approximation of the difference at these sds and ns and the t critical value."""
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return 1.0 if abs(shift) < margin else 0.0
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    half = stats.t.ppf(1 - alpha, df) * se
    low, high = -margin + half, margin - half
    if low >= high:
        return 0.0
    return float(stats.norm.cdf((high - shift) / se) - stats.norm.cdf((low - shift) / se))


def summarize(values: list[float]) -> dict:
    """n, mean, sample sd, min, max and the 95% confidence interval of the mean (Student's t). One
    value is a deterministic method's one draw, which every seed would give: sd 0, the interval
    that value."""
    n = len(values)
    mean, sd = statistics.fmean(values), statistics.stdev(values) if n > 1 else 0.0
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) if n > 1 else 0.0
    return {
        k: round(v, DECIMALS) if isinstance(v, float) else v
        for k, v in {
            "n": n,
            "mean": mean,
            "sd": sd,
            "min": min(values),
            "max": max(values),
            "ci95_low": mean - half,
            "ci95_high": mean + half,
        }.items()
    }
