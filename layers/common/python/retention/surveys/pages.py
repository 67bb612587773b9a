"""The HTML pages of survey links and unsubscribe/preference links: Jinja2 templates in `templates/`
(sandboxed, autoescaped: a comment or a token never becomes markup), self-contained (no external assets:
they must render in any mail client's browser). Jinja2 is loaded on first use, not at a cold start.

Every page speaks the customer's language: the `locale` trait of the profile the link names, else the
browser's `Accept-Language`, else the shop's `default_locale` (`?lang=ru|en` overrides, for a person who
reads the other one). A link that cannot be read names no customer: the browser's language then.
Texts live in `TEXTS`, one dict per locale with the same keys (a test holds them equal)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"
CHANNELS = ("email", "sms")
LOCALES = ("ru", "en")

TEXTS: dict[str, dict[str, str]] = {
    "ru": {
        "channel_email": "email-рассылки", "channel_sms": "SMS-рассылки",
        "nps_title": "Оцените нас", "nps_question": "Насколько вероятно, что вы порекомендуете нас друзьям?",
        "nps_your_score": "Ваша оценка", "nps_comment": "Комментарий (по желанию)", "send": "Отправить",
        "nps_check_title": "Проверьте ответ", "nps_scale": "0 — точно нет, 10 — обязательно порекомендую",
        "nps_thanks": "Мы записали вашу оценку: {score}. Спасибо!",
        "thanks_title": "Спасибо!",
        "expired_title": "Ссылка устарела",
        "expired_text": "Срок действия ссылки истёк. Спасибо, что хотели ответить!",
        "invalid_title": "Ссылка недействительна", "invalid_text": "Эта ссылка повреждена или устарела.",
        "gone_title": "Опрос не найден", "gone_text": "Этот опрос больше недоступен.",
        "unsub_title": "Отписка", "unsub_question": "Отписаться от рассылок магазина {shop} ({channel})?",
        "unsub_button": "Отписаться", "unsub_note": "Письма о ваших заказах (статус, доставка) будут приходить.",
        "manage_link": "Настроить рассылки вместо отписки",
        "prefs_title": "Настройки рассылок", "prefs_intro": "Что присылать вам от магазина {shop}:",
        "prefs_subscribed": "подписаны — снимите галочку, чтобы отписаться",
        "prefs_not_subscribed": "не подписаны. Подписаться снова можно на сайте магазина (с подтверждением).",
        "prefs_language": "Язык писем", "save": "Сохранить",
        "saved_title": "Готово", "saved_text": "Настройки сохранены.",
        "unsubscribed_text": "Вы отписаны ({channel}). Письма о заказах по-прежнему будут приходить.",
        "optin_title": "Подтвердите подписку", "optin_text": "Подтвердите, что хотите получать письма магазина {shop}.",
        "optin_button": "Подтвердить", "optin_done_title": "Подписка подтверждена",
        "optin_done_text": "Спасибо! Подписка подтверждена.",
        "survey_title": "Ваш ответ", "survey_question": "Отправить ответ «{reason}»?",
        "survey_thanks": "Мы записали ваш ответ. Спасибо!",
    },
    "en": {
        "channel_email": "marketing emails", "channel_sms": "marketing SMS",
        "nps_title": "Rate us", "nps_question": "How likely are you to recommend us to a friend?",
        "nps_your_score": "Your score", "nps_comment": "Comment (optional)", "send": "Send",
        "nps_check_title": "Check your answer", "nps_scale": "0 — not at all likely, 10 — extremely likely",
        "nps_thanks": "We recorded your score: {score}. Thank you!",
        "thanks_title": "Thank you!",
        "expired_title": "Link expired",
        "expired_text": "This survey link has expired. Thank you for wanting to answer!",
        "invalid_title": "Invalid link", "invalid_text": "This link is damaged or expired.",
        "gone_title": "Survey not found", "gone_text": "This survey is no longer available.",
        "unsub_title": "Unsubscribe", "unsub_question": "Unsubscribe from {shop}'s {channel}?",
        "unsub_button": "Unsubscribe", "unsub_note": "Messages about your orders (status, delivery) still arrive.",
        "manage_link": "Manage your preferences instead",
        "prefs_title": "Subscription preferences", "prefs_intro": "What {shop} may send you:",
        "prefs_subscribed": "subscribed — untick to unsubscribe",
        "prefs_not_subscribed": "not subscribed. You can subscribe again on the shop's site (with a confirmation).",
        "prefs_language": "Language of our messages", "save": "Save",
        "saved_title": "Done", "saved_text": "Your preferences are saved.",
        "unsubscribed_text": "You are unsubscribed ({channel}). Messages about your orders still arrive.",
        "optin_title": "Confirm your subscription", "optin_text": "Confirm that you want to receive {shop}'s emails.",
        "optin_button": "Confirm", "optin_done_title": "Subscription confirmed",
        "optin_done_text": "Thank you! Your subscription is confirmed.",
        "survey_title": "Your answer", "survey_question": "Send the answer \u201c{reason}\u201d?",
        "survey_thanks": "We recorded your answer. Thank you!",
    },
}
LANGUAGE_NAMES = {"ru": "Русский", "en": "English"}

_env: Any = None


def environment() -> Any:
    global _env
    if _env is None:
        from jinja2 import FileSystemLoader, StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        _env = ImmutableSandboxedEnvironment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True,
                                             undefined=StrictUndefined)
    return _env


def normalize_locale(value: Any) -> str | None:
    """`ru`, `ru-RU`, `ru_RU`, `EN` → `ru` / `en`; anything else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    base = value.strip().replace("_", "-").split("-")[0].lower()
    return base if base in LOCALES else None


