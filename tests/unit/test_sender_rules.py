"""Pure parts of the sender: quiet windows (crossing midnight or within one day), the customer's local time
with an unknown time zone, and how the provider clients are built (one attempt, bounded timeouts).

Written against planted bugs the suite let through (issue 21): each docstring names the one it catches."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from retention.core.config import QuietHours
from retention.messaging.sender import local_time, quiet_until

MSK = ZoneInfo("Europe/Moscow")


def at(hour: int, minute: int = 0, tz: ZoneInfo = MSK) -> datetime:
    return datetime(2026, 11, 24, hour, minute, tzinfo=tz)


@pytest.mark.parametrize(("now", "until"), [
    (at(12, 59), None),
    (at(13, 0), at(15, 0)),  # the start belongs to the window
    (at(14, 30), at(15, 0)),
    (at(14, 59), at(15, 0)),
    (at(15, 0), None),  # the end does not
    (at(23, 0), None),
    (at(0, 30), None),
])
def test_a_same_day_quiet_window(now: datetime, until: datetime | None) -> None:
    """Bug caught: the `start < end` branch of quiet_until (a window within one day, e.g. a lunch break
    13:00–15:00) treated like an overnight one: messages deferred all evening and night."""
    assert quiet_until(QuietHours(start="13:00", end="15:00"), now) == until


@pytest.mark.parametrize(("now", "until"), [
    (at(20, 59), None),
    (at(21, 0), datetime(2026, 11, 25, 9, 0, tzinfo=MSK)),
    (at(23, 30), datetime(2026, 11, 25, 9, 0, tzinfo=MSK)),
    (at(0, 0), at(9, 0)),
    (at(8, 59), at(9, 0)),
    (at(9, 0), None),
    (at(12, 0), None),
])
def test_an_overnight_quiet_window(now: datetime, until: datetime | None) -> None:
    assert quiet_until(QuietHours(start="21:00", end="09:00"), now) == until


def test_no_window_or_an_empty_one_is_never_quiet() -> None:
    assert quiet_until(None, at(3)) is None
    assert quiet_until(QuietHours(start="10:00", end="10:00"), at(10)) is None


def test_minutes_of_the_window_count() -> None:
    w = QuietHours(start="13:30", end="14:15")
    assert quiet_until(w, at(13, 29)) is None
    assert quiet_until(w, at(13, 30)) == at(14, 15)
    assert quiet_until(w, at(14, 14)) == at(14, 15)
    assert quiet_until(w, at(14, 15)) is None


def test_local_time_in_the_customers_zone_else_the_default() -> None:
    """Bug caught: an unknown zone (`Mars/Olympus`) falling back to UTC instead of the shop's default zone
    (with the default zone left at UTC the two are the same, so the test uses Moscow), or raising."""
    now = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
    assert local_time("Asia/Vladivostok", "Europe/Moscow", now).hour == 5
    assert local_time("Mars/Olympus", "Europe/Moscow", now).hour == 22
    assert local_time("", "Europe/Moscow", now).hour == 22
    assert local_time(None, "Europe/Moscow", now).hour == 22
    assert local_time("../../etc/passwd", "Europe/Moscow", now).hour == 22
    assert local_time("Mars/Olympus", "Europe/Moscow", now) == now  # the same moment, another zone


def attempts(client: object, call: object, body: bytes = b'{"message": "internal"}') -> int:
    """How many HTTP attempts botocore makes for `call` when every answer is a 500 (no network used)."""
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ClientError

    class Raw:
        def stream(self, **_: object) -> object:
            yield body

    sent: list[str] = []

    def fake_send(request: object, **_: object) -> AWSResponse:
        sent.append(getattr(request, "url", ""))
        return AWSResponse(getattr(request, "url", ""), 500, {"Content-Type": "application/json"}, Raw())

    client.meta.events.register("before-send", fake_send)  # type: ignore[attr-defined]
    with pytest.raises(ClientError):
        call()  # type: ignore[operator]
    return len(sent)


def test_provider_clients_make_one_attempt_with_bounded_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug caught: the SES/SNS clients built with botocore's default retries (a read timeout retried =
    the message sent twice behind the ledger's back) or without the timeouts the queue's visibility
    timeout is sized for."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    from retention.core.runtime import Deps
    from retention.core.settings import Env
    from retention.messaging import delivery as handler  # the send_message function's client factory
    d = Deps(Env())
    ses, sns = handler.provider_clients(d)
    assert ses.meta.service_model.service_name == "sesv2" and sns.meta.service_model.service_name == "sns"
    for client in (ses, sns):
        cfg = client.meta.config
        assert cfg.connect_timeout == 3 and cfg.read_timeout == 10
    # what botocore really does: a 500 (retryable by default) is tried once, never twice
    assert attempts(ses, lambda: ses.send_email(FromEmailAddress="a@example.com",
                                                Destination={"ToAddresses": ["b@example.com"]},
                                                Content={"Raw": {"Data": b"x"}})) == 1
    xml = (b"<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code><Message>x</Message></Error>"
           b"</ErrorResponse>")
    assert attempts(sns, lambda: sns.publish(PhoneNumber="+79161112233", Message="x"), xml) == 1
    # the same pair is reused within a container
    assert handler.provider_clients(d) == (ses, sns)
    # injected clients (tests, the local runtime) are used as they are
    injected = Deps(Env(), sesv2="fake-ses", sns="fake-sns")
    assert handler.provider_clients(injected) == ("fake-ses", "fake-sns")
