"""The HTML pages of survey links and unsubscribe/preference links: Jinja2 templates in `templates/`
(sandboxed, autoescaped: a comment or a token never becomes markup), self-contained (no external assets:
they must render in any mail client's browser). Jinja2 is loaded on first use, not at a cold start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"
CHANNELS = ("email", "sms")
CHANNEL_NAMES = {"email": "Email", "sms": "SMS"}

_env: Any = None


def environment() -> Any:
    global _env
    if _env is None:
        from jinja2 import FileSystemLoader, StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        _env = ImmutableSandboxedEnvironment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True,
                                             undefined=StrictUndefined)
    return _env


def render(template: str, title: str, status: int = 200, **context: Any) -> Any:
    from aws_lambda_powertools.event_handler import Response
    html = environment().get_template(template).render(title=title, **{"paragraphs": (), **context})
    return Response(status_code=status, content_type="text/html; charset=utf-8", body=html)


def message(title: str, *paragraphs: str, status: int = 200) -> Any:
    """A page of plain paragraphs (escaped)."""
    from aws_lambda_powertools.event_handler import Response
    html = environment().get_template("message.html").render(title=title, paragraphs=paragraphs)
    return Response(status_code=status, content_type="text/html; charset=utf-8", body=html)


# ---- NPS links ---------------------------------------------------------------------------------------

def nps_form(score: int | None, error: str | None = None, *, title: str = "Оцените нас / Rate us",
             status: int = 200) -> Any:
    return render("nps_form.html", title, status, score=score, error=error)


def nps_confirm(raw_score: str | None) -> Any:
    """The confirm page of a score link: the score it carries (or what is wrong with it) and the form."""
    from retention.core.errors import RetentionError
    from retention.surveys.nps import validate_score
    try:
        return nps_form(validate_score(raw_score) if raw_score is not None else None)
    except RetentionError as exc:
        return nps_form(None, exc.message)


def nps_link_problem(expired: bool) -> Any:
    if expired:
        return message("Ссылка устарела / Link expired", "Срок действия ссылки истёк. Спасибо, что хотели ответить!",
                       "This survey link has expired. Thank you for wanting to answer!", status=410)
    return message("Ссылка недействительна / Invalid link", "Эта ссылка повреждена или недействительна.",
                   "This link is damaged or invalid.", status=400)


def nps_gone() -> Any:
    """The customer was erased (or never existed): nothing to answer for, no form to retry."""
    return message("Опрос не найден / Survey not found", "Этот опрос больше недоступен.",
                   "This survey is no longer available.", status=404)


def nps_thanks(score: int) -> Any:
    return render("nps_thanks.html", "Спасибо! / Thank you!", score=score)


# ---- unsubscribe and preferences ---------------------------------------------------------------------

def token_channel(claims: dict[str, Any]) -> str:
    channel = str(claims.get("ch") or "email")
    return channel if channel in CHANNELS else "email"


def preferences_form(channel: str, current: dict[str, Any]) -> Any:
    return render("preferences.html", "Настройки рассылок / Subscription preferences", channel=channel,
                  current=current, channels=CHANNELS, names=CHANNEL_NAMES)


def preferences_invalid() -> Any:
    return message("Ссылка недействительна / Invalid link",
                   "Ссылка повреждена или устарела. / This link is damaged or expired.", status=400)


def preferences_saved() -> Any:
    return message("Готово / Done", "Настройки сохранены. / Your preferences are saved.")


def preference_change(fields: dict[str, str], claims: dict[str, Any]) -> tuple[dict[str, bool], str]:
    """What a POST to /u/{token} asks for: (channels → allowed, source of the change).

    RFC 8058 one-click (`List-Unsubscribe=One-Click`) and the page's unsubscribe button revoke the
    token's channel (or the form's `channel`); the preference form sets each channel from its box."""
    one_click = fields.get("List-Unsubscribe") == "One-Click"
    if fields.get("action") == "preferences" and not one_click:
        return {ch: fields.get(ch) == "1" for ch in CHANNELS}, "preferences"
    requested = str(fields.get("channel") or "")
    channel = requested if requested in CHANNELS else token_channel(claims)
    return {channel: False}, "one_click" if one_click else "unsubscribe"


# ---- the double opt-in and one-click survey answers (GET shows the page, its button POSTs) -------------

def confirm_form(title: str, *paragraphs: str, field: str, button: str) -> Any:
    return render("confirm.html", title, paragraphs=paragraphs, field=field, button=button)


def optin_confirm() -> Any:
    return confirm_form("Подтвердите подписку / Confirm your subscription",
                        "Подтвердите, что хотите получать письма магазина.",
                        "Confirm that you want to receive the shop's emails.",
                        field="confirm", button="Подтвердить / Confirm")


def optin_done() -> Any:
    return message("Подписка подтверждена / Subscription confirmed", "Спасибо! Подписка подтверждена.",
                   "Thank you! Your subscription is confirmed.")


def survey_confirm(reason: str) -> Any:
    return confirm_form("Ваш ответ / Your answer", f"Отправить ответ «{reason}»?", f'Send the answer "{reason}"?',
                        field="answer", button="Отправить / Send")


def survey_thanks() -> Any:
    return message("Спасибо! / Thank you!", "Мы записали ваш ответ. Спасибо!", "We recorded your answer. Thank you!")
