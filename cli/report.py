"""`retention report`: per-rule tables (totals, rates, steps and variants, holdout uplift, A/B verdict) on
the terminal; charts as PNG (matplotlib, Agg) and one self-contained HTML page with the PNGs embedded.

A rule or a period without data prints "no data for this period" and gets no chart; nothing crashes
on empty input.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any, TextIO

from cli.client import ApiError, path_part
from cli.commands import print_nps
from cli.context import Ctx
from cli.output import fmt, pct, table

STEP_COUNTERS = ("entered", "sent", "delivered", "opened", "clicked", "unsubscribed", "bounced", "suppressed",
                 "converted", "revenue")


def has_data(stats: dict[str, Any]) -> bool:
    totals = stats.get("totals") or {}
    return any(totals.get(k) for k in STEP_COUNTERS) or bool((stats.get("holdout") or {}).get("customers"))


def _pp(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pp"


def uplift_line(stats: dict[str, Any]) -> str:
    hold = stats.get("holdout") or {}
    up = stats.get("uplift") or {}
    if not hold.get("customers"):
        return "holdout: none in this period (set holdout_percent to measure the uplift)"
    line = (f"holdout: {hold['customers']} customers, {hold.get('converted', 0)} converted "
            f"({pct(up.get('holdout_rate'))}) vs treated {pct(up.get('treated_rate'))}")
    if up.get("insufficient_data") or up.get("absolute_uplift") is None:
        n = int(hold.get("customers") or 0) + int((stats.get("totals") or {}).get("entered") or 0)
        return line + " · uplift: " + str(up.get("summary") or f"not enough data yet (n = {n})")
    ci = up.get("ci95")
    ci_text = f", 95% CI {_pp(ci[0])} … {_pp(ci[1])}" if isinstance(ci, list | tuple) and len(ci) == 2 else ""
    verdict = "significant" if up.get("significant") else "not significant"
    p = up.get("p_value")
    return line + f" · uplift {_pp(up['absolute_uplift'])}{ci_text}, p={fmt(p) if p is not None else '-'} ({verdict})"


def ab_lines(stats: dict[str, Any]) -> list[str]:
    out = []
    verdicts = {"winner": "winner", "no_difference_yet": "no difference yet", "sample_too_small": "sample too small"}
    for test in stats.get("ab") or []:
        parts = [f"{v['name']} {pct(v['converted'] / v['sent'] if v['sent'] else None)} (n={v['sent']})"
                 for v in test.get("variants", [])]
        verdict = verdicts.get(test.get("verdict", ""), test.get("verdict", "?"))
        if test.get("winner"):
            verdict += f": {test['winner']}"
        out.append(f"A/B step {test['step']}: " + " vs ".join(parts) + f" → {verdict}")
    return out


def print_rule(stats: dict[str, Any], out: TextIO) -> None:
    rule = stats["rule"]
    if not has_data(stats):
        out.write(f"\n== {rule} ==\nno data for this period\n")
        return
    t = stats["totals"]
    r = stats.get("rates") or {}
    out.write(f"\n== {rule} ==\n")
    out.write(f"entered {fmt(t['entered'])} · sent {fmt(t['sent'])} · delivered {fmt(t['delivered'])} · "
              f"opened {fmt(t['opened'])} · clicked {fmt(t['clicked'])} · converted {fmt(t['converted'])} · "
              f"revenue {fmt(float(t['revenue']))}\n")
    out.write(f"rates: delivery {pct(r.get('delivery_rate'))} · open {pct(r.get('open_rate'))} · "
              f"click {pct(r.get('click_rate'))} · conversion {pct(r.get('conversion_rate'))} · "
              f"unsubscribe {pct(r.get('unsubscribe_rate'))} · suppressed {pct(r.get('suppression_rate'))}\n")
    steps = [s for s in stats.get("steps") or [] if s["step"] >= 0 or s.get("converted") or s.get("entered")]
    if steps:
        table(["step", "variant", "sent", "delivered", "opened", "clicked", "suppressed", "converted", "revenue",
               "conv/sent"],
              [["entry" if s["step"] < 0 else s["step"], s["variant"], s["sent"], s["delivered"], s["opened"],
                s["clicked"], s["suppressed"], s["converted"], float(s["revenue"]),
                pct(s["converted"] / s["sent"] if s["sent"] else None)] for s in steps], out, indent="  ")
    reasons = stats.get("suppressed_by_reason") or {}
    if reasons:
        out.write("not sent: " + ", ".join(f"{k} {v}" for k, v in reasons.items()) + "\n")
    out.write(uplift_line(stats) + "\n")
    for line in ab_lines(stats):
        out.write(line + "\n")


# ---- charts -------------------------------------------------------------------------------------------

def _plt() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def activity_chart(stats: dict[str, Any], path: Path) -> Path | None:
    daily = stats.get("daily") or []
    if not any(d.get("sent") or d.get("converted") for d in daily):
        return None
    plt = _plt()
    days = [d["date"] for d in daily]
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    ax.bar(days, [d["sent"] for d in daily], color="#8ab4f8", label="sent")
    ax.plot(days, [d["converted"] for d in daily], color="#d93025", marker="o", label="converted")
    ax.set_title(f"{stats['rule']}: sends and conversions per day")
    ax.legend(loc="upper left")
    step = max(1, len(days) // 10)
    ax.set_xticks(range(0, len(days), step), [days[i][5:] for i in range(0, len(days), step)])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def variants_chart(stats: dict[str, Any], path: Path) -> Path | None:
    tests = [t for t in stats.get("ab") or [] if any(v.get("sent") for v in t.get("variants", []))]
    if not tests:
        return None
    plt = _plt()
    labels, rates = [], []
    for t in tests:
        for v in t["variants"]:
            labels.append(f"step {t['step']} {v['name']}\n(n={v['sent']})")
            rates.append(100 * v["converted"] / v["sent"] if v["sent"] else 0.0)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(labels)), 3.2), dpi=100)
    ax.bar(labels, rates, color="#81c995")
    ax.set_ylabel("conversion, %")
    ax.set_title(f"{stats['rule']}: variants")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def nps_chart(nps: dict[str, Any], path: Path) -> Path | None:
    trend = [t for t in nps.get("trend") or [] if t.get("nps") is not None]
    if not trend:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    ax.plot([t["period_start"] for t in trend], [t["nps"] for t in trend], marker="o", color="#1a73e8")
    ax.axhline(0, color="#999", linewidth=0.8)
    ax.set_ylim(-100, 100)
    ax.set_title("NPS trend")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def print_funnel(funnel: dict[str, Any], out: TextIO) -> None:
    """Seed 000's relationship steps with their sizes, then the largest flows between lifecycle segments."""
    stages = funnel.get("stages") or []
    if not any(s.get("count") for s in stages):
        out.write("funnel: no data for this period\n")
        return
    title = funnel.get("title") or ("Relationship funnel" if funnel.get("kind") == "funnel"
                                     else "Customers per relationship step (stage sizes, not a funnel)")
    out.write(f"{title} as of {funnel.get('as_of') or funnel.get('to')}:\n")
    width = max(len(str(s["step"])) for s in stages)
    top = max(int(s.get("count") or 0) for s in stages) or 1
    for s in stages:
        bar = "#" * max(0, round(40 * int(s.get("count") or 0) / top))
        out.write(f"  {s['step']:<{width}}  {int(s.get('count') or 0):>7}  {bar}\n")
    flows = [f for f in funnel.get("flows") or [] if f.get("from") and f.get("to")][:8]
    if flows:
        out.write("flows between lifecycle segments:\n")
        for f in flows:
            out.write(f"  {f['from']} → {f['to']}: {f['count']} ({f.get('direction', '')})\n")


