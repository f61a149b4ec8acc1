"""The outcome statistics (reports/outcomes.py) against the reference implementations.

Kaplan-Meier, Greenwood and the log-log CI against lifelines (its exponential Greenwood interval is
R's survfit conf.type="log-log") and statsmodels' SurvfuncRight; Wilson intervals against
statsmodels; quartiles against numpy.percentile (linear, R type 7). Pure computations: no database.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from statsmodels.duration.survfunc import SurvfuncRight
from statsmodels.stats.proportion import proportion_confint

from reports.outcomes import Z95, kaplan_meier, loglog_interval, quantile, summary, survival_at, wilson_interval

TOLERANCE = 1e-9
SEEDS = range(12)


def random_survival_data(seed: int) -> tuple[list[int], list[bool]]:
    """Days on a coarse grid so that ties, and censorings on event days, are common."""
    rng = random.Random(seed)
    n = rng.randint(5, 80)
    times = [rng.choice(range(0, 700, rng.choice((7, 14, 28)))) for _ in range(n)]
    events = [rng.random() < 0.45 for _ in range(n)]
    if seed % 3 == 0:
        times.append(800)  # someone followed past week 52, so S(364) is defined
        events.append(False)
    return times, events


def fitted(times, events) -> KaplanMeierFitter:
    return KaplanMeierFitter().fit(np.array(times, dtype=float), np.array(events, dtype=bool))


def ties_and_censoring_on_event_days(times, events) -> bool:
    event_days = {t for t, e in zip(times, events, strict=True) if e}
    censored_days = {t for t, e in zip(times, events, strict=True) if not e}
    return len(event_days) < sum(events) and bool(event_days & censored_days)


def test_it_generates_data_with_ties_and_censoring_on_event_days():
    assert sum(ties_and_censoring_on_event_days(*random_survival_data(seed)) for seed in SEEDS) >= 8


@pytest.mark.parametrize("seed", SEEDS)
def test_it_matches_lifelines_at_every_distinct_time(seed):
    times, events = random_survival_data(seed)
    steps = kaplan_meier(times, events)
    reference = fitted(times, events)
    table = reference.event_table
    bounds = reference.confidence_interval_survival_function_
    worst = 0.0
    for step in steps:
        row = table.loc[float(step.day)]
        assert (step.at_risk, step.events, step.censored) == (row["at_risk"], row["observed"], row["censored"])
        expected = float(reference.survival_function_.loc[float(step.day)].iloc[0])
        worst = max(worst, abs(step.estimate - expected))
        low, high = loglog_interval(step.estimate, step.greenwood)
        if 0 < step.estimate < 1:
            expected_low, expected_high = bounds.loc[float(step.day)]
            worst = max(worst, abs(low - expected_low), abs(high - expected_high))
            assert low < step.estimate < high
        else:  # S = 1 or S = 0: the bounds are undefined, hence null
            assert (low, high) == (None, None)
    assert [step.day for step in steps] == sorted({*times})
    assert worst < TOLERANCE


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("day", [140, 364])
def test_it_matches_lifelines_at_weeks_20_and_52(seed, day):
    times, events = random_survival_data(seed)
    steps = kaplan_meier(times, events)
    result = survival_at(steps, times, day)
    reference = fitted(times, events)
    assert result["at_risk"] == sum(1 for t in times if t >= day)
    if result["estimate"] is None:
        # Everyone was censored before this day; lifelines carries the last value forward.
        assert max(times) < day and result["at_risk"] == 0
        return
    assert abs(result["estimate"] - float(reference.survival_function_at_times(day).iloc[0])) < TOLERANCE
    if result["ci_low"] is not None:
        expected_low, expected_high = reference.confidence_interval_survival_function_.loc[:day].iloc[-1]
        assert abs(result["ci_low"] - expected_low) < TOLERANCE
        assert abs(result["ci_high"] - expected_high) < TOLERANCE


@pytest.mark.parametrize("seed", SEEDS)
def test_it_matches_statsmodels_greenwood_standard_error(seed):
    times, events = random_survival_data(seed)
    steps = {step.day: step for step in kaplan_meier(times, events)}
    reference = SurvfuncRight(np.array(times, dtype=float), np.array(events, dtype=int))
    for day, probability, se, at_risk in zip(
        reference.surv_times, reference.surv_prob, reference.surv_prob_se, reference.n_risk, strict=True
    ):
        step = steps[int(day)]
        assert abs(step.estimate - probability) < TOLERANCE
        assert step.at_risk == at_risk
        if step.estimate > 0:  # Greenwood: se(S) = S * sqrt(sum d / (n (n - d)))
            assert abs(step.estimate * math.sqrt(step.greenwood) - se) < TOLERANCE


def test_it_puts_the_log_log_bounds_the_right_way_round():
    # Hand-worked: 5 patients, two events and one censoring on day 10 (S = 3/5), one event on day 20
    # among the 2 still at risk (S = 0.3). Greenwood sums 2/(5*3) and then + 1/(2*1).
    steps = kaplan_meier([10, 10, 10, 20, 30], [True, True, False, True, False])
    assert [(s.day, s.at_risk, s.events, s.censored) for s in steps] == [(10, 5, 2, 1), (20, 2, 1, 0), (30, 1, 0, 1)]
    assert steps[0].estimate == pytest.approx(0.6) and steps[1].estimate == pytest.approx(0.3)
    assert steps[1].greenwood == pytest.approx(2 / 15 + 1 / 2)
    se = math.sqrt(2 / 15) / abs(math.log(0.6))
    low, high = loglog_interval(steps[0].estimate, steps[0].greenwood)
    assert low == pytest.approx(0.6 ** math.exp(Z95 * se)) and high == pytest.approx(0.6 ** math.exp(-Z95 * se))
    assert low == pytest.approx(0.125730, abs=1e-6) and high == pytest.approx(0.881756, abs=1e-6)  # lifelines, R


def test_it_leaves_the_bounds_null_when_s_is_one_or_zero():
    assert loglog_interval(1.0, 0.0) == (None, None)
    steps = kaplan_meier([5, 5], [True, True])
    assert steps[-1].estimate == 0.0 and math.isinf(steps[-1].greenwood)
    assert loglog_interval(steps[-1].estimate, steps[-1].greenwood) == (None, None)


def test_it_uses_the_exact_normal_quantile():
    assert abs(Z95 - 1.959963984540054) < 1e-15


@pytest.mark.parametrize("total", [1, 2, 3, 5, 10, 17, 20, 23, 27, 31, 50, 100, 1000])
def test_it_matches_statsmodels_wilson(total):
    worst = 0.0
    for n in range(total + 1):
        low, high = wilson_interval(n, total)
        expected_low, expected_high = proportion_confint(n, total, alpha=0.05, method="wilson")
        worst = max(worst, abs(low - expected_low), abs(high - expected_high))
        assert 0.0 <= low <= n / total <= high <= 1.0
    assert worst < TOLERANCE
    assert wilson_interval(0, total)[0] == 0.0 and wilson_interval(total, total)[1] == 1.0


def test_it_gives_no_wilson_interval_without_a_denominator():
    assert wilson_interval(0, 0) == (None, None)
    assert wilson_interval(2, 1) == (None, None)


@pytest.mark.parametrize("seed", range(40))
def test_it_matches_numpy_percentile(seed):
    rng = random.Random(seed)
    size = [1, 2, 3, 4][seed] if seed < 4 else rng.randint(1, 60)
    # Odd seeds: integer scores with ties, like the HBI; even seeds: skewed lab values.
    values = [rng.randint(0, 30) if seed % 2 else rng.lognormvariate(3, 1) for _ in range(size)]
    expected = np.percentile(values, [25, 50, 75])  # numpy's default: linear
    result = summary(values)
    assert result["N"] == size
    for key, value in zip(("q1", "median", "q3"), expected, strict=True):
        assert abs(result[key] - value) < TOLERANCE
        assert isinstance(result[key], float)


def test_it_interpolates_between_order_statistics():
    # R type 7 on 1, 2, 4, 8: h = 3p, Q1 = 1 + 0.75 * (2 - 1), Q3 = 4 + 0.25 * (8 - 4).
    assert [quantile([1, 2, 4, 8], p) for p in (0.25, 0.5, 0.75)] == [1.75, 3.0, 5.0]
    assert summary([None, None]) == {"median": None, "q1": None, "q3": None, "N": 0}
    assert summary([7, None]) == {"median": 7.0, "q1": 7.0, "q3": 7.0, "N": 1}
