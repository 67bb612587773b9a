"""Stack settings read from CDK context (defaults in cdk.json, overridable with `-c key=value`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from constructs import Node

REPO_ROOT = Path(__file__).resolve().parents[1]

# Context defaults; cdk.json repeats them so `cdk synth` and `python -m infra.app` agree.
DEFAULTS: dict[str, Any] = {
    "stage": "dev",
    "senderEmail": "Shop <news@example.com>",
    "senderDomain": "",
    "publicBaseUrl": "",
    "smsSenderId": "Shop",
    "alarmEmail": "",
    "local": False,
    "createIdentity": "auto",
    "sendConcurrency": 50,
    "ingestConcurrency": 100,
    "wafRateLimit": 0,
    "ingestUrl": True,
    "nag": True,
}


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _bounded(value: int, name: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ValueError(f"{name} must be within {low}..{high}, got {value}")
    return value


def _waf_limit(value: int) -> int:
    if value and not 100 <= value <= 2_000_000_000:
        raise ValueError(f"wafRateLimit is 0 (off) or 100..2000000000 requests per 5 minutes per IP, got {value}")
    return value


def _identity_wanted(value: Any, sender_domain: str) -> bool:
    """`createIdentity`: true/false, or "auto" (the default): create it when a senderDomain is given."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return bool(sender_domain.strip())
    return _as_bool(value)


def cdk_json_context() -> dict[str, Any]:
    """The `context` block of cdk.json (the CLI passes it itself; `python -m infra.app` does not)."""
    try:
        return dict(json.loads((REPO_ROOT / "cdk.json").read_text()).get("context", {}))
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class StackConfig:
    stage: str = "dev"
    sender_email: str = "Shop <news@example.com>"
    sender_domain: str = ""
    public_base_url: str = ""
    sms_sender_id: str = "Shop"
    alarm_email: str = ""
    local: bool = False
    create_identity: bool = False  # the SES domain identity (Easy DKIM, MAIL FROM); on when senderDomain is set
    send_concurrency: int = 50
    # reserved concurrency of track_event: a flood of requests cannot take the account's whole Lambda
    # concurrency (the sender, the tick) with it; 0 = none reserved
    ingest_concurrency: int = 100
    # opt-in AWS WAF web ACL on the API stage with a rate-based rule: requests per 5 minutes per IP; 0 = off
    waf_rate_limit: int = 0
    # a Lambda function URL for track_event (output IngestUrl): the Segment routes without API Gateway's
    # $3.50 per million requests; the REST API keeps serving them too (ApiUrl)
    ingest_url: bool = True
    nag: bool = True

    @property
    def is_production(self) -> bool:
        return self.stage == "prod"

    @property
    def stack_name(self) -> str:
        return f"Retention-{self.stage}"

    @property
    def identity_domain(self) -> str:
        """The sending domain: `senderDomain`, else the domain of `senderEmail`."""
        return (self.sender_domain or self.sender_address.rsplit("@", 1)[-1]).strip().lower()

    @property
    def sender_address(self) -> str:
        """`Shop <news@example.com>` -> `news@example.com`."""
        text = self.sender_email
        if "<" in text and ">" in text:
            text = text[text.index("<") + 1 : text.index(">")]
        return text.strip()

    @classmethod
    def from_node(cls, node: Node) -> StackConfig:
        def get(key: str) -> Any:
            value = node.try_get_context(key)
            return DEFAULTS[key] if value is None else value

        concurrency = int(get("sendConcurrency"))
        if not 2 <= concurrency <= 1000:
            raise ValueError(f"sendConcurrency must be within 2..1000 (SQS event source limit), got {concurrency}")
        return cls(
            stage=str(get("stage")),
            sender_email=str(get("senderEmail")),
            sender_domain=str(get("senderDomain") or "").strip().lower(),
            public_base_url=str(get("publicBaseUrl") or "").rstrip("/"),
            sms_sender_id=str(get("smsSenderId")),
            alarm_email=str(get("alarmEmail") or ""),
            local=_as_bool(get("local")),
            create_identity=_identity_wanted(get("createIdentity"), str(get("senderDomain") or "")),
            send_concurrency=concurrency,
            ingest_concurrency=_bounded(int(get("ingestConcurrency")), "ingestConcurrency", 0, 10_000),
            waf_rate_limit=_waf_limit(int(get("wafRateLimit"))),
            ingest_url=_as_bool(get("ingestUrl")),
            nag=_as_bool(get("nag")),
        )
