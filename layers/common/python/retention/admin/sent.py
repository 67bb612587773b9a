"""A sent message re-opened (the console's customer page): message bodies are not stored, so the message is
re-rendered from what its ledger item recorded at `sent` (retention.messaging.sender._mark_sent): the template
version rendered and the issued coupon, with the customer's current profile. Honest about it: the answer says
which version rendered and whether the recorded one was still there (else the current one)."""

from __future__ import annotations

from typing import Any, Literal

from retention.core import clock, ddb
from retention.core.errors import NotFoundError, RetentionError
from retention.core.runtime import Deps
from retention.messaging.requests import ledger_key


def reopen(d: Deps, customer_id: str, ledger_id: str) -> dict[str, Any]:
    """{"ledger_id", "rule", "step", "variant", "template", "channel", "status", "sent_at", "subject" (as sent),
    "coupon", "products" (the ids shown when sent; the re-render recommends afresh), "version" (rendered),
    "recorded_version", "fallback" (bool), "trigger", "rendered": {"subject", "text", "html", "sms"} | None,
    "error"}. NotFoundError for an unknown ledger id, another
    customer's message, or an erased customer."""
    from retention.admin.previews import Previews
    from retention.language.templates import Template
    from retention.messaging.rendering import Renderer
    from retention.messaging.requests import SendRequest
    if not ledger_id.isalnum() or len(ledger_id) > 64:
        raise NotFoundError(f"message '{ledger_id}' not found")
    item = ddb.get(d.dynamodb, d.env.messages_table, *ledger_key(ledger_id), consistent=False)
    if not item or item.get("customer_id") != customer_id or item.get("erased"):
        raise NotFoundError(f"message '{ledger_id}' not found")  # never another customer's message
    now = clock.now()
    previews = Previews(d)
    profile = previews._customer(customer_id, now).profile
    template_id = str(item.get("template") or "")
    recorded = int(item["template_version"]) if item.get("template_version") is not None else None
    versions = {int(v["version"]): v for v in d.config.versions("TEMPLATE", template_id)} if template_id else {}
    chosen = versions.get(recorded) if recorded is not None else None
    fallback = chosen is None
    if chosen is None and versions:
        chosen = versions[max(versions)]
    out: dict[str, Any] = {
        "ledger_id": ledger_id, "rule": item.get("rule"), "step": item.get("step"), "variant": item.get("variant"),
        "template": template_id, "channel": item.get("channel_used") or item.get("channel"),
        "status": item.get("status"), "sent_at": item.get("sent_at"), "subject": item.get("subject"),
        "coupon": item.get("coupon"), "products": list(item.get("products") or []),
        "recorded_version": recorded, "fallback": fallback,
        "version": int(chosen["version"]) if chosen else None, "trigger": None, "rendered": None, "error": None}
    if chosen is None:
        out["error"] = f"template '{template_id}' has no stored version"
        return out
    rule = previews.library.rules().get(str(item.get("rule")))
    trigger: dict[str, Any] = {}
    if rule is not None:
        trigger, origin = previews._trigger_event(rule, profile)
        out["trigger"] = {**trigger, "source": origin}
    channel: Literal["email", "sms"] = "sms" if out["channel"] == "sms" else "email"
    req = SendRequest(customer_id=customer_id, rule=str(item.get("rule") or ""), entry=str(item.get("entry") or ""),
                      step=int(item.get("step") or 0), channel=channel, template=template_id,
                      variant=str(item.get("variant") or "default"),
                      transactional=bool(rule is not None and rule.is_transactional), event=trigger)
    renderer = Renderer(d.config, d.env)
    coupon = dict(item["coupon"]) if isinstance(item.get("coupon"), dict) else None
    try:
        template = Template.model_validate(chosen["body"])
        if channel == "email" and not profile.traits.get("email"):
            # no address any more: the same context and template, without the MIME envelope
            from retention.language import templates as templates_mod
            ctx = renderer.context(req, profile, channel, now, coupon=coupon)
            r = templates_mod.render(template, ctx["locale"], ctx, channel="email")
            out["rendered"] = {"subject": r.subject, "text": r.text, "html": r.html, "sms": None}
        else:
            r2 = renderer.render(req, profile, channel, now, coupon=coupon, template=template,
                                 template_version=out["version"])
            out["rendered"] = {"subject": r2.subject or None, "text": r2.text, "html": r2.html,
                               "sms": r2.sms or None}
    except (RetentionError, LookupError, KeyError, ValueError) as exc:
        out["error"] = getattr(exc, "message", None) or str(exc)
    return out
