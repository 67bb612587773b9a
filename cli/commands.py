"""`retention sources|customers|settings|nps …`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TextIO

import yaml

from cli.client import CliError, path_part
from cli.context import Ctx
from cli.output import fmt, pct, table

# ---- sources -------------------------------------------------------------------------------------------


def sources_create(ctx: Ctx, name: str, scopes: str | None = None) -> int:
    body: dict[str, Any] = {"name": name}
    if scopes:
        body["scopes"] = [s.strip() for s in scopes.split(",") if s.strip()]
    res = ctx.client.post("/sources", body)
    if ctx.json_output:
        ctx.dump(res)
        return 0
    ctx.echo(f"source {res['source_id']} ({res['name']}) created, scopes: {', '.join(res.get('scopes') or [])}")
    ctx.echo(f"write key: {res['write_key']}")
    ctx.echo("the write key is shown once and stored hashed: copy it now (HTTP Basic user name, empty password)")
    return 0


def sources_list(ctx: Ctx) -> int:
    return _listing(ctx, "/sources", "sources", "no sources: create one with `retention sources create NAME`",
                    ["source", "name", "key", "created", "state"],
                    lambda s: [s["source_id"], s.get("name"), s.get("key_hint"), (s.get("created_at") or "")[:19],
                               f"revoked {(s.get('revoked_at') or '')[:10]}".strip() if s.get("revoked")
                               else "active"])


def _listing(ctx: Ctx, path: str, key: str, empty: str, headers: list[str],
             row: Callable[[dict[str, Any]], list[Any]], **params: Any) -> int:
    """A list answer of the admin API: JSON as is with --json, else a table (or `empty` when there is none)."""
    data = ctx.client.get(path, **params)
    if ctx.json_output:
        ctx.dump(data)
        return 0
    rows = data.get(key, [])
    if not rows:
        ctx.echo(empty)
        return 0
    table(headers, [row(r) for r in rows], ctx.out)
    return 0


def sources_revoke(ctx: Ctx, source_id: str) -> int:
    ctx.client.delete(f"/sources/{path_part(source_id)}")
    ctx.echo(f"source {source_id} revoked: its write key is refused from now on")
    return 0


# ---- people: tokens and the audit log -------------------------------------------------------------------


def tokens_create(ctx: Ctx, name: str, role: str, expires: str | None) -> int:
    res = ctx.client.post("/tokens", {"name": name, "role": role, "expires": expires})
    if ctx.json_output:
        ctx.dump(res)
        return 0
    until = f", expires {res['expires_at'][:16]}" if res.get("expires_at") else ", no expiry"
    ctx.echo(f"token {res['token_id']} for {res['name']} ({res['role']}{until})")
    ctx.echo(f"token: {res['token']}")
    ctx.echo("shown once and stored salted and hashed: give it to the person now "
             "(RETENTION_ADMIN_TOKEN, or --token)")
    return 0


def tokens_list(ctx: Ctx) -> int:
    return _listing(ctx, "/tokens", "tokens", "no tokens",
                    ["token", "name", "role", "state", "expires", "created", "by"],
                    lambda t: [t["token_id"], t.get("name"), t.get("role"), t.get("state"),
                               (t.get("expires_at") or "never")[:16], (t.get("created_at") or "")[:16],
                               t.get("created_by")])


def tokens_revoke(ctx: Ctx, token_id: str) -> int:
    res = ctx.client.delete(f"/tokens/{path_part(token_id)}")
    ctx.echo(f"token {token_id} ({res.get('name')}) revoked: it is refused from now on")
    return 0


def audit(ctx: Ctx, since: str | None, kind: str | None, who: str | None, limit: int) -> int:
    empty = "no changes recorded" + (" for this filter" if since or kind or who else "")
    return _listing(ctx, "/audit", "entries", empty,
                    ["when", "who", "action", "kind", "id", "version"],
                    lambda e: [(e.get("when") or "")[:19], e.get("who"), e.get("action"), e.get("kind"), e.get("id"),
                               e.get("version") if e.get("version") is not None else "-"],
                    since=since, kind=kind, who=who, limit=limit)


# ---- customers -------------------------------------------------------------------------------------------


def customers_show(ctx: Ctx, customer_id: str) -> int:
    c = ctx.client.get(f"/customers/{path_part(customer_id)}")
    if ctx.json_output:
        ctx.dump(c)
        return 0
    traits = c.get("traits") or {}
    name = " ".join(str(traits[k]) for k in ("first_name", "last_name") if traits.get(k))
    ctx.echo(f"customer {c['id']}" + (f" ({name})" if name else ""))
    for key in ("email", "phone", "timezone", "locale"):
        if traits.get(key):
            ctx.echo(f"  {key}: {traits[key]}")
    consent = c.get("consent") or {}
    ctx.echo("  consent: " + ", ".join(f"{ch} {'yes' if ok else 'no'}" for ch, ok in consent.items()))
    seg = c.get("segments") or {}
    ctx.echo(f"  lifecycle: {fmt(seg.get('lifecycle'))} · potential: {fmt(seg.get('potential'))} · "
             f"NPS group: {fmt(seg.get('nps_group'))} · flags: {', '.join(seg.get('flags') or []) or '-'}")
    kpis = c.get("kpis") or {}
    if kpis:
        ctx.echo("")
        ctx.echo("KPIs:")
        table(["kpi", "value"], [[k, v] for k, v in kpis.items()], ctx.out, indent="  ")
    if c.get("journeys"):
        ctx.echo("")
        ctx.echo("journeys:")
        table(["rule", "state", "step", "entered", "next due"],
              [[j["rule"], j.get("state"), j.get("step"), (j.get("entered_at") or "")[:16],
                (j.get("next_due") or "")[:16] or "-"] for j in c["journeys"]], ctx.out, indent="  ")
    if c.get("messages"):
        ctx.echo("")
        ctx.echo("messages:")
        table(["rule", "step", "channel", "status", "sent", "reason"],
              [[m.get("rule"), m.get("step"), m.get("channel"), m.get("status"), (m.get("sent_at") or "")[:16] or "-",
                m.get("reason")] for m in c["messages"]], ctx.out, indent="  ")
    return 0


def customers_events(ctx: Ctx, customer_id: str, limit: int) -> int:
    data = ctx.client.get(f"/customers/{path_part(customer_id)}/events", limit=limit)
    if ctx.json_output:
        ctx.dump(data)
        return 0
    events = data.get("events", [])
    if not events:
        ctx.echo(f"customer {customer_id}: no stored events")
        return 0
    rows = []
    for e in events:
        detail = e.get("properties") or e.get("traits") or {}
        text = ", ".join(f"{k}={v}" for k, v in detail.items() if not isinstance(v, list | dict))
        rows.append([(e.get("timestamp") or "")[:19], e.get("type"), (e.get("event") or "") +
                     (" (internal)" if e.get("internal") else ""), e.get("messageId"), text[:60]])
    table(["timestamp", "type", "event", "messageId", "details"], rows, ctx.out)
    return 0


def customers_forget(ctx: Ctx, customer_id: str, yes: bool, stdin: TextIO) -> int:
    if not yes:
        ctx.err.write(f"Erase customer {customer_id}: profile, events, journeys and message bodies? "
                      "This cannot be undone. Type 'yes' to confirm: ")
        ctx.err.flush()
        answer = stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            ctx.warn("not erased")
            return 1
    res = ctx.client.delete(f"/customers/{path_part(customer_id)}")
    ctx.echo(f"customer {customer_id} erased: {res.get('events_deleted', 0)} events deleted, "
             f"{res.get('messages_anonymised', 0)} messages anonymised; the address stays suppressed (hashed)")
    return 0


# ---- settings --------------------------------------------------------------------------------------------


def settings_show(ctx: Ctx) -> int:
    data = ctx.client.get("/settings")
    if ctx.json_output:
        ctx.dump(data)
    else:
        ctx.out.write(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return 0


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """`key.sub=value` → (["key", "sub"], value read as YAML: numbers, booleans, null, lists, maps)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise CliError(f"expected KEY=VALUE, got {text!r}", exit_code=2)
    if re.fullmatch(r"\d+(?::\d+)+", raw.strip()):
        return key.strip().split("."), raw.strip()  # 22:00 is a time, not YAML 1.1's base-60 number 1320
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise CliError(f"{key}: cannot read the value {raw!r}: {exc}", exit_code=2) from exc
    return key.strip().split("."), value


