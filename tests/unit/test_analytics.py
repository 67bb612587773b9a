"""Analytics: the statistics (checked against hand-computed numbers), the rule report, the
engagement score and the funnel."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from retention.analytics.stats import (
    COUNTERS,
    RELATIONSHIP_STEPS,
    REPORT_KEYS,
    ab_verdict,
    engagement_score,
    funnel,
    normal_cdf,
    rule_report,
    suppressed_counter,
    two_proportion_test,
    two_sided_p_value,
    uplift,
)
from retention.core.errors import BadRequestError

# --------------------------------------------------------------------------------- normal and z test


def test_normal_cdf_known_values() -> None:
    assert normal_cdf(0.0) == 0.5
    assert normal_cdf(1.959964) == pytest.approx(0.975, abs=1e-6)  # the 95 % two-sided quantile
    assert normal_cdf(-1.0) == pytest.approx(0.158655, abs=1e-6)  # table value Φ(−1)
    assert two_sided_p_value(1.959964) == pytest.approx(0.05, abs=1e-6)
    assert two_sided_p_value(-1.959964) == pytest.approx(0.05, abs=1e-6)


def test_two_proportion_test_120_of_1000_vs_100_of_1000() -> None:
    result = two_proportion_test(120, 1000, 100, 1000)
    # p_a = 0.12, p_b = 0.10, diff = 0.02
    assert result["p_a"] == pytest.approx(0.12)
    assert result["p_b"] == pytest.approx(0.10)
    assert result["diff"] == pytest.approx(0.02)
    # pooled p = 220 / 2000 = 0.11; SE₀ = √(0.11 × 0.89 × (1/1000 + 1/1000)) = √0.0001958 = 0.0139929
    # z = 0.02 / 0.0139929 = 1.4293
    assert result["z"] == pytest.approx(1.4293, abs=1e-4)
    # p = 2 × (1 − Φ(1.4293)) = 2 × (1 − 0.92354) = 0.1529
    assert result["p_value"] == pytest.approx(0.1529, abs=1e-4)
    # unpooled SE = √(0.12 × 0.88 / 1000 + 0.10 × 0.90 / 1000) = √0.0001956 = 0.0139857
    # CI = 0.02 ± 1.96 × 0.0139857 = 0.02 ± 0.027411 → [−0.007411, 0.047411]
    low, high = result["ci95"]
    assert low == pytest.approx(-0.007411, abs=1e-6)
    assert high == pytest.approx(0.047411, abs=1e-6)


def test_two_proportion_test_direction_is_a_minus_b() -> None:
    result = two_proportion_test(100, 1000, 120, 1000)
    assert result["diff"] == pytest.approx(-0.02)
    assert result["z"] == pytest.approx(-1.4293, abs=1e-4)
    assert result["p_value"] == pytest.approx(0.1529, abs=1e-4)  # two-sided: the same p


def test_two_proportion_test_edge_cases() -> None:
    empty = two_proportion_test(0, 0, 10, 100)
    assert empty == {"p_a": None, "p_b": 0.1, "diff": None, "z": None, "p_value": None, "ci95": None}
    # no conversions anywhere: no variance, no evidence of a difference
    flat = two_proportion_test(0, 500, 0, 400)
    assert (flat["z"], flat["p_value"], flat["ci95"]) == (0.0, 1.0, [0.0, 0.0])
    with pytest.raises(BadRequestError, match="cannot exceed"):
        two_proportion_test(11, 10, 1, 10)
    with pytest.raises(BadRequestError, match="negative"):
        two_proportion_test(-1, 10, 1, 10)


# -------------------------------------------------------------------------------------- A/B verdict


def _variants(*specs: tuple[str, int, int]) -> list[dict[str, Any]]:
    return [{"name": name, "sent": sent, "converted": converted} for name, sent, converted in specs]


def test_verdict_sample_too_small() -> None:
    # b converts 3× better, but a has 99 < 100 sends: nothing is decided
    result = ab_verdict(_variants(("a", 99, 5), ("b", 1000, 150)))
    assert result["verdict"] == "sample_too_small"
    assert result["winner"] is None
    assert len(result["comparisons"]) == 1  # still computed, for display
    assert ab_verdict(_variants(("a", 0, 0), ("b", 0, 0)))["verdict"] == "sample_too_small"


def test_verdict_no_difference_yet() -> None:
    # 12 % vs 10 % on 1000 each: p = 0.1529 (above) > 0.05
    result = ab_verdict(_variants(("a", 1000, 120), ("b", 1000, 100)))
    assert result["verdict"] == "no_difference_yet"
    assert result["winner"] is None
    [comparison] = result["comparisons"]
    assert (comparison["a"], comparison["b"]) == ("a", "b")
    assert comparison["p_value"] == pytest.approx(0.1529, abs=1e-4)
    assert comparison["alpha"] == 0.05
    assert comparison["significant"] is False


def test_verdict_winner_with_two_variants() -> None:
    # b 130/1000 vs a 100/1000: pooled p = 230/2000 = 0.115
    # SE₀ = √(0.115 × 0.885 × 0.002) = √0.00020355 = 0.0142671; z = 0.03 / 0.0142671 = 2.1027
    # p = 2 × (1 − Φ(2.1027)) = 2 × 0.017744 = 0.0355 < 0.05 → b wins
    result = ab_verdict(_variants(("a", 1000, 100), ("b", 1000, 130)))
    assert result["verdict"] == "winner"
    assert result["winner"] == "b"
    [comparison] = result["comparisons"]
    assert (comparison["a"], comparison["b"]) == ("b", "a")  # the best against the other
    assert comparison["z"] == pytest.approx(2.1027, abs=1e-4)
    assert comparison["p_value"] == pytest.approx(0.0355, abs=1e-4)


def test_bonferroni_with_three_variants_withholds_a_chance_winner() -> None:
    # The same b vs a (p = 0.0355) plus c at 95/1000. Three variants → two tests → each at
    # 0.05 / 2 = 0.025. b vs c: pooled 225/2000 = 0.1125, SE₀ = √(0.1125 × 0.8875 × 0.002)
    # = 0.0141311, z = 0.035 / 0.0141311 = 2.4768, p = 0.0133 < 0.025 (significant),
    # but b vs a: 0.0355 > 0.025 → no winner yet.
    result = ab_verdict(_variants(("a", 1000, 100), ("b", 1000, 130), ("c", 1000, 95)))
    assert result["verdict"] == "no_difference_yet"
    assert result["winner"] is None
    by_other = {c["b"]: c for c in result["comparisons"]}
    assert set(by_other) == {"a", "c"}
    assert by_other["a"]["alpha"] == 0.025
    assert by_other["a"]["p_value"] == pytest.approx(0.0355, abs=1e-4)
    assert by_other["a"]["significant"] is False
    assert by_other["c"]["z"] == pytest.approx(2.4768, abs=1e-4)
    assert by_other["c"]["p_value"] == pytest.approx(0.0133, abs=1e-4)
    assert by_other["c"]["significant"] is True


def test_winner_with_three_variants() -> None:
    # b 150/1000 vs a 100/1000: pooled 0.125, SE₀ = √(0.125 × 0.875 × 0.002) = 0.0147902,
    # z = 0.05 / 0.0147902 = 3.3806, p = 0.00072 < 0.025
    # b vs c 95/1000: pooled 0.1225, SE₀ = √(0.1225 × 0.8775 × 0.002) = 0.0146625,
    # z = 0.055 / 0.0146625 = 3.7511, p = 0.00018 < 0.025 → b beats both
    result = ab_verdict(_variants(("a", 1000, 100), ("b", 1000, 150), ("c", 1000, 95)))
    assert result["verdict"] == "winner"
    assert result["winner"] == "b"
    by_other = {c["b"]: c for c in result["comparisons"]}
    assert by_other["a"]["z"] == pytest.approx(3.3806, abs=1e-4)
    assert by_other["a"]["p_value"] == pytest.approx(0.00072, abs=1e-5)
    assert by_other["c"]["z"] == pytest.approx(3.7511, abs=1e-4)
    assert by_other["c"]["p_value"] == pytest.approx(0.00018, abs=1e-5)


def test_verdict_tie_has_no_winner() -> None:
    result = ab_verdict(_variants(("a", 1000, 100), ("b", 1000, 128), ("c", 1000, 128)))
    assert result["verdict"] == "no_difference_yet"
    tie = next(c for c in result["comparisons"] if c["p_a"] == c["p_b"])
    assert (tie["diff"], tie["z"], tie["p_value"]) == (0.0, 0.0, 1.0)


def test_verdict_needs_two_variants() -> None:
    with pytest.raises(BadRequestError, match="two variants"):
        ab_verdict(_variants(("a", 1000, 100)))


# ------------------------------------------------------------------------------------------ uplift


def test_uplift_with_an_empty_holdout() -> None:
    result = uplift(1000, 120, 0, 0)
    assert result == {
        "treated_rate": 0.12,
        "holdout_rate": None,
        "absolute_uplift": None,
        "relative_uplift": None,
        "ci95": None,
        "p_value": None,
        "significant": False,
        "insufficient_data": True,
        "summary": "not enough data yet (n = 1000)",
    }
    assert uplift(0, 0, 200, 10)["insufficient_data"] is True
    assert uplift(0, 0, 0, 0)["treated_rate"] is None


def test_uplift_against_a_holdout() -> None:
    result = uplift(1000, 120, 200, 10)
    # treated 120/1000 = 0.12, holdout 10/200 = 0.05: +0.07 absolute, 0.07 / 0.05 = +140 % relative
    assert result["treated_rate"] == pytest.approx(0.12)
    assert result["holdout_rate"] == pytest.approx(0.05)
    assert result["absolute_uplift"] == pytest.approx(0.07)
    assert result["relative_uplift"] == pytest.approx(1.4)
    # pooled 130/1200 = 0.108333; SE₀ = √(0.108333 × 0.891667 × (1/1000 + 1/200)) = 0.0240745
    # z = 0.07 / 0.0240745 = 2.9076 → p = 2 × (1 − Φ(2.9076)) = 0.00364
    assert result["p_value"] == pytest.approx(0.00364, abs=1e-5)
    assert result["significant"] is True
    # unpooled SE = √(0.12 × 0.88 / 1000 + 0.05 × 0.95 / 200) = √0.0003431 = 0.018523
    # CI = 0.07 ± 1.96 × 0.018523 = 0.07 ± 0.036305
    assert result["ci95"][0] == pytest.approx(0.033695, abs=1e-5)
    assert result["ci95"][1] == pytest.approx(0.106305, abs=1e-5)
    assert result["insufficient_data"] is False


def test_uplift_with_zero_events_is_not_enough_data() -> None:
    """Issue 14: nobody converted in either group — no "+0.0 pp, CI +0.0…+0.0, p = 1"."""
    result = uplift(380, 0, 20, 0)
    assert result["insufficient_data"] is True
    assert result["absolute_uplift"] is None and result["ci95"] is None and result["p_value"] is None
    assert result["summary"] == "not enough data yet (n = 400)"
    assert "pp" in uplift(1000, 120, 200, 10)["summary"] and "p = 0.004" in uplift(1000, 120, 200, 10)["summary"]


def test_the_report_line_says_not_enough_data_with_n() -> None:
    from cli.report import uplift_line
    stats = {"holdout": {"customers": 20, "converted": 0}, "totals": {"entered": 380},
             "uplift": uplift(380, 0, 20, 0)}
    line = uplift_line(stats)
    assert "not enough data yet (n = 400)" in line and "+0.0" not in line and "p=1" not in line


def test_uplift_when_the_holdout_never_converts() -> None:
    result = uplift(100, 10, 50, 0)
    assert result["absolute_uplift"] == pytest.approx(0.1)
    assert result["relative_uplift"] is None  # +∞ % is not a number to show
    assert result["insufficient_data"] is False


# ------------------------------------------------------------------------------------- rule report

ZERO = {name: 0 for name in COUNTERS} | {"revenue": 0.0, "redeemed_revenue": 0.0}


def _rows() -> list[dict[str, Any]]:
    return [
        # journey entries, two shards of the same (date, step, variant): summed
        {"date": "2024-05-01", "step": -1, "variant": "default", "entered": 40},
        {
            "date": "2024-05-01",
            "step": -1,
            "variant": "default",
            "entered": 20,
            "converted": 2,
            "revenue": 100.1,
        },
        {
            "date": "2024-05-01",
            "step": 1,
            "variant": "A",
            "sent": 50,
            "delivered": 48,
            "opened": 20,
            "clicked": 5,
            "suppressed": 3,
            suppressed_counter("no_consent"): 2,
            suppressed_counter("frequency_cap"): 1,
            "converted": 4,
            "revenue": Decimal("250.005"),
        },
        # DynamoDB numbers arrive as Decimal; a reason without the plain counter still counts
        {
            "date": "2024-05-02",
            "step": Decimal(1),
            "variant": "A",
            "sent": Decimal(10),
            "delivered": Decimal(10),
            "opened": Decimal(4),
            "unsubscribed": Decimal(1),
            "suppressed:audience": Decimal(2),
        },
        {
            "date": "2024-05-03",
            "step": 3,
            "variant": "a",
            "sent": 30,
            "delivered": 30,
            "opened": 12,
            "clicked": 6,
            "converted": 3,
            "revenue": 300,
        },
        {
            "date": "2024-05-03",
            "step": 3,
            "variant": "b",
            "sent": 30,
            "delivered": 29,
            "bounced": 1,
            "complained": 1,
            "converted": 1,
            "revenue": 99.99,
        },
        {"date": "2024-05-01", "step": -1, "variant": "holdout", "entered": 10, "converted": 1},
        {"date": "2024-05-04", "step": -1, "variant": "holdout", "entered": 5},
        # a raw item without date/step/variant attributes: read from the sort key
        {"pk": "S#abandoned-cart#3", "sk": "2024-05-04#-001#default", "entered": Decimal(5)},
        # not a counter row: ignored
        {"pk": "S#abandoned-cart#3", "sk": "garbage"},
    ]


def test_rule_report_over_all_time() -> None:
    report = rule_report("abandoned-cart", _rows())
    assert tuple(report) == REPORT_KEYS
    assert report["rule"] == "abandoned-cart"
    assert report["totals"] == {
        "entered": 65,  # 40 + 20 + 5 (the sort-key row); the 15 held out are not here
        "sent": 120,  # 50 + 10 + 30 + 30
        "delivered": 117,  # 48 + 10 + 30 + 29
        "opened": 36,  # 20 + 4 + 12
        "clicked": 11,  # 5 + 6
        "unsubscribed": 1,
        "bounced": 1,
        "complained": 1,
        "suppressed": 5,  # max(3, 2 + 1) + max(0, 2)
        "converted": 10,  # 2 + 4 + 3 + 1
        "revenue": 750.1,  # 100.1 + 250.005 + 300 + 99.99 = 750.095 exactly → 750.10 (half up)
        "redeemed": 0, "redeemed_revenue": 0.0, "recommendation_clicks": 0,  # coupons and product links
    }
    assert report["steps"] == [
        {**ZERO, "step": -1, "variant": "default", "entered": 65, "converted": 2, "revenue": 100.1},
        {
            **ZERO,
            "step": 1,
            "variant": "A",
            "sent": 60,
            "delivered": 58,
            "opened": 24,
            "clicked": 5,
            "unsubscribed": 1,
            "suppressed": 5,
            "converted": 4,
            "revenue": 250.01,  # 250.005 → half up
        },
        {
            **ZERO,
            "step": 3,
            "variant": "a",
            "sent": 30,
            "delivered": 30,
            "opened": 12,
            "clicked": 6,
            "converted": 3,
            "revenue": 300.0,
        },
        {
            **ZERO,
            "step": 3,
            "variant": "b",
            "sent": 30,
            "delivered": 29,
            "bounced": 1,
            "complained": 1,
            "converted": 1,
            "revenue": 99.99,
        },
    ]
    assert list(report["steps"][0]) == ["step", "variant", *COUNTERS]
    assert report["holdout"] == {"customers": 15, "converted": 1}  # 10 + 5, 1
    assert report["suppressed_by_reason"] == {"audience": 2, "frequency_cap": 1, "no_consent": 2}
    assert report["rates"] == {
        "delivery_rate": 0.975,  # 117 / 120
        "open_rate": 0.3077,  # 36 / 117 = 0.30769
        "click_rate": 0.094,  # 11 / 117 = 0.09402
        "click_to_open_rate": 0.3056,  # 11 / 36 = 0.30556
        "unsubscribe_rate": 0.0085,  # 1 / 117 = 0.00855
        "bounce_rate": 0.0083,  # 1 / 120 = 0.00833
        "complaint_rate": 0.0085,  # 1 / 117
        "suppression_rate": 0.04,  # 5 / (120 + 5)
        "conversion_rate": 0.1538,  # 10 / 65 = 0.15385
        "holdout_conversion_rate": 0.0667,  # 1 / 15
        "revenue_per_entered": 11.54,  # 750.095 / 65 = 11.5399
    }
    # step 3 has two variants: 30 sends each < 100 → too small to call
    [ab] = report["ab"]
    assert ab["step"] == 3
    assert ab["variants"] == [
        {"name": "a", "sent": 30, "converted": 3},
        {"name": "b", "sent": 30, "converted": 1},
    ]
    assert ab["verdict"] == "sample_too_small"
    # treated 10/65 = 0.153846 vs holdout 1/15 = 0.066667: +0.087179, relative 0.087179 / 0.066667 = 1.3077
    # pooled 11/80 = 0.1375, SE₀ = √(0.1375 × 0.8625 × (1/65 + 1/15)) = √0.0097305 = 0.098643,
    # z = 0.087179 / 0.098643 = 0.8838, p = 2 × (1 − Φ(0.8838)) = 0.3768 → not significant
    lift = report["uplift"]
    assert lift["treated_rate"] == pytest.approx(0.153846, abs=1e-6)
    assert lift["holdout_rate"] == pytest.approx(0.066667, abs=1e-6)
    assert lift["absolute_uplift"] == pytest.approx(0.087179, abs=1e-6)
    assert lift["relative_uplift"] == pytest.approx(1.3077, abs=1e-4)
    assert lift["p_value"] == pytest.approx(0.3768, abs=1e-4)
    assert lift["significant"] is False
    assert lift["insufficient_data"] is False
    assert report["daily"] == [
        {"date": "2024-05-01", "sent": 50, "converted": 6, "revenue": 350.11},  # 100.1 + 250.005 = 350.105
        {"date": "2024-05-02", "sent": 10, "converted": 0, "revenue": 0.0},
        {"date": "2024-05-03", "sent": 60, "converted": 4, "revenue": 399.99},  # 300 + 99.99
        {"date": "2024-05-04", "sent": 0, "converted": 0, "revenue": 0.0},  # entries only
    ]


def test_rule_report_ab_verdict_with_a_lower_minimum() -> None:
    # a 3/30 = 0.1 vs b 1/30 = 0.0333: pooled 4/60 = 0.0667, SE₀ = √(0.0667 × 0.9333 × 2/30)
    # = 0.0644, z = 0.0667 / 0.0644 = 1.035, p = 0.30 → no difference yet
    [ab] = rule_report("abandoned-cart", _rows(), min_sample=20)["ab"]
    assert ab["verdict"] == "no_difference_yet"
    assert ab["comparisons"][0]["z"] == pytest.approx(1.035, abs=1e-3)
    assert ab["comparisons"][0]["p_value"] == pytest.approx(0.30, abs=0.01)


def test_rule_report_date_filter_is_inclusive() -> None:
    report = rule_report("abandoned-cart", _rows(), date_from="2024-05-02", date_to="2024-05-03")
    # only the 05-02 and 05-03 rows
    assert report["totals"] == {
        "entered": 0,
        "sent": 70,  # 10 + 30 + 30
        "delivered": 69,  # 10 + 30 + 29
        "opened": 16,  # 4 + 12
        "clicked": 6,
        "unsubscribed": 1,
        "bounced": 1,
        "complained": 1,
        "suppressed": 2,
        "converted": 4,  # 3 + 1
        "revenue": 399.99,
        "redeemed": 0, "redeemed_revenue": 0.0, "recommendation_clicks": 0,
    }
    assert report["holdout"] == {"customers": 0, "converted": 0}  # holdout rows are on 05-01 and 05-04
    assert report["suppressed_by_reason"] == {"audience": 2}
    assert [d["date"] for d in report["daily"]] == ["2024-05-02", "2024-05-03"]
    assert report["uplift"]["insufficient_data"] is True

    first_day = rule_report("abandoned-cart", _rows(), date_to="2024-05-01")
    assert first_day["totals"]["entered"] == 60  # 40 + 20
    assert first_day["totals"]["sent"] == 50
    assert first_day["holdout"] == {"customers": 10, "converted": 1}

    last_day = rule_report("abandoned-cart", _rows(), date_from="2024-05-04")
    assert last_day["totals"]["entered"] == 5
    assert last_day["holdout"] == {"customers": 5, "converted": 0}
    # dates may come as date objects too
    same = rule_report("abandoned-cart", _rows(), date_from=datetime(2024, 5, 4, tzinfo=UTC).date())
    assert same == last_day


def test_rule_report_empty_period_is_zeros() -> None:
    for report in (
        rule_report("welcome", _rows(), date_from="2025-01-01", date_to="2025-01-31"),
        rule_report("welcome", []),
    ):
        assert report["totals"] == ZERO
        assert report["steps"] == []
        assert report["holdout"] == {"customers": 0, "converted": 0}
        assert report["suppressed_by_reason"] == {}
        assert report["ab"] == []
        assert report["daily"] == []
        assert report["uplift"]["insufficient_data"] is True
        assert set(report["rates"].values()) == {None}


def test_rule_report_rejects_bad_dates() -> None:
    with pytest.raises(BadRequestError, match="after"):
        rule_report("welcome", [], date_from="2024-05-02", date_to="2024-05-01")
    with pytest.raises(BadRequestError, match="YYYY-MM-DD"):
        rule_report("welcome", [], date_from="May 1st")


def test_rule_report_sums_revenue_exactly() -> None:
    # as floats 0.1 + 0.2 = 0.30000000000000004; summed as decimals it is 0.3
    rows = [
        {"date": "2024-05-01", "step": 1, "variant": "A", "converted": 1, "revenue": 0.1},
        {"date": "2024-05-01", "step": 1, "variant": "A", "converted": 1, "revenue": 0.2},
    ]
    assert rule_report("r", rows)["totals"]["revenue"] == 0.3


# -------------------------------------------------------------------------------- engagement score

NOW = datetime(2024, 6, 30, 12, 0, tzinfo=UTC)


def test_engagement_score_hand_computed() -> None:
    kpis = {
        "last_seen_at": "2024-05-25T12:00:00.000000Z",  # 36 days ago
        "orders_count": 2,
        "revenue_total": 5000,
        "open_rate": 0.4,
        "click_rate": 0.2,
    }
    # recency 30 × (1 − 36/180) = 24; frequency 25 × 2/5 = 10; monetary 20 × 5000/20000 = 5;
    # opens 10 × 0.4 = 4; clicks 15 × 0.2 = 3 → 46
    assert engagement_score(kpis, NOW) == 46
    # rates given as percentages read the same
    assert engagement_score({**kpis, "open_rate": 40, "click_rate": 20}, NOW) == 46
    # a smaller shop: revenue cap 10000 → monetary 20 × 0.5 = 10 → 51
    assert engagement_score(kpis, NOW, monetary_cap=10_000) == 51


def test_engagement_score_bounds() -> None:
    assert engagement_score({}, NOW) == 0
    best = {"last_seen_at": NOW, "orders_count": 12, "revenue_total": 90_000, "open_rate": 1, "click_rate": 1}
    assert engagement_score(best, NOW) == 100
    # 200 days without a visit: recency 0 (inactive after 180 days), the rest stays:
    # 25 + 20 + 10 + 15 = 70
    assert engagement_score({**best, "last_seen_at": NOW - timedelta(days=200)}, NOW) == 70
    # no last_seen_at: the last order stands in. 90 days: 30 × (1 − 90/180) = 15 → 15 + 70 = 85
    fallback = {**best, "last_seen_at": None, "last_order_at": (NOW - timedelta(days=90)).isoformat()}
    assert engagement_score(fallback, NOW) == 85


def test_engagement_score_rounds_half_up() -> None:
    # 15 × 0.1 = 1.5 → 2; 10 × 0.25 = 2.5 → 3 (half up; Python's round() would give 2)
    assert engagement_score({"click_rate": 0.1}, NOW) == 2
    assert engagement_score({"open_rate": 0.25}, NOW) == 3


# ------------------------------------------------------------------------------------------ funnel


def test_funnel_maps_segments_to_the_eight_steps() -> None:
    sizes = [
        {"date": "2024-05-01", "segment": "promo_registered", "count": 50},
        {"date": "2024-05-01", "segment": "cold", "count": 400},
        {"date": "2024-05-01", "segment": "newbie", "count": 30},
        {"date": "2024-05-01", "segment": "loyal", "count": 10},
        {"date": "2024-05-01", "segment": "inactive", "count": 7},
        {"date": "2024-05-02", "segment": "promo_registered", "count": 45},
        {"date": "2024-05-02", "segment": "cold", "count": 410},
        {"date": "2024-05-02", "segment": "warm", "count": 20},
        {"date": "2024-05-02", "segment": "hot", "count": 6},
        {"date": "2024-05-02", "segment": "newbie", "count": 28},
        {"date": "2024-05-02", "segment": "neutral", "count": 12},
        {"date": "2024-05-02", "segment": "loyal", "count": 11},
        {"date": "2024-05-02", "segment": "vip", "count": 3},
        {"date": "2024-05-02", "segment": "promoter", "count": 9},
        {"date": "2024-05-02", "segment": "inactive", "count": 8},
        {"date": "2024-05-02", "segment": "lost", "count": 2},
        {"date": "2024-05-02", "segment": "sms", "count": 99},  # a flag with no step
    ]
    flows: list[dict[str, Any]] = [
        {"date": "2024-05-02", "from": "newbie", "to": "loyal", "count": 1},
        {"date": "2024-05-02", "from": "hot", "to": "newbie", "count": 2},
        {"date": "2024-05-01", "from": "hot", "to": "newbie", "count": 3},
        {"date": "2024-05-02", "from": "loyal", "to": "inactive", "count": 1},
        {"date": "2024-05-02", "from": "inactive", "to": "neutral", "count": 1},
        {"date": "2024-05-02", "from": "newbie", "to": "neutral", "count": 4},
        {"date": "2024-05-02", "from": "loyal", "to": "newbie", "count": 2},
        {"date": "2024-05-02", "from": None, "to": "cold", "count": 10},
    ]
    result = funnel(sizes, flows)
    assert [s["step"] for s in result["stages"]] == list(RELATIONSHIP_STEPS)
    assert RELATIONSHIP_STEPS == (
        "identify",
        "reach",
        "leads",
        "warm-up",
        "sale",
        "loyalty",
        "upsell",
        "recommendation",
    )
    counts = {s["step"]: s["count"] for s in result["stages"]}
    # on the latest day 05-02; sale = newbie 28 + neutral 12 = 40
    assert counts == {
        "identify": 45,
        "reach": 410,
        "leads": 20,
        "warm-up": 6,
        "sale": 40,
        "loyalty": 11,
        "upsell": 3,
        "recommendation": 9,
    }
    sale = next(s for s in result["stages"] if s["step"] == "sale")
    assert sale["segments"] == ["newbie", "neutral"]
    assert sale["series"] == [{"date": "2024-05-01", "count": 30}, {"date": "2024-05-02", "count": 40}]
    assert result["losses"]["count"] == 10  # inactive 8 + lost 2
    assert result["losses"]["series"][0] == {"date": "2024-05-01", "count": 7}
    assert result["as_of"] == "2024-05-02"
    # flows summed over days (hot → newbie: 2 + 3), largest first
    assert [(f["from"], f["to"], f["count"], f["direction"]) for f in result["flows"]] == [
        (None, "cold", 10, "new"),
        ("hot", "newbie", 5, "forward"),  # warm-up → sale
        ("newbie", "neutral", 4, "within"),  # both are "sale"
        ("loyal", "newbie", 2, "backward"),  # loyalty → sale
        ("inactive", "neutral", 1, "recovery"),
        ("loyal", "inactive", 1, "loss"),
        ("newbie", "loyal", 1, "forward"),
    ]
    hot = result["flows"][1]
    assert (hot["from_step"], hot["to_step"]) == ("warm-up", "sale")


def test_the_relationship_steps_are_stage_sizes_not_a_funnel() -> None:
    """Issue 14: the steps come from exclusive and unrelated segments, so no step is a subset of the one
    before: named and charted as stage sizes; a funnel only for nested steps."""
    import retention.analytics.stats as stats_mod
    result = funnel([{"date": "2026-01-01", "segment": "loyal", "count": 5},
                     {"date": "2026-01-01", "segment": "newbie", "count": 3}], [])
    assert result["kind"] == "stage_sizes" and "not a funnel" in result["title"]
    nested = frozenset(itertools.pairwise(RELATIONSHIP_STEPS))
    original = stats_mod.NESTED_STEPS
    stats_mod.NESTED_STEPS = nested
    try:
        assert funnel([], [])["kind"] == "funnel"
    finally:
        stats_mod.NESTED_STEPS = original
    import io

    from cli.report import print_funnel
    out = io.StringIO()
    print_funnel(result, out)
    assert out.getvalue().startswith("Customers per relationship step (stage sizes")


def test_funnel_without_data() -> None:
    result = funnel([], [])
    assert all(s["count"] == 0 and s["series"] == [] for s in result["stages"])
    assert result["losses"]["count"] == 0
    assert result["as_of"] is None
    assert result["flows"] == []


def test_report_numbers_are_finite() -> None:
    # every number a JSON encoder will see is finite (no NaN / inf from an empty denominator)
    report = rule_report("welcome", [{"date": "2024-05-01", "step": 0, "variant": "A", "sent": 0}])
    stack: list[Any] = [report]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float):
            assert math.isfinite(item)