def funnel_chart(funnel: dict[str, Any], path: Path) -> Path | None:
    stages = funnel.get("stages") or []
    if not any(s.get("count") for s in stages):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    names = [str(s["step"]) for s in stages]
    ax.barh(names[::-1], [int(s.get("count") or 0) for s in stages][::-1], color="#34a853")
    ax.set_title("Relationship funnel (seed 000 CJM)" if funnel.get("kind") == "funnel"
                 else "Customers per relationship step: stage sizes (seed 000 CJM)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---- HTML ---------------------------------------------------------------------------------------------

def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _html_table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(period: str, rules: list[dict[str, Any]], charts: dict[str, list[Path]], nps: dict[str, Any] | None,
              nps_png: Path | None, funnel: dict[str, Any] | None = None, funnel_png: Path | None = None,
              coupons: list[dict[str, Any]] | None = None) -> str:
    parts = [f"<h1>Retention report</h1><p>{html.escape(period)}</p>"]
    if funnel is not None:
        title = funnel.get("title") or ("Relationship funnel" if funnel.get("kind") == "funnel"
                                         else "Customers per relationship step (stage sizes, not a funnel)")
        parts.append(f"<h2>{html.escape(str(title))}</h2>")
        stages = funnel.get("stages") or []
        parts.append(_html_table(["step", "segments", "customers"],
                                 [[s["step"], ", ".join(s.get("segments") or []), s.get("count", 0)] for s in stages]))
        if funnel_png is not None:
            parts.append(_img(funnel_png))
    for stats in rules:
        rule = stats["rule"]
        parts.append(f"<h2>{html.escape(rule)}</h2>")
        if not has_data(stats):
            parts.append("<p class=empty>no data for this period</p>")
            continue
        t = stats["totals"]
        parts.append(_html_table(list(t), [list(t.values())]))
        steps = stats.get("steps") or []
        if steps:
            parts.append(_html_table(["step", "variant", "sent", "delivered", "opened", "clicked", "converted",
                                      "revenue"],
                                     [["entry" if s["step"] < 0 else s["step"], s["variant"], s["sent"],
                                       s["delivered"], s["opened"], s["clicked"], s["converted"], float(s["revenue"])]
                                      for s in steps]))
        parts.append(f"<p>{html.escape(uplift_line(stats))}</p>")
        parts += [f"<p>{html.escape(line)}</p>" for line in ab_lines(stats)]
        parts += [_img(p) for p in charts.get(rule, [])]
    if coupons:
        parts.append("<h2>Coupon pools (all time)</h2>")
        parts.append(_html_table(list(POOL_COLUMNS), [[p.get(c) for c in POOL_COLUMNS] for p in coupons]))
    parts.append("<h2>NPS</h2>")
    overall = (nps or {}).get("overall") or {}
    if not overall.get("responses"):
        parts.append("<p class=empty>no data for this period</p>")
    else:
        parts.append(f"<p>NPS {fmt(overall['nps'])} ({html.escape(str(overall['label']))}), "
                     f"{overall['responses']} responses</p>")
        if nps_png is not None:
            parts.append(_img(nps_png))
    style = ("body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;"
             "margin:.5rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:right}"
             "th{background:#f4f4f4}.empty{color:#888}img{max-width:100%;display:block;margin:.5rem 0}")
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>Retention report</title><style>{style}'
            f"</style></head><body>{''.join(parts)}</body></html>")