def settings_set(ctx: Ctx, assignments: list[str]) -> int:
    current = ctx.client.get("/settings")
    patch: dict[str, Any] = {}
    for text in assignments:
        path, value = parse_assignment(text)
        if path[0] not in current:
            raise CliError(f"unknown setting {path[0]!r}; known: {', '.join(current)}", exit_code=2)
        if len(path) == 1:
            patch[path[0]] = value
            continue
        top = patch.setdefault(path[0], current[path[0]])
        node = top
        if not isinstance(node, dict):
            raise CliError(f"{'.'.join(path)}: {path[0]!r} is not a mapping", exit_code=2)
        for part in path[1:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if not isinstance(node, dict):
            raise CliError(f"{'.'.join(path)}: cannot set a key inside a {type(node).__name__}", exit_code=2)
        node[path[-1]] = value
    new = ctx.client.put("/settings", patch)
    for key in patch:
        ctx.echo(f"{key}: {yaml.safe_dump(new.get(key), allow_unicode=True, default_flow_style=True).strip()}")
    return 0


# ---- NPS -------------------------------------------------------------------------------------------------


def nps_report(ctx: Ctx, date_from: str | None, date_to: str | None, period: str) -> int:
    data = ctx.client.get("/nps", **{"from": date_from, "to": date_to, "period": period})
    if ctx.json_output:
        ctx.dump(data)
        return 0
    print_nps(data, period, ctx.out)
    return 0


def print_nps(data: dict[str, Any], period: str, out: TextIO) -> None:
    overall = data.get("overall") or {}
    span = f"{data.get('from', '?')} … {data.get('to', '?')}"
    if not overall.get("responses"):
        out.write(f"NPS {span}: no data for this period\n")
        return
    out.write(f"NPS {span}: {fmt(overall['nps'])} ({overall['label']}) · {overall['responses']} responses "
              f"({overall['promoters']} promoters, {overall['passives']} passives, "
              f"{overall['detractors']} detractors)\n")
    for title, key in (("by stage", "by_stage"), ("by shop", "by_shop")):
        rows = data.get(key) or {}
        if rows:
            out.write(f"\n{title}:\n")
            table([title.split()[1], "NPS", "label", "responses", "promoters", "detractors"],
                  [[name, s["nps"], s["label"], s["responses"], pct(s["promoters"] / s["responses"]),
                    pct(s["detractors"] / s["responses"])] for name, s in rows.items() if s.get("responses")],
                  out, indent="  ")
    trend = data.get("trend") or []
    if trend:
        out.write(f"\ntrend ({period}):\n")
        rows = []
        for t in trend:
            value = t.get("nps")
            bar = "" if value is None else ("+" * int(max(0, value) // 5) or ("-" * int(-min(0, value) // 5)))
            rows.append([t["period_start"], value, t.get("label"), t.get("responses"), bar])
        table(["period", "NPS", "label", "responses", ""], rows, out, indent="  ")


def nps_rotate(ctx: Ctx) -> int:
    res = ctx.client.post("/webhooks/nps/rotate")
    if ctx.json_output:
        ctx.dump(res)
        return 0
    ctx.echo(f"new NPS webhook signing secret: {res['secret']}")
    ctx.echo("shown once: configure it in the survey tool now; the previous secret stays valid until the next rotation")
    return 0


def demo(ctx: Ctx, customers: int, months: int, seed: int) -> int:
    """A generated shop posted like a real one (historical events: profiles, KPIs and segments move, no
    journey starts); NPS answers go through the signed webhook."""
    from local.demo import DemoError, generate
    client = ctx.client
    bar = ctx.progress("demo", None)
    try:
        summary = generate(client.url, client.write_key, customers=customers, months=months, seed=seed,
                           admin_token=client.token, progress=lambda done, total: bar.update(done, total=total))
    except DemoError as exc:
        bar.finish()
        ctx.warn(f"demo failed: {exc}")
        return 1
    bar.finish()
    if ctx.json_output:
        ctx.dump(summary)
    else:
        ctx.echo(f"demo shop: {summary.get('customers')} customers, {summary.get('events')} events, "
                 f"{summary.get('orders')} orders, accepted {summary.get('accepted')}, "
                 f"rejected {summary.get('rejected_count', 0)}")
    return 0
