"""Customers: search by id, email or phone, the profile (traits, consent with its log, KPIs, segments, journeys,
a timeline of events and messages) and erasure with a typed confirmation (the admin API's Admin.forget)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from retention.console.web import ROOT, allowed, app, arg, audited, form, redirect, render, t
from retention.core.http import path_id
from retention.core.runtime import deps

TIMELINE_EVENTS = 100  # the latest events on the profile page (the segment history is read from them)


def find(q: str) -> str | None:
    """A customer id from an id, an email or a phone (the profiles table's email and phone indexes)."""
    from retention.customers.store import ProfileRepo
    d = deps()
    repo = ProfileRepo(d.dynamodb, d.env.profiles_table)
    if "@" in q:
        return repo.customer_by_email(q.strip().lower())
    from retention.core import clock
    sp = repo.load(q, clock.now(), consistent=False)
    if sp.exists and not sp.profile.erased:
        return q
    from retention.messaging.sms import normalize_phone
    return repo.customer_by_phone(q) if normalize_phone(q) else None


@app.get("/console/customers")
def search() -> Response:
    q = (arg("q") or "").strip()
    if q:
        found = find(q)
        if found:
            from urllib.parse import quote
            return redirect(f"{ROOT}/customers/{quote(found, safe='')}")
        return render("customers.html", q=q, message=t("No customer {q}.", q=q), status=404)
    erased = arg("erased")
    return render("customers.html", q="", message=t("Customer {id} was erased.", id=erased) if erased else None)


def timeline(customer: dict[str, Any], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events and messages, newest first."""
    rows = [{"at": e.get("timestamp") or e.get("received_at") or "", "kind": "event",
             "what": e.get("event") or e.get("type"), "detail": e.get("properties") or e.get("traits") or {}}
            for e in events]
    rows += [{"at": m.get("sent_at") or m.get("created_at") or "", "kind": "message",
              "what": f"{m.get('channel')} · {m.get('rule')} · {m.get('template')}",
              "detail": {k: m.get(k) for k in ("status", "subject", "variant", "reason") if m.get(k)},
              "ledger": m.get("ledger_id") if m.get("status") == "sent" else None}
             for m in customer.get("messages") or []]
    return sorted(rows, key=lambda r: str(r["at"]), reverse=True)


@app.get("/console/customers/<customer_id>")
def profile(customer_id: str) -> Response:
    from retention.admin.views import Admin
    customer_id = path_id(customer_id)
    admin = Admin(deps())
    customer = admin.customer(customer_id)
    events = admin.events(customer_id, limit=TIMELINE_EVENTS)["events"]
    return render("customer.html", c=customer, timeline=timeline(customer, events),
                  history=segment_history(events), error=None)


@app.get("/console/customers/<customer_id>/messages/<ledger_id>")
def message(customer_id: str, ledger_id: str) -> Response:
    """A sent message re-opened: re-rendered from the template version recorded at `sent`, with the recorded
    coupon and the customer's current profile (retention.admin.sent; bodies are not stored)."""
    from retention.admin.sent import reopen
    customer_id = path_id(customer_id)
    m = reopen(deps(), customer_id, path_id(ledger_id))
    return render("message.html", customer_id=customer_id, m=m)


def segment_history(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The segment moves among the timeline's events, newest first: each move is an internal `Segment
    Entered` / `Segment Exited` event (its history; no rows of its own)."""
    moves = []
    for e in events:
        if e.get("internal") and e.get("event") in ("Segment Entered", "Segment Exited"):
            p = e.get("properties") or {}
            moves.append({"at": e.get("timestamp"), "group": p.get("group"), "segment": p.get("segment"),
                          "kind": "entered" if e["event"] == "Segment Entered" else "exited",
                          "reason": p.get("reason")})
    return sorted(moves, key=lambda m: str(m["at"]), reverse=True)


@app.post("/console/customers/<customer_id>/erase")
def erase(customer_id: str) -> Response:
    from urllib.parse import quote

    from retention.admin.views import Admin
    customer_id = path_id(customer_id)
    admin_path = f"/admin/customers/{customer_id}"
    allowed("DELETE", admin_path)
    if form().get("confirm", "").strip() != customer_id:
        admin = Admin(deps())
        customer = admin.customer(customer_id)
        events = admin.events(customer_id, limit=50)["events"]
        return render("customer.html", status=422, c=customer, timeline=timeline(customer, events),
                      error=t("The confirmation does not match the customer id."))
    answer = Admin(deps()).forget(customer_id)
    audited("DELETE", admin_path, answer)
    return redirect(f"{ROOT}/customers?erased={quote(customer_id, safe='')}")


@app.post("/console/customers/<customer_id>/segments")
def assign(customer_id: str) -> Response:
    """A manual segment (the admin API's POST /admin/customers/{id}/segments)."""
    from urllib.parse import quote

    from retention.admin.previews import Previews
    customer_id = path_id(customer_id)
    admin_path = f"/admin/customers/{customer_id}/segments"
    allowed("POST", admin_path)
    f = form()
    group, _, segment = (f.get("segment") or "").strip().partition("/")
    answer = Previews(deps()).assign(customer_id, group or None, segment or None, reason=f.get("reason") or None)
    audited("POST", admin_path, answer)
    return redirect(f"{ROOT}/customers/{quote(customer_id, safe='')}")
