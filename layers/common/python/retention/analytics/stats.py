"""Rule statistics, A/B significance, holdout uplift, engagement score and the CJM funnel.

Pure math and report shaping: no AWS here. The counter writer (messaging / journeys / feedback)
stores daily counters in MESSAGES_TABLE with one atomic `ADD` per event, and the stats API reads
them back and hands the items to `rule_report`.

Daily counter rows — the conventions the writer follows
--------------------------------------------------------
Item: pk `S#<rule>#<shard>`, sk `<YYYY-MM-DD>#<step>#<variant>` (architecture.md), plus the
attributes `date` (the UTC day of the event, ISO), `step` (int) and `variant` (str) so the reader
does not have to split the sort key (it does, when they are missing). Several shards hold the
same (date, step, variant): `rule_report` sums them.

- `step` is the index of the step in the rule's `steps` list (the same index as the outbox's
  `step`). `ENTRY_STEP` (-1) is the journey itself: `entered` (one per journey entry) and the
  conversions no message can claim (see `converted`).
- `variant` is the A/B variant name of a send step; a step without variants uses
  `DEFAULT_VARIANT` ("default", also what a missing/empty variant reads as).
- Holdout: a customer held out of the journey (the rule's `holdout_percent` or the global control
  group) is counted **only** on rows with variant `HOLDOUT_VARIANT` ("holdout", any step; -1 is
  the natural one): `entered` when held out, `converted` when he reaches the goal within the
  attribution window after entry. Holdout rows never count in `totals` or `steps`.
- Counters (`COUNTERS`): `entered`, `sent` (the provider accepted the message — the moment it
  appears in the local outbox), `delivered`, `opened`, `clicked`, `unsubscribed`, `bounced`,
  `complained` (from SES feedback, on the row of the message's own step/variant and **send day**),
  `suppressed` (not sent: no consent, suppression list, frequency cap, left the audience …),
  `converted` and `revenue`, `redeemed` and `redeemed_revenue` (a coupon issued by this step was
  redeemed by an order: retention.products.events; the order's revenue, whatever the attribution window),
  `recommendation_clicks` (a product page opened from the message's product link, by its `rtm_lid`).
- `suppressed`: write `suppressed` **and** `suppressed:<reason>` in the same UpdateItem
  (`ADD suppressed :one, #reason :one`). A row holding only reason counters still counts: the
  reader takes max(`suppressed`, sum of the reasons) per row, so neither habit double counts.
  Reasons in use: `no_consent`, `unsubscribed`, `bounced`, `complained`, `frequency_cap`,
  `audience`, `invalid_address`, `render_error`.
- `converted` / `revenue`: each treated customer who reaches the goal within the attribution
  window (default 5 days) counts **once**: on the step/variant of the last message sent to him
  before the goal, or on `ENTRY_STEP` when no message was sent yet. So `totals.converted` is
  "entered customers who converted", measured like the holdout's, and the uplift compares like
  with like; per-variant `converted / sent` is the A/B conversion rate.
- `revenue` is in the shop's currency units (a DynamoDB Number; floats are summed as decimals).

`rule_report` filters rows by `date` (inclusive ISO bounds) and returns EXACTLY the keys of
`REPORT_KEYS`; the API contract (DESIGN §7) is `rule`, `totals`, `steps`, `holdout`.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from retention.core import clock
from retention.core.errors import BadRequestError

COUNTERS: tuple[str, ...] = (
    "entered",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "unsubscribed",
    "bounced",
    "complained",
    "suppressed",
    "converted",
    "revenue",
    "redeemed",
    "redeemed_revenue",
    "recommendation_clicks",
)
COUNT_COUNTERS: tuple[str, ...] = tuple(c for c in COUNTERS if c not in ("revenue", "redeemed_revenue"))
SUPPRESSED_PREFIX = "suppressed:"
ENTRY_STEP = -1
DEFAULT_VARIANT = "default"
HOLDOUT_VARIANT = "holdout"
REPORT_KEYS: tuple[str, ...] = (
    "rule",
    "totals",
    "steps",
    "holdout",
    "rates",
    "suppressed_by_reason",
    "ab",
    "uplift",
    "daily",
    "answers",
)
ANSWER_PREFIX = "answer:"  # a one-click survey answer on its message's row (retention.surveys.answers)

Z_95 = 1.959963984540054  # the 97.5 % quantile of N(0, 1): a two-sided 95 % interval
RATE_DIGITS = 4


def suppressed_counter(reason: str) -> str:
    """Attribute name of a suppression reason counter (`suppressed:frequency_cap`)."""
    return f"{SUPPRESSED_PREFIX}{reason}"


# ------------------------------------------------------------------------------------ statistics


def normal_cdf(x: float) -> float:
    """Φ(x) of the standard normal distribution (math.erf: no scipy in Lambda)."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def two_sided_p_value(z: float) -> float:
    """P(|Z| ≥ |z|) = 2·(1 − Φ(|z|)), computed with erfc so tiny p-values keep their digits."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def _check_counts(conv: int, n: int, label: str) -> None:
    if n < 0 or conv < 0:
        raise BadRequestError(f"{label}: counts cannot be negative (converted={conv}, n={n})")
    if conv > n:
        raise BadRequestError(f"{label}: converted ({conv}) cannot exceed the sample ({n})")


def two_proportion_test(conv_a: int, n_a: int, conv_b: int, n_b: int) -> dict[str, Any]:
    """Two-sided z test of p_a = p_b.

    - z uses the pooled proportion p = (conv_a + conv_b) / (n_a + n_b) (the null hypothesis
      says both groups share it): SE₀ = √(p(1−p)(1/n_a + 1/n_b)), z = (p_a − p_b) / SE₀;
    - the 95 % interval of the difference p_a − p_b uses the unpooled SE
      √(p_a(1−p_a)/n_a + p_b(1−p_b)/n_b) (no null hypothesis for an estimate).
    With an empty group every statistic is None. When both groups are all-0 or all-1 there is no
    variance: z = 0, p = 1 and the interval is [0, 0].
    """
    _check_counts(conv_a, n_a, "group a")
    _check_counts(conv_b, n_b, "group b")
    p_a = conv_a / n_a if n_a else None
    p_b = conv_b / n_b if n_b else None
    if p_a is None or p_b is None:
        return {"p_a": p_a, "p_b": p_b, "diff": None, "z": None, "p_value": None, "ci95": None}
    diff = p_a - p_b
    pooled = (conv_a + conv_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    if se_pooled == 0.0:
        z, p_value = 0.0, 1.0
    else:
        z = diff / se_pooled
        p_value = two_sided_p_value(z)
    se = math.sqrt(p_a * (1.0 - p_a) / n_a + p_b * (1.0 - p_b) / n_b)
    return {
        "p_a": p_a,
        "p_b": p_b,
        "diff": diff,
        "z": z,
        "p_value": p_value,
        "ci95": [diff - Z_95 * se, diff + Z_95 * se],
    }


def _as_int(value: object, label: str) -> int:
    number = _decimal(value, label)
    return int(number)


def ab_verdict(
    variants: list[dict[str, Any]], *, min_sample: int = 100, alpha: float = 0.05
) -> dict[str, Any]:
    """Is one variant of an A/B(/n) test better than all the others?

    The rule:
    1. Every variant needs at least `min_sample` sends; otherwise the verdict is
       `sample_too_small` (the comparisons are still computed, for display, but decide nothing:
       a z test on a handful of sends flips with every new conversion).
    2. The best variant is the one with the highest conversion rate `converted / sent` (on a tie,
       the larger sample, then the earlier in the list).
    3. The best is compared with each other variant by `two_proportion_test`. With k variants that
       is k − 1 tests, so each is run at alpha / (k − 1) (Bonferroni): with 3+ variants, testing
       every pair at 0.05 would find a "winner" by chance far more often than 5 % of the time.
       With 2 variants the threshold is alpha itself.
    4. `winner` when the best beats every other variant significantly (p < the adjusted alpha,
       and a positive difference); otherwise `no_difference_yet` (keep the test running).
    Conversions above the sent count (a goal attributed to a customer whose later send was
    suppressed) are capped at the sample so a rate never exceeds 1.
    """
    if len(variants) < 2:
        raise BadRequestError("an A/B test needs at least two variants")
    if not 0 < alpha < 1:
        raise BadRequestError(f"alpha must be between 0 and 1, got {alpha}")
    clean: list[tuple[str, int, int]] = []
    for index, variant in enumerate(variants):
        name = str(variant.get("name", index))
        sent = max(0, _as_int(variant.get("sent", 0), f"variant {name} sent"))
        converted = min(sent, max(0, _as_int(variant.get("converted", 0), f"variant {name} converted")))
        clean.append((name, sent, converted))

    def rank(item: tuple[int, tuple[str, int, int]]) -> tuple[float, int, int]:
        index, (_, sent, converted) = item
        return (converted / sent if sent else 0.0, sent, -index)

    best_index, best = max(enumerate(clean), key=rank)
    adjusted = alpha / (len(clean) - 1)
    comparisons = []
    all_significant = True
    for index, other in enumerate(clean):
        if index == best_index:
            continue
        test = two_proportion_test(best[2], best[1], other[2], other[1])
        significant = test["p_value"] is not None and test["diff"] > 0 and test["p_value"] < adjusted
        all_significant = all_significant and significant
        comparisons.append(
            {"a": best[0], "b": other[0], **test, "alpha": adjusted, "significant": significant}
        )
    if any(sent < min_sample for _, sent, _ in clean):
        return {"verdict": "sample_too_small", "winner": None, "comparisons": comparisons}
    if all_significant:
        return {"verdict": "winner", "winner": best[0], "comparisons": comparisons}
    return {"verdict": "no_difference_yet", "winner": None, "comparisons": comparisons}


def uplift(
    treated_n: int, treated_conv: int, holdout_n: int, holdout_conv: int, *, alpha: float = 0.05
) -> dict[str, Any]:
    """What the journey added over doing nothing: treated vs holdout conversion.

    `absolute_uplift` = treated_rate − holdout_rate (with its 95 % interval and the two-sided p
    of the pooled z test), `relative_uplift` = absolute / holdout_rate (None when the holdout
    never converted). When either group is empty, or nobody in either group converted yet (zero events
    say nothing about a difference: not "+0.0 pp, p = 1"), `insufficient_data` is True and every
    comparison is None: never a division by zero, never a made-up 0. Conversions above a group's
    size are capped at its size (see `ab_verdict`). `summary` is the sentence to show a marketer:
    "not enough data yet (n = …)" or "+1.2 pp (95 % CI …, p = …)"."""
    treated_n, holdout_n = max(0, int(treated_n)), max(0, int(holdout_n))
    treated_conv = min(treated_n, max(0, int(treated_conv)))
    holdout_conv = min(holdout_n, max(0, int(holdout_conv)))
    treated_rate = treated_conv / treated_n if treated_n else None
    holdout_rate = holdout_conv / holdout_n if holdout_n else None
    if treated_rate is None or holdout_rate is None or treated_conv + holdout_conv == 0:
        return {
            "treated_rate": treated_rate,
            "holdout_rate": holdout_rate,
            "absolute_uplift": None,
            "relative_uplift": None,
            "ci95": None,
            "p_value": None,
            "significant": False,
            "insufficient_data": True,
            "summary": not_enough_data(treated_n + holdout_n),
        }
    test = two_proportion_test(treated_conv, treated_n, holdout_conv, holdout_n)
    absolute = treated_rate - holdout_rate
    low, high = test["ci95"]
    return {
        "treated_rate": treated_rate,
        "holdout_rate": holdout_rate,
        "absolute_uplift": absolute,
        "relative_uplift": absolute / holdout_rate if holdout_rate else None,
        "ci95": test["ci95"],
        "p_value": test["p_value"],
        "significant": test["p_value"] < alpha,
        "insufficient_data": False,
        "summary": f"{absolute * 100:+.1f} pp (95 % CI {low * 100:+.1f}…{high * 100:+.1f}, p = {test['p_value']:.3f})",
    }


def not_enough_data(n: int) -> str:
    """What a comparison without a single event reads (uplift, A/B)."""
    return f"not enough data yet (n = {int(n)})"


# ---------------------------------------------------------------------------------- rule report


def _decimal(value: object, label: str) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool):
        raise BadRequestError(f"{label} must be a number, got {value!r}")
    try:
        if isinstance(value, int | Decimal):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(str(value))  # 0.1 stays 0.1, not its binary neighbour
        elif isinstance(value, str):
            number = Decimal(value.strip())
        else:
            raise TypeError(type(value).__name__)
    except (InvalidOperation, TypeError, ValueError):
        raise BadRequestError(f"{label} must be a number, got {value!r}") from None
    if not number.is_finite():
        raise BadRequestError(f"{label} must be a finite number, got {value!r}")
    return number


def _money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _as_date(value: object, label: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise BadRequestError(f"{label} must be a date YYYY-MM-DD, got {value!r}") from None


def _row_key(row: Mapping[str, Any]) -> tuple[date, int, str] | None:
    """(date, step, variant) of a counter row; None for an item that is not a counter row."""
    raw_date, step, variant = row.get("date"), row.get("step"), row.get("variant")
    sort_key = row.get("sk")
    if (raw_date is None or step is None) and isinstance(sort_key, str) and sort_key.count("#") >= 2:
        sk_date, sk_step, sk_variant = sort_key.split("#", 2)
        raw_date = sk_date if raw_date is None else raw_date
        step = sk_step if step is None else step
        variant = sk_variant if variant is None else variant
    try:
        day = _as_date(raw_date, "date")
        step_number = int(_decimal(step, "step")) if step is not None else None
    except BadRequestError:
        return None
    if day is None or step_number is None:
        return None
    return day, step_number, str(variant) if variant not in (None, "") else DEFAULT_VARIANT


class _Bucket:
    """Counters of one (step, variant) or of the totals: ints, revenue as an exact Decimal."""

    __slots__ = ("counts", "redeemed_revenue", "revenue")

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(COUNT_COUNTERS, 0)
        self.revenue = Decimal(0)
        self.redeemed_revenue = Decimal(0)

    def add(self, other: _Bucket) -> None:
        for name in COUNT_COUNTERS:
            self.counts[name] += other.counts[name]
        self.revenue += other.revenue
        self.redeemed_revenue += other.redeemed_revenue

    def as_dict(self) -> dict[str, Any]:
        money = {"revenue": _money(self.revenue), "redeemed_revenue": _money(self.redeemed_revenue)}
        return {name: money[name] if name in money else self.counts[name] for name in COUNTERS}


def _rate(numerator: float, denominator: float) -> float | None:
    if not denominator:
        return None
    return round(numerator / denominator, RATE_DIGITS)


def rule_report(
    rule: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    date_from: str | date | None = None,
    date_to: str | date | None = None,
    min_sample: int = 100,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The statistics of one rule over the counter rows (see the module docstring).

    `date_from` / `date_to` are inclusive ISO dates; a period without rows answers zeros (and
    None rates), an inverted period is a BadRequestError. Keys, exactly: `rule`, `totals`
    (COUNTERS), `steps` [{step, variant, …COUNTERS}] sorted by step then variant, `holdout`
    {customers, converted}, `rates` (fractions, 4 decimals, None over a zero denominator),
    `suppressed_by_reason` {reason: n}, `ab` [{step, variants, verdict, winner, comparisons}] for
    every step with two or more variants, `uplift` (treated = totals.entered / totals.converted
    vs the holdout), `daily` [{date, sent, converted, revenue}] for every day from the first to the
    last day with data (gaps filled with zeros, so a chart's x axis is even), `answers` {reason: n}
    (one-click survey answers, one per message). `revenue` is
    rounded to cents (half up) after an exact decimal sum.
    """
    start = _as_date(date_from, "from")
    end = _as_date(date_to, "to")
    if start and end and start > end:
        raise BadRequestError(f"from ({start.isoformat()}) is after to ({end.isoformat()})")

    steps: dict[tuple[int, str], _Bucket] = defaultdict(_Bucket)
    holdout_customers = 0
    holdout_converted = 0
    reasons: dict[str, int] = defaultdict(int)
    answers: dict[str, int] = defaultdict(int)
    daily: dict[date, _Bucket] = defaultdict(_Bucket)

    for row in rows:
        key = _row_key(row)
        if key is None:
            continue
        day, step, variant = key
        if (start and day < start) or (end and day > end):
            continue
        if variant == HOLDOUT_VARIANT:
            holdout_customers += _as_int(row.get("entered"), "holdout entered")
            holdout_converted += _as_int(row.get("converted"), "holdout converted")
            continue
        bucket = _Bucket()
        for name in COUNT_COUNTERS:
            bucket.counts[name] = _as_int(row.get(name), name)
        bucket.revenue = _decimal(row.get("revenue"), "revenue")
        bucket.redeemed_revenue = _decimal(row.get("redeemed_revenue"), "redeemed_revenue")
        row_reasons = 0
        for attribute, value in row.items():
            if isinstance(attribute, str) and attribute.startswith(ANSWER_PREFIX):
                answers[attribute[len(ANSWER_PREFIX):]] += _as_int(value, attribute)
            if isinstance(attribute, str) and attribute.startswith(SUPPRESSED_PREFIX):
                count = _as_int(value, attribute)
                reasons[attribute[len(SUPPRESSED_PREFIX) :]] += count
                row_reasons += count
        bucket.counts["suppressed"] = max(bucket.counts["suppressed"], row_reasons)
        steps[(step, variant)].add(bucket)
        daily[day].add(bucket)

    totals = _Bucket()
    for bucket in steps.values():
        totals.add(bucket)
    t = totals.counts

    by_step: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for (step, variant), bucket in sorted(steps.items()):
        if step != ENTRY_STEP:
            by_step[step].append(
                {"name": variant, "sent": bucket.counts["sent"], "converted": bucket.counts["converted"]}
            )
    ab = [
        {"step": step, "variants": variants, **ab_verdict(variants, min_sample=min_sample, alpha=alpha)}
        for step, variants in sorted(by_step.items())
        if len(variants) >= 2
    ]

    daily_list: list[dict[str, Any]] = []
    if daily:
        day, last = min(daily), max(daily)
        while day <= last:
            bucket = daily.get(day) or _Bucket()
            daily_list.append(
                {
                    "date": day.isoformat(),
                    "sent": bucket.counts["sent"],
                    "converted": bucket.counts["converted"],
                    "revenue": _money(bucket.revenue),
                }
            )
            day += timedelta(days=1)

    return {
        "rule": rule,
        "totals": totals.as_dict(),
        "steps": [
            {"step": step, "variant": variant, **bucket.as_dict()}
            for (step, variant), bucket in sorted(steps.items())
        ],
        "holdout": {"customers": holdout_customers, "converted": holdout_converted},
        "rates": {
            "delivery_rate": _rate(t["delivered"], t["sent"]),
            "open_rate": _rate(t["opened"], t["delivered"]),
            "click_rate": _rate(t["clicked"], t["delivered"]),
            "click_to_open_rate": _rate(t["clicked"], t["opened"]),
            "unsubscribe_rate": _rate(t["unsubscribed"], t["delivered"]),
            "bounce_rate": _rate(t["bounced"], t["sent"]),
            "complaint_rate": _rate(t["complained"], t["delivered"]),
            "suppression_rate": _rate(t["suppressed"], t["sent"] + t["suppressed"]),
            "conversion_rate": _rate(t["converted"], t["entered"]),
            "holdout_conversion_rate": _rate(holdout_converted, holdout_customers),
            "revenue_per_entered": _money(totals.revenue / t["entered"]) if t["entered"] else None,
        },
        "suppressed_by_reason": {reason: reasons[reason] for reason in sorted(reasons)},
        "ab": ab,
        "uplift": uplift(t["entered"], t["converted"], holdout_customers, holdout_converted, alpha=alpha),
        "daily": daily_list,
        "answers": {reason: answers[reason] for reason in sorted(answers)},
    }


