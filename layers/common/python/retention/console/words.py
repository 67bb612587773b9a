"""Statistics in plain words (the rule page): the A/B verdict and the holdout uplift of
retention.analytics.stats.rule_report, e.g. "B wins: +2.1 pp conversion, 95 % sure"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _pp(diff: float | None) -> str:
    return "—" if diff is None else f"{diff * 100:+.1f}"


def _sure(p_value: float | None) -> str:
    if p_value is None:
        return "—"
    sure = min(99.9, max(0.0, (1 - p_value) * 100))
    return f"{sure:.0f}" if sure < 99.5 else f"{sure:.1f}"


def _p(p_value: float | None) -> str:
    return "—" if p_value is None else f"{p_value:.2f}"


def ab_words(test: dict[str, Any], t: Callable[..., str]) -> str:
    """One A/B(/n) test of a step: {variants, verdict, winner, comparisons}."""
    n = min((int(v.get("sent") or 0) for v in test.get("variants") or []), default=0)
    comparisons = test.get("comparisons") or []
    if test.get("verdict") == "sample_too_small" or not comparisons:
        return t("not enough data yet (n = {n})", n=n)
    closest = min(comparisons, key=lambda c: (c.get("diff") is None, c.get("diff") or 0.0))
    if test.get("verdict") == "winner":
        worst_p = max((c.get("p_value") or 0.0) for c in comparisons)
        return t("{winner} wins: {diff} pp conversion, {sure} % sure", winner=test.get("winner"),
                 diff=_pp(closest.get("diff")), sure=_sure(worst_p))
    return t("no clear winner yet ({diff} pp, p = {p})", diff=_pp(closest.get("diff")), p=_p(closest.get("p_value")))


def uplift_words(uplift: dict[str, Any], holdout: dict[str, Any], treated_n: int, t: Callable[..., str],
                 min_sample: int = 100) -> str:
    n = min(int(holdout.get("customers") or 0), int(treated_n or 0))
    if uplift.get("insufficient_data") or n < min_sample:
        return t("not enough data yet (n = {n})", n=n)
    if uplift.get("significant") and (uplift.get("absolute_uplift") or 0) > 0:
        return t("the journey adds {diff} pp conversion over the holdout, {sure} % sure",
                 diff=_pp(uplift.get("absolute_uplift")), sure=_sure(uplift.get("p_value")))
    return t("no proven effect over the holdout yet ({diff} pp, p = {p})", diff=_pp(uplift.get("absolute_uplift")),
             p=_p(uplift.get("p_value")))