def accepted_locale(header_value: str | None) -> str | None:
    """The first of LOCALES the browser's Accept-Language asks for, by its q-values (RFC 9110 12.5.4)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((header_value or "").split(",")[:20]):
        lang, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        loc = normalize_locale(lang)
        if loc and q > 0:
            ranked.append((-q, i, loc))
    return min(ranked)[2] if ranked else None


def choose_locale(*, asked: str | None = None, profile: str | None = None, accept_language: str | None = None,
                  default: str | None = None) -> str:
    """The page's language: `?lang=`, else the customer's, else the browser's, else the shop's default."""
    return (normalize_locale(asked) or normalize_locale(profile) or accepted_locale(accept_language)
            or normalize_locale(default) or "ru")


class Pages:
    """The pages of one request, in one language (`locale`), naming the shop (`shop`)."""

    def __init__(self, locale: str = "ru", shop: str = "") -> None:
        self.locale = locale if locale in LOCALES else "ru"
        self.shop = shop
        self.t = TEXTS[self.locale]

    def text(self, key: str, **values: Any) -> str:
        return self.t[key].format(shop=self.shop, **values)

    def channel_name(self, channel: str) -> str:
        return self.t.get(f"channel_{channel}", channel)

    def render(self, template: str, title_key: str, status: int = 200, **context: Any) -> Any:
        from aws_lambda_powertools.event_handler import Response
        html = environment().get_template(template).render(
            title=self.text(title_key), lang=self.locale, t=self.t, **{"paragraphs": (), **context})
        return Response(status_code=status, content_type="text/html; charset=utf-8", body=html)

    def message(self, title_key: str, *paragraphs: str, status: int = 200) -> Any:
        """A page of plain paragraphs (escaped)."""
        return self.render("message.html", title_key, status, paragraphs=paragraphs)

    # ---- NPS links ---------------------------------------------------------------------------------------

    def nps_form(self, score: int | None, error: str | None = None, *, title_key: str = "nps_title",
                 status: int = 200) -> Any:
        return self.render("nps_form.html", title_key, status, score=score, error=error)

    def nps_confirm(self, raw_score: str | None) -> Any:
        """The confirm page of a score link: the score it carries (or what is wrong with it) and the form."""
        from retention.core.errors import RetentionError
        from retention.surveys.nps import validate_score
        try:
            return self.nps_form(validate_score(raw_score) if raw_score is not None else None)
        except RetentionError as exc:
            return self.nps_form(None, exc.message)

    def nps_link_problem(self, expired: bool) -> Any:
        if expired:
            return self.message("expired_title", self.text("expired_text"), status=410)
        return self.link_invalid()

    def link_invalid(self) -> Any:
        return self.message("invalid_title", self.text("invalid_text"), status=400)

    def nps_gone(self) -> Any:
        """The customer was erased (or never existed): nothing to answer for, no form to retry."""
        return self.message("gone_title", self.text("gone_text"), status=404)

    def nps_thanks(self, score: int) -> Any:
        return self.message("thanks_title", self.text("nps_thanks", score=score))

    # ---- unsubscribe and preferences -----------------------------------------------------------------

    def unsubscribe_form(self, channel: str) -> Any:
        """What the unsubscribe link opens: one question, one button (the POST), and the way to the
        preferences instead."""
        return self.render("unsubscribe.html", "unsub_title", channel=channel,
                           question=self.text("unsub_question", channel=self.channel_name(channel)))

    def preferences_form(self, current: dict[str, Any]) -> Any:
        """The preferences page: each channel subscribed (a box to untick) or not (no box: a link may
        revoke, never grant), and the language of the shop's messages."""
        rows = [{"channel": ch, "name": self.channel_name(ch), "granted": bool(current.get(ch))} for ch in CHANNELS]
        return self.render("preferences.html", "prefs_title", rows=rows, intro=self.text("prefs_intro"),
                           languages=LANGUAGE_NAMES)

    def preferences_saved(self, revoked: list[str]) -> Any:
        paragraphs = [self.text("unsubscribed_text", channel=", ".join(self.channel_name(ch) for ch in revoked))] \
            if revoked else [self.text("saved_text")]
        return self.message("saved_title", *paragraphs)

    # ---- the double opt-in and one-click survey answers (GET shows the page, its button POSTs) ---------

    def confirm_form(self, title_key: str, *paragraphs: str, field: str, button_key: str) -> Any:
        return self.render("confirm.html", title_key, paragraphs=paragraphs, field=field, button=self.t[button_key])

    def optin_confirm(self) -> Any:
        return self.confirm_form("optin_title", self.text("optin_text"), field="confirm", button_key="optin_button")

    def optin_done(self) -> Any:
        return self.message("optin_done_title", self.text("optin_done_text"))

    def survey_confirm(self, reason: str) -> Any:
        return self.confirm_form("survey_title", self.text("survey_question", reason=reason), field="answer",
                                 button_key="send")

    def survey_thanks(self) -> Any:
        return self.message("thanks_title", self.text("survey_thanks"))