# ---------------------------------------------------------------------------- engagement score

# Customer engagement score (seed 002, "Customer Engagement Score", after SaaSholic): engagement is
# the value a customer gets, so the actions that create value weigh most, and usage signals
# (opens, clicks) least. The seed defers the exact formula, so the weights are ours: an RFM core
# (70 points) plus email engagement (30 points); clicks weigh more than opens because image
# proxies (Apple Mail Privacy Protection) inflate opens.
ENGAGEMENT_WEIGHTS: dict[str, float] = {
    "recency": 30.0,  # 1 − days since last seen / 180, floored at 0 (seed 003: inactive > 6 months)
    "frequency": 25.0,  # orders / 5, capped at 1
    "monetary": 20.0,  # revenue / monetary_cap, capped at 1
    "open_rate": 10.0,  # fraction 0–1 (a value above 1 is read as a percentage)
    "click_rate": 15.0,  # fraction 0–1 (idem)
}
RECENCY_HORIZON_DAYS = 180.0
FREQUENCY_CAP_ORDERS = 5.0
DEFAULT_MONETARY_CAP = 20_000.0  # currency units; pass the shop's own (e.g. 10 × its AOV)


def _fraction(value: object) -> float:
    if value is None:
        return 0.0
    number = float(_decimal(value, "rate"))
    if number > 1.0:
        number /= 100.0
    return min(max(number, 0.0), 1.0)


