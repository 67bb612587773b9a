"""The signed links a message carries: one-click unsubscribe / preferences (`/u/<token>`), the NPS score
links (`/nps/<token>?score=N`), the double opt-in confirmation (`/optin/<token>`) and one-click survey
answers (`/survey/<token>`). Signed with the `links` secret (rotation keeps the previous one valid);
built here and verified here, so the claims a link carries have one definition."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from retention.core import tokens

UNSUBSCRIBE_TTL = timedelta(days=365)
NPS_TTL = timedelta(days=30)
OPTIN_TTL = timedelta(days=30)  # a confirmation weeks later is still the customer's own


def unsubscribe_url(base: str, secrets: list[bytes], customer_id: str, channel: str, ledger: str,
                    now: datetime) -> str:
    token = tokens.sign({"c": customer_id, "ch": channel, "l": ledger}, secrets[0],
                        expires_at=now + UNSUBSCRIBE_TTL, purpose="unsub")
    return f"{base.rstrip('/')}/u/{token}"


def nps_urls(base: str, secrets: list[bytes], customer_id: str, survey: str, ledger: str,
             now: datetime) -> tuple[dict[int, str], str]:
    token = tokens.sign({"c": customer_id, "s": survey, "l": ledger}, secrets[0], expires_at=now + NPS_TTL,
                        purpose="nps")
    root = f"{base.rstrip('/')}/nps/{token}"
    return {n: f"{root}?score={n}" for n in range(11)}, root


def optin_url(base: str, secrets: list[bytes], customer_id: str, ledger: str, via: str | None,
              now: datetime) -> str:
    """The double opt-in link: GET shows a confirm page, its POST records the consent (retention.surveys)."""
    token = tokens.sign({"c": customer_id, "l": ledger, "v": via or ""}, secrets[0],
                        expires_at=now + OPTIN_TTL, purpose="optin")
    return f"{base.rstrip('/')}/optin/{token}"


def survey_url(base: str, secrets: list[bytes], customer_id: str, survey: str, ledger: str, reason: str,
               now: datetime) -> str:
    """A one-click survey answer (one signed link per reason): GET confirms, POST records."""
    token = tokens.sign({"c": customer_id, "s": survey, "l": ledger, "r": reason}, secrets[0],
                        expires_at=now + NPS_TTL, purpose="survey")
    return f"{base.rstrip('/')}/survey/{token}"


def verify_unsubscribe(token: str, secrets: list[bytes], now: datetime) -> dict[str, Any]:
    """The claims of an unsubscribe link (`c` customer, `ch` channel, `l` ledger id)."""
    return tokens.verify(token, secrets, "unsub", now)


def verify_nps(token: str, secrets: list[bytes], now: datetime) -> dict[str, Any]:
    """The claims of an NPS link (`c` customer, `s` survey rule, `l` ledger id)."""
    return tokens.verify(token, secrets, "nps", now)


def verify_optin(token: str, secrets: list[bytes], now: datetime) -> dict[str, Any]:
    """The claims of a double opt-in link (`c` customer, `l` ledger id, `v` the event that asked)."""
    return tokens.verify(token, secrets, "optin", now)


def verify_survey(token: str, secrets: list[bytes], now: datetime) -> dict[str, Any]:
    """The claims of a one-click survey answer (`c` customer, `s` survey rule, `l` ledger id, `r` reason)."""
    claims = tokens.verify(token, secrets, "survey", now)
    if not claims.get("r") or not claims.get("s"):
        raise tokens.TokenError("not a survey answer link")
    return claims
