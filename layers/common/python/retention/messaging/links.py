"""The signed links a message carries: one-click unsubscribe / preferences (`/u/<token>`) and the NPS score
links (`/nps/<token>?score=N`). Signed with the `links` secret (rotation keeps the previous one valid);
built here and verified here, so the claims a link carries have one definition."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from retention.core import tokens

UNSUBSCRIBE_TTL = timedelta(days=365)
NPS_TTL = timedelta(days=30)


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


def verify_unsubscribe(token: str, secrets: list[bytes], now: datetime) -> dict[str, Any]:
    """The claims of an unsubscribe link (`c` customer, `ch` channel, `l` ledger id)."""
    return tokens.verify(token, secrets, "unsub", now)


def verify_nps(token: str, secrets: list[bytes], now: datetime) -> dict[str, Any]:
    """The claims of an NPS link (`c` customer, `s` survey rule, `l` ledger id)."""
    return tokens.verify(token, secrets, "nps", now)