def for_request(event: Any, d: Any, customer_id: str | None = None) -> Pages:
    """The pages of this request in the customer's language (one eventually consistent profile read when
    the link names a customer), the browser's, or the shop's."""
    from retention.core import clock
    from retention.core.http import header
    from retention.customers.store import ProfileRepo
    settings = d.config.settings()
    profile_locale = None
    if customer_id:
        sp = ProfileRepo(d.dynamodb, d.env.profiles_table).load(customer_id, clock.now(), consistent=False)
        profile_locale = sp.profile.traits.get("locale") if sp.exists else None
    asked = event.get_query_string_value("lang") if hasattr(event, "get_query_string_value") else None
    locale = choose_locale(asked=asked, profile=profile_locale, accept_language=header(event, "Accept-Language"),
                           default=settings.default_locale)
    return Pages(locale, settings.shop_name)


def token_channel(claims: dict[str, Any]) -> str:
    channel = str(claims.get("ch") or "email")
    return channel if channel in CHANNELS else "email"


def preference_change(fields: dict[str, str], claims: dict[str, Any]) -> tuple[dict[str, bool], str, str | None]:
    """What a POST to /u/{token} asks for: (channels → allowed, source of the change, language or None).

    RFC 8058 one-click (`List-Unsubscribe=One-Click`) and the page's unsubscribe button revoke the
    token's channel (or the form's `channel`); the preference form sets each subscribed channel from its
    box (a channel without a box is left as it is) and the language of the shop's messages."""
    one_click = fields.get("List-Unsubscribe") == "One-Click"
    if fields.get("action") == "preferences" and not one_click:
        # the boxes the page drew (a form without the markers, from an older page: every channel)
        shown = [ch for ch in CHANNELS if fields.get(f"shown_{ch}") == "1"] or list(CHANNELS)
        return {ch: fields.get(ch) == "1" for ch in shown}, "preferences", normalize_locale(fields.get("locale"))
    requested = str(fields.get("channel") or "")
    channel = requested if requested in CHANNELS else token_channel(claims)
    return {channel: False}, "one_click" if one_click else "unsubscribe", None