# ---- the command --------------------------------------------------------------------------------------
POOL_COLUMNS = ("pool", "discount", "issued", "redeemed", "revenue", "left")


def print_coupons(pools: list[dict[str, Any]], out: TextIO) -> None:
    out.write("coupon pools (all time)\n")
    out.write(f"  {'pool':<20} {'discount':>10} {'issued':>8} {'redeemed':>9} {'revenue':>12} {'left':>8}\n")
    for p in pools:
        out.write(f"  {p['pool']:<20} {p.get('discount') or '-':>10} {p['issued']:>8} {p['redeemed']:>9} "
                  f"{p['revenue']:>12} {p['left']:>8}\n")


def run_report(ctx: Ctx, rules: list[str] | None, date_from: str | None, date_to: str | None, out_dir: str) -> int:
    params = {"from": date_from, "to": date_to}
    rule_ids = rules or [r["id"] for r in ctx.client.get("/rules").get("rules", [])]
    all_stats = []
    for rule_id in rule_ids:
        all_stats.append(ctx.client.get(f"/stats/rules/{path_part(rule_id)}", **params))
    try:
        nps: dict[str, Any] | None = ctx.client.get("/nps", **params, period="month")
    except ApiError as exc:
        ctx.warn(f"NPS not included: {exc.message}")
        nps = None
    try:
        funnel: dict[str, Any] | None = ctx.client.get("/stats/funnel", **params)
    except ApiError as exc:
        ctx.warn(f"funnel not included: {exc.message}")
        funnel = None
    try:
        coupons: list[dict[str, Any]] | None = ctx.client.get("/coupons").get("pools")
    except ApiError as exc:
        ctx.warn(f"coupon pools not included: {exc.message}")
        coupons = None
    period = f"{date_from or 'all time'} … {date_to or 'today'}"
    if ctx.json_output:
        ctx.dump({"rules": all_stats, "nps": nps, "funnel": funnel, "coupons": coupons})
    else:
        ctx.echo(f"report {period}")
        if not rule_ids:
            ctx.echo("no rules applied")
        for stats in all_stats:
            print_rule(stats, ctx.out)
        ctx.echo("")
        if nps is not None:
            print_nps(nps, "month", ctx.out)
        if funnel is not None:
            print_funnel(funnel, ctx.out)
        if coupons:
            print_coupons(coupons, ctx.out)
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    charts: dict[str, list[Path]] = {}
    for stats in all_stats:
        if not has_data(stats):
            continue
        name = _safe(stats["rule"])
        made = [activity_chart(stats, target / f"{name}-activity.png"),
                variants_chart(stats, target / f"{name}-variants.png")]
        charts[stats["rule"]] = [p for p in made if p is not None]
    nps_png = nps_chart(nps, target / "nps-trend.png") if nps else None
    funnel_png = funnel_chart(funnel, target / "funnel.png") if funnel else None
    page = target / "report.html"
    page.write_text(html_page(period, all_stats, charts, nps, nps_png, funnel, funnel_png, coupons),
                    encoding="utf-8")
    pngs = [p for paths in charts.values() for p in paths] + [p for p in (nps_png, funnel_png) if p]
    if not ctx.json_output:
        ctx.echo("")
        ctx.echo(f"written: {page}" + (f" and {len(pngs)} chart(s) in {target}" if pngs else
                                       " (no charts: no data for this period)"))
    return 0
