"""What a write key may do to a customer (DESIGN §3: source keys have scopes), pure.

A key's scopes come from retention.core.config (SOURCE_SCOPES). The attack this stops: with any second
source's key (a browser key is public), `identify` rewrote another customer's email and phone and granted
both consents — pickup codes go by SMS, and premium-rate numbers pump SMS fees.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from retention.customers.profile import CONSENT_TRAITS, TRAIT_ALIASES, _consent_statement, _normalize_trait
from retention.customers.store import StoredProfile
from retention.ingestion.wire import Message

CONTACT_TRAITS = ("email", "phone")
CREATED_BY = "created_by"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # a placeholder time: only `granted` of a statement is read


def owner_of(sp: StoredProfile) -> str | None:
    """The source that created the customer (None for customers created before scopes, or internally)."""
    value = sp.profile.meta.get(CREATED_BY)
    return str(value) if value else None


def refusal(msg: Message, sp: StoredProfile, source_id: str, scopes: frozenset[str], *,
            created_here: bool) -> str | None:
    """Why `source_id` may not apply `msg` to the customer `sp` (None: it may). `created_here`: the
    customer does not exist yet, or was created by an earlier message of this request from this source."""
    identified = not sp.profile.id.startswith("anon:")
    new = not sp.exists
    if new and identified and "customers" not in scopes:
        return "this write key may not create customers (scope 'customers'); send events of known customers only"
    if msg.type != "identify" or not msg.traits:
        return None
    own = created_here or owner_of(sp) == source_id
    for raw_key, raw_value in msg.traits.items():
        key = TRAIT_ALIASES.get(raw_key, raw_key)
        if key in CONTACT_TRAITS:
            if (own and "customers" in scopes) or "contact" in scopes:
                continue
            if _changes_contact(sp, key, raw_value):
                return (f"this write key may not change the {key} of a customer another source created "
                        "(scope 'contact')")
        elif key in CONSENT_TRAITS:
            if (own and "customers" in scopes) or "consent" in scopes:
                continue
            if _grants(raw_value) and not _granted(sp, CONSENT_TRAITS[key]):
                return (f"this write key may not grant {key} for a customer another source created "
                        "(scope 'consent'); revoking needs no scope")
    return None


def _changes_contact(sp: StoredProfile, key: str, raw_value: Any) -> bool:
    if raw_value in (None, ""):
        return False
    try:
        value = _normalize_trait(key, raw_value)
    except Exception:
        return False  # unreadable: the profile ignores it too
    return bool(value) and sp.profile.traits.get(key) != value


def _grants(raw_value: Any) -> bool:
    statement = _consent_statement(raw_value, _EPOCH)
    return bool(statement and statement[0].granted)


def _granted(sp: StoredProfile, channel: str) -> bool:
    consent = sp.profile.consent.get(channel)
    return bool(consent and consent.granted)

