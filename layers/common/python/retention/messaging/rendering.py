"""The render step of a send: template → MIME email or SMS text, with the context templates are validated
against (definitions come from retention.journeys.catalogue)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from retention.core import clock
from retention.core.config import ConfigStore
from retention.core.settings import Env
from retention.journeys.catalogue import Catalogue
from retention.messaging.requests import SendRequest


@dataclass
class RenderedMessage:
    subject: str
    text: str
    html: str | None
    sms: str
    raw: bytes
    # what the ledger records at `sent` so the console can re-render the message (retention.admin.sent):
    # the template version rendered and the issued coupon ({code, discount, expires_at}), if any
    template_version: int | None = None
    coupon: dict[str, str] | None = None
    products: list[str] | None = None  # the product ids of the cards (at most MAX_RECORDED_PRODUCTS)


class Renderer:
    def __init__(self, config: ConfigStore, env: Env) -> None:
        self.config = config
        self.env = env
        self.library = Catalogue(config)

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

    def send_spec(self, req: SendRequest) -> Any | None:
        """The rule's send step of this request (retention.language.rules.SendSpec), if it still exists."""
        rule = self.rule(req.rule)
        steps = getattr(rule, "steps", None) or []
        step = steps[req.step] if 0 <= req.step < len(steps) else None
        return getattr(step, "send", None)

    def recommender(self, req: SendRequest, profile: Any, channel: str, now: datetime) -> Any:
        from retention.products.recommend import Recommendations, Recommender, link_params
        recs = Recommendations(self.config.client, self.env.products_table)
        return Recommender(recs, customer_id=profile.id, interests=getattr(profile, "interests", {}), now=now,
                           link_params=link_params(req.rule, req.step, channel, req.ledger_id),
                           consumable_categories=self.config.settings().consumable_categories)

    def preview_coupon(self, req: SendRequest, now: datetime) -> dict[str, Any] | None:
        """What a preview shows for a step with a coupon: the pool's discount and validity, no code issued."""
        spec = self.send_spec(req)
        wanted = getattr(spec, "coupon", None)
        if wanted is None:
            return None
        from datetime import timedelta

        from retention.products.coupons import Coupons
        meta = Coupons(self.config.client, self.env.products_table).meta(wanted.pool) or {}
        days = int(meta.get("valid_days") or wanted.valid_days)
        return {"code": f"PREVIEW-{wanted.pool.upper()}", "discount": meta.get("discount") or wanted.discount or "10%",
                "expires_at": clock.iso(now + timedelta(days=days))}

    def context(self, req: SendRequest, profile: Any, channel: str, now: datetime, *,
                coupon: dict[str, Any] | None = None, recommender: Any = None) -> dict[str, Any]:
        """The render context, built by templates.build_context: the very shape templates are validated
        against at apply time (so a template that validated cannot miss `event.properties` at send time).

        `coupon`: the issued coupon (the sender's); without one, a step with `coupon:` shows a preview
        coupon and any other step the legacy per-entry code. `recommender`: a
        retention.products.recommend.Recommender (one per message)."""
        from retention.language.templates import build_context
        from retention.messaging.links import nps_urls, optin_url, survey_url, unsubscribe_url
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
            unsubscribe_url=unsubscribe, preferences_url=f"{unsubscribe}?view=preferences",
            nps_urls=dict[int | str, str](nps.items()),
            nps_short_url=nps_short, confirm_url=confirm, survey_url=survey,
            coupon=(coupon or req.coupon or self.preview_coupon(req, now)
                    or coupon_code(profile.id, req.rule, req.entry)),
            recommend=(recommender or self.recommender(req, profile, channel, now)).recommend,
            url_patterns=settings.url_patterns.model_dump(), brand=settings.brand.model_dump(),
            rule=req.rule, step=req.step, variant=req.variant, locale=self.locale(profile))

    def locale(self, profile: Any) -> str:
        loc = str(profile.traits.get("locale") or self.config.settings().default_locale)
        return loc.replace("_", "-").split("-")[0].lower()

    def render(self, req: SendRequest, profile: Any, channel: str, now: datetime, *,
               coupon: dict[str, Any] | None = None, recommender: Any = None, template: Any = None,
               template_version: int | None = None) -> RenderedMessage:
        """`template`: a given version's parsed template (the console's re-render of a sent message)
        instead of the applied one."""
        from retention.language import templates
        if template is None:
            template = self.library.templates().get(req.template)
            applied = self.config.current("TEMPLATE").get(req.template)  # the cached dict it was parsed from
            template_version = int(applied["version"]) if applied else None
        if template is None:
            raise LookupError(f"template '{req.template}' is not applied")
        recommender = recommender or self.recommender(req, profile, channel, now)
        ctx = self.context(req, profile, channel, now, coupon=coupon, recommender=recommender)
        issued = _issued(coupon or req.coupon)
        if channel == "sms":
            from retention.messaging.sms import prepare_sms
            content = template.locales[template.resolve_locale(ctx["locale"])]
            # an SMS body when the template has one, else the plain text of the email (checked for length)
            out = templates.render(template, ctx["locale"], ctx, channel="sms" if content.sms else "email")
            body = out.sms or out.text or ""
            return RenderedMessage(subject="", text=body, html=None,
                                   sms=prepare_sms(body, max_segments=templates.MAX_SMS_SEGMENTS), raw=b"",
                                   template_version=template_version, coupon=issued,
                                   products=_shown(recommender))
        out = templates.render(template, ctx["locale"], ctx, channel="email")
        if not out.subject:
            raise templates.TemplateRenderError(f"template '{req.template}' has no email content")
        from retention.messaging import layout
        from retention.messaging.mime import build_email, with_display_name
        settings = self.config.settings()
        html = out.html
        if html is not None:
            marketing = not (req.transactional or getattr(template, "category", None) == "transactional")
            html = layout.wrap(html, subject=out.subject or "", preheader=out.preheader, locale=ctx["locale"],
                               marketing=marketing, brand=settings.brand.model_dump(), shop=ctx["shop"],
                               links=ctx["links"])
        domain = self.env.sender_email.rsplit("@", 1)[-1].strip("> ")
        sender = with_display_name(self.env.sender_email, settings.brand.from_name or settings.shop_name)
        raw = build_email(sender=sender, to=str(profile.traits["email"]), subject=out.subject or "",
                          html=html, text=out.text, preheader=None if html is not None else out.preheader,
                          reply_to=settings.brand.reply_to,
                          unsubscribe_url=ctx["links"]["unsubscribe"],
                          unsubscribe_mailto=settings.unsubscribe_mailto or f"unsubscribe@{domain}",
                          message_id_domain=domain,
                          headers={"X-Retention-Rule": req.rule, "X-Retention-Step": str(req.step),
                                   "X-Retention-Variant": req.variant, "X-Retention-Ledger": req.ledger_id},
                          now=now)
        return RenderedMessage(subject=out.subject or "", text=out.text or "", html=html, sms="", raw=raw,
                               template_version=template_version, coupon=issued, products=_shown(recommender))


MAX_RECORDED_PRODUCTS = 12


def _shown(recommender: Any) -> list[str] | None:
    """The product ids the message showed, in order, once each (short: the ledger item stays small)."""
    ids = list(dict.fromkeys(str(p)[:40] for p in getattr(recommender, "shown", None) or []))
    return ids[:MAX_RECORDED_PRODUCTS] or None


def _issued(coupon: Any) -> dict[str, str] | None:
    """The issued coupon as the ledger keeps it (short strings only: the item stays well under 1 KB)."""
    if isinstance(coupon, str) and coupon:
        return {"code": coupon[:64]}
    if not isinstance(coupon, dict) or not coupon.get("code") or str(coupon["code"]).startswith("PREVIEW-"):
        return None
    return {k: str(coupon[k])[:64] for k in ("code", "discount", "expires_at") if coupon.get(k)}


def coupon_code(customer_id: str, rule: str, entry: str) -> str:
    """A personal, stable code per journey entry (the shop validates it by the same recipe or imports it)."""
    import hashlib
    digest = hashlib.sha256(f"{customer_id}|{rule}|{entry}".encode()).hexdigest().upper()
    return f"{rule[:4].upper().replace('-', '')}-{digest[:6]}"
