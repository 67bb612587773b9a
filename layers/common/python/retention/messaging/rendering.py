"""Definitions the sender and the engine need at run time (rules, templates, segment groups), loaded from
the config table through the cached ConfigStore, and the render step (template → MIME or SMS text)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from retention.core.config import ConfigStore
from retention.core.settings import Env
from retention.messaging.requests import SendRequest


@dataclass
class RenderedMessage:
    subject: str
    text: str
    html: str | None
    sms: str
    raw: bytes


class Library:
    """Parsed definitions, re-parsed only when the applied versions change."""

    _parsed: dict[str, tuple[tuple[Any, ...], Any]] = {}

    def __init__(self, config: ConfigStore) -> None:
        self.config = config

    def _parse(self, kind: str, parser: Any) -> dict[str, Any]:
        current = self.config.current(kind)
        stamp = tuple(sorted((k, int(v["version"]), bool(v.get("enabled", True))) for k, v in current.items()))
        hit = self._parsed.get(kind)
        if hit and hit[0] == stamp:
            return hit[1]
        parsed = {}
        for def_id, item in current.items():
            parsed[def_id] = parser(item["body"], item)
        self._parsed[kind] = (stamp, parsed)
        return parsed

    def rules(self) -> dict[str, Any]:
        from retention.language.rules import parse_rule

        def parse(body: dict[str, Any], item: dict[str, Any]) -> Any:
            rule = parse_rule(body, source=f"rule {item['sk']}", linemap=None)
            rule.enabled = bool(item.get("enabled", rule.enabled))  # `rules enable|disable` wins over the body
            return rule
        return self._parse("RULE", parse)

    def enabled_rules(self) -> list[Any]:
        return [r for r in self.rules().values() if r.enabled]

    def templates(self) -> dict[str, Any]:
        from retention.language.templates import Template
        return self._parse("TEMPLATE", lambda body, item: Template.model_validate(body))

    def segment_groups(self) -> list[Any]:
        """Validated together (cross-group references, dependency order), re-done only on a new version."""
        from retention.language.segments import load_groups
        current = self.config.current("SEGDEF")
        stamp = tuple(sorted((k, int(v["version"])) for k, v in current.items()))
        hit = self._parsed.get("SEGDEF")
        if hit and hit[0] == stamp:
            return list(hit[1])
        groups = load_groups({f"SEGDEF#{k}": v["body"] for k, v in current.items()}) if current else []
        self._parsed["SEGDEF"] = (stamp, groups)
        return list(groups)


class Renderer:
    def __init__(self, config: ConfigStore, env: Env) -> None:
        self.config = config
        self.env = env
        self.library = Library(config)

    def template_category(self, template_id: str) -> str | None:
        template = self.library.templates().get(template_id)
        return getattr(template, "category", None) if template is not None else None

    def rule(self, rule_id: str) -> Any | None:
        return self.library.rules().get(rule_id)

    def facts(self, profile: Any, now: datetime) -> dict[str, Any]:
        from retention.customers.profile import facts
        return facts(profile, now)

    def has_consent(self, profile: Any, channel: str, now: datetime) -> bool:
        return bool(self.facts(profile, now)["consent"].get(channel))

    def audience_ok(self, rule: Any, profile: Any, now: datetime) -> bool:
        cond = getattr(rule, "audience", None)  # retention.language.rules.Rule.audience: a parsed condition or None
        if cond is None:
            return True
        from retention.language.conditions import evaluate
        return bool(evaluate(cond, self.facts(profile, now)))

    def context(self, req: SendRequest, profile: Any, channel: str, now: datetime) -> dict[str, Any]:
        """The render context, built by templates.build_context: the very shape templates are validated
        against at apply time (so a template that validated cannot miss `event.properties` at send time)."""
        from retention.language.templates import build_context
        from retention.messaging.sender import nps_urls, optin_url, survey_url, unsubscribe_url
        settings = self.config.settings()
        secrets = self.config.secrets("links")
        base = self.env.public_base_url
        nps, nps_short = nps_urls(base, secrets, profile.id, req.rule, req.ledger_id, now)
        unsubscribe = unsubscribe_url(base, secrets, profile.id, channel, req.ledger_id, now)
        event = req.event or {}
        properties = event.get("properties")
        confirm = optin_url(base, secrets, profile.id, req.ledger_id, event.get("name"), now)

        def survey(reason: str) -> str:
            return survey_url(base, secrets, profile.id, req.rule, req.ledger_id, reason, now)
        return build_context(
            customer_id=profile.id, traits=profile.traits, kpis=profile.kpis,
            event_name=event.get("name"), event_properties=properties if isinstance(properties, dict) else {},
            shop_name=settings.shop_name, shop_url=settings.shop_url,
            unsubscribe_url=unsubscribe, preferences_url=unsubscribe, nps_urls=dict[int | str, str](nps.items()),
            nps_short_url=nps_short, confirm_url=confirm, survey_url=survey,
            coupon=req.coupon or coupon_code(profile.id, req.rule, req.entry),
            rule=req.rule, step=req.step, variant=req.variant, locale=self.locale(profile))

    def locale(self, profile: Any) -> str:
        loc = str(profile.traits.get("locale") or self.config.settings().default_locale)
        return loc.replace("_", "-").split("-")[0].lower()

    def render(self, req: SendRequest, profile: Any, channel: str, now: datetime) -> RenderedMessage:
        from retention.language import templates
        template = self.library.templates().get(req.template)
        if template is None:
            raise LookupError(f"template '{req.template}' is not applied")
        ctx = self.context(req, profile, channel, now)
        if channel == "sms":
            from retention.messaging.sms import prepare_sms
            content = template.locales[template.resolve_locale(ctx["locale"])]
            # an SMS body when the template has one, else the plain text of the email (checked for length)
            out = templates.render(template, ctx["locale"], ctx, channel="sms" if content.sms else "email")
            body = out.sms or out.text or ""
            return RenderedMessage(subject="", text=body, html=None,
                                   sms=prepare_sms(body, max_segments=templates.MAX_SMS_SEGMENTS), raw=b"")
        out = templates.render(template, ctx["locale"], ctx, channel="email")
        if not out.subject:
            raise templates.TemplateRenderError(f"template '{req.template}' has no email content")
        from retention.messaging.mime import build_email
        settings = self.config.settings()
        domain = self.env.sender_email.rsplit("@", 1)[-1].strip("> ")
        raw = build_email(sender=self.env.sender_email, to=str(profile.traits["email"]), subject=out.subject or "",
                          html=out.html, text=out.text, preheader=out.preheader,
                          unsubscribe_url=ctx["links"]["unsubscribe"],
                          unsubscribe_mailto=settings.unsubscribe_mailto or f"unsubscribe@{domain}",
                          message_id_domain=domain,
                          headers={"X-Retention-Rule": req.rule, "X-Retention-Step": str(req.step),
                                   "X-Retention-Variant": req.variant, "X-Retention-Ledger": req.ledger_id},
                          now=now)
        return RenderedMessage(subject=out.subject or "", text=out.text or "", html=out.html, sms="", raw=raw)


def coupon_code(customer_id: str, rule: str, entry: str) -> str:
    """A personal, stable code per journey entry (the shop validates it by the same recipe or imports it)."""
    import hashlib
    digest = hashlib.sha256(f"{customer_id}|{rule}|{entry}".encode()).hexdigest().upper()
    return f"{rule[:4].upper().replace('-', '')}-{digest[:6]}"