def _when(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    try:
        return clock.parse_iso(str(value))
    except ValueError:
        return None


def engagement_score(
    kpis: Mapping[str, Any], now: datetime | None = None, *, monetary_cap: float = DEFAULT_MONETARY_CAP
) -> int:
    """0–100 from the profile KPIs (keys of DESIGN §4): Σ weight × component, rounded half up.

    Components, each 0–1: recency from `last_seen_at` (else `last_order_at`), frequency from
    `orders_count`, monetary from `revenue_total` (or `revenue`), `open_rate`, `click_rate`.
    A missing KPI contributes 0 (we know nothing good about it)."""
    when = now or clock.now()
    last_seen = _when(kpis.get("last_seen_at")) or _when(kpis.get("last_order_at"))
    recency = 0.0
    if last_seen is not None:
        days = max(0.0, (when - last_seen).total_seconds() / 86_400)
        recency = max(0.0, 1.0 - days / RECENCY_HORIZON_DAYS)
    orders = float(_decimal(kpis.get("orders_count"), "orders_count"))
    frequency = min(max(orders, 0.0) / FREQUENCY_CAP_ORDERS, 1.0)
    revenue_value = kpis.get("revenue_total", kpis.get("revenue"))
    revenue = float(_decimal(revenue_value, "revenue_total"))
    monetary = min(max(revenue, 0.0) / monetary_cap, 1.0) if monetary_cap > 0 else 0.0
    components = {
        "recency": recency,
        "frequency": frequency,
        "monetary": monetary,
        "open_rate": _fraction(kpis.get("open_rate")),
        "click_rate": _fraction(kpis.get("click_rate")),
    }
    score = sum(ENGAGEMENT_WEIGHTS[name] * value for name, value in components.items())
    return max(0, min(100, math.floor(score + 0.5)))


# --------------------------------------------------------------------------------------- funnel

# Seed 000's 8 steps of the customer relationship, in order, and the segments (DESIGN §4: lifecycle,
# potential, flags, NPS group) that stand for each. The seed names the steps without a mapping;
# ours follows the segments' meaning in seeds 000 and 003:
# - identify: `promo_registered` — registered in a promotion: the shop learned who he is;
# - reach: `cold` — subscribed to news and offers: our messages reach him;
# - leads: `warm` — left a request or studied a product for long (seed 003);
# - warm-up: `hot` — started a purchase and did not finish it: the abandoned-cart warm-up;
# - sale: `newbie`, `neutral` — bought: a first order, or orders without loyalty yet;
# - loyalty: `loyal`;
# - upsell: `vip` — the flag of the customers who buy the most;
# - recommendation: `promoter` — NPS 9–10, "ready to recommend" (seed 000).
# Seed 000's "Потери" (losses) are the lifecycle segments the funnel leaks into.
RELATIONSHIP_STEPS: tuple[str, ...] = (
    "identify",
    "reach",
    "leads",
    "warm-up",
    "sale",
    "loyalty",
    "upsell",
    "recommendation",
)
STEP_SEGMENTS: dict[str, tuple[str, ...]] = {
    "identify": ("promo_registered",),
    "reach": ("cold",),
    "leads": ("warm",),
    "warm-up": ("hot",),
    "sale": ("newbie", "neutral"),
    "loyalty": ("loyal",),
    "upsell": ("vip",),
    "recommendation": ("promoter",),
}
LOSS_SEGMENTS: tuple[str, ...] = ("unstable", "inactive", "lost", "complaint", "fraud")
# (step, next step) pairs whose next step's customers are always among the step's own: only then is the
# sequence a funnel. The steps above come from different segment groups (potential, lifecycle, flags, NPS)
# and the lifecycle ones are exclusive (a loyal customer is no longer in "sale"), so none is nested: the
# report shows stage sizes, named as such, not conversion between steps.
NESTED_STEPS: frozenset[tuple[str, str]] = frozenset()
FUNNEL_TITLE = "Relationship funnel (each step a subset of the previous)"
STAGES_TITLE = "Customers per relationship step (stage sizes, not a funnel: a customer can be in several or none)"
SEGMENT_STEP: dict[str, str] = {
    segment: step for step, segments in STEP_SEGMENTS.items() for segment in segments
}


def _flow_direction(source: str | None, target: str | None) -> str:
    source_step = SEGMENT_STEP.get(source or "")
    target_step = SEGMENT_STEP.get(target or "")
    if not source:
        return "new"
    if target in LOSS_SEGMENTS:
        return "other" if source in LOSS_SEGMENTS else "loss"
    if source in LOSS_SEGMENTS and target_step:
        return "recovery"
    if source_step and target_step:
        delta = RELATIONSHIP_STEPS.index(target_step) - RELATIONSHIP_STEPS.index(source_step)
        return "forward" if delta > 0 else "backward" if delta < 0 else "within"
    return "other"


def funnel(daily_sizes: Iterable[Mapping[str, Any]], flows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The lifecycle funnel (CJM) from daily segment sizes and segment transitions.

    `daily_sizes`: [{date, segment, count}] (segment membership counted per day); `flows`:
    [{date, from, to, count}] (customers who moved; `from` None = entered a first segment).
    Returns `kind` ("funnel" only when every step is a subset of the previous, see NESTED_STEPS, else
    "stage_sizes") with its `title`, `stages` — one per relationship step, in order: {step, segments,
    count (on the latest day), series [{date, count}]} — `losses` (the same for LOSS_SEGMENTS), `as_of` (the latest
    day) and `flows` — [{from, to, from_step, to_step, direction, count}] summed over the days,
    largest first; direction is forward/backward/within (between steps), loss, recovery, new or
    other. Segments mapped to no step (flags like `sms`) are left out of the stages."""
    sizes: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for item in daily_sizes:
        day = _as_date(item.get("date"), "date")
        if day is None:
            continue
        sizes[day][str(item.get("segment"))] += _as_int(item.get("count"), "count")
    days = sorted(sizes)
    latest = days[-1] if days else None

    def stage(segments: tuple[str, ...]) -> dict[str, Any]:
        series = [
            {"date": day.isoformat(), "count": sum(sizes[day].get(s, 0) for s in segments)} for day in days
        ]
        return {"segments": list(segments), "count": series[-1]["count"] if series else 0, "series": series}

    moved: dict[tuple[str | None, str | None], int] = defaultdict(int)
    for item in flows:
        source = item.get("from") or None
        target = item.get("to") or None
        moved[(source, target)] += _as_int(item.get("count", 1), "count")
    flow_list: list[dict[str, Any]] = [
        {
            "from": source,
            "to": target,
            "from_step": SEGMENT_STEP.get(source or ""),
            "to_step": SEGMENT_STEP.get(target or ""),
            "direction": _flow_direction(source, target),
            "count": count,
        }
        for (source, target), count in moved.items()
        if count
    ]
    flow_list.sort(key=lambda f: (-f["count"], f["from"] or "", f["to"] or ""))
    nested = all(pair in NESTED_STEPS for pair in itertools.pairwise(RELATIONSHIP_STEPS))
    return {
        "kind": "funnel" if nested else "stage_sizes",
        "title": FUNNEL_TITLE if nested else STAGES_TITLE,
        "stages": [{"step": step, **stage(STEP_SEGMENTS[step])} for step in RELATIONSHIP_STEPS],
        "losses": stage(LOSS_SEGMENTS),
        "as_of": latest.isoformat() if latest else None,
        "flows": flow_list,
    }
