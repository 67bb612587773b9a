"""Profiles: traits, consent, orders and the seed KPIs, computed by hand."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from retention.customers import profile as profiles
from retention.customers.profile import Profile, apply_message, compute_kpis, facts, merge_profiles
from retention.ingestion.wire import Message

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def track(event: str, ts: str, mid: str | None = None, **props: Any) -> Message:
    stamp = at(ts)
    return Message(
        type="track",
        message_id=mid or f"m{next(_ids)}",
        user_id="u1",
        event=event,
        properties=props,
        timestamp=stamp,
        received_at=stamp,
    )


def identify(ts: str, mid: str | None = None, **traits: Any) -> Message:
    stamp = at(ts)
    return Message(
        type="identify",
        message_id=mid or f"m{next(_ids)}",
        user_id="u1",
        traits=traits,
        timestamp=stamp,
        received_at=stamp,
    )


def apply_all(profile: Profile, *messages: Message) -> list[list[str]]:
    return [apply_message(profile, m, NOW) for m in messages]


def three_orders() -> list[Message]:
    """Posted newest first, as a history import may do."""
    return [
        track(
            "Order Completed",
            "2026-01-31T10:00:00",
            order_id="o3",
            products=[{"price": 10, "quantity": 2}, {"price": 5.25}],
            currency="rub",
            shop="A",
        ),
        track("Order Completed", "2026-01-11T10:00:00", order_id="o2", total=50.5, shop="B"),
        track("Order Completed", "2026-01-01T10:00:00", order_id="o1", revenue=100, shop="A"),
    ]


# --------------------------------------------------------------------------- KPIs


def test_every_kpi_by_hand() -> None:
    p = Profile(id="u1")
    apply_all(p, *three_orders())
    apply_all(
        p,
        track("Order Ready for Pickup", "2026-01-02T10:00:00", order_id="o1"),
        track("Order Picked Up", "2026-01-03T16:00:00", order_id="o1"),  # 30 h
        track("Order Ready for Pickup", "2026-01-12T00:00:00", order_id="o2"),
        track("Order Picked Up", "2026-01-12T06:00:00", order_id="o2"),  # 6 h
        track("Order Ready for Pickup", "2026-02-01T00:00:00", order_id="o3"),
        track("Order Unclaimed", "2026-02-08T00:00:00", order_id="o3"),
        track("Page Visit", "2026-02-20T08:00:00"),
        # seed 000 "частота обращений": the customer's own contacts (50 and 10 days ago)
        track("Support Requested", "2026-01-10T09:00:00"),
        track("Complaint Opened", "2026-02-19T09:00:00"),
    )
    for days in (1, 10, 31, 59, 61):
        profiles.record_contact(p, NOW - timedelta(days=days), NOW)
    profiles.record_message_stat(p, "delivered", NOW, 4)
    profiles.record_message_stat(p, "opened", NOW, 2)
    profiles.record_message_stat(p, "clicked", NOW)
    profiles.record_nps(p, 9, at("2026-02-10T00:00:00"), NOW)

    assert p.kpis == {
        "orders_count": 3,
        "revenue_total": 175.75,
        "average_order_value": 58.58,
        "first_order_at": "2026-01-01T10:00:00.000000Z",
        "last_order_at": "2026-01-31T10:00:00.000000Z",
        "average_days_between_orders": 15.0,
        "repeat_orders_count": 2,
        "nps_last_score": 9,
        "average_pickup_storage_hours": 18.0,
        "unclaimed_orders_percent": 33.33,
        "distinct_shops_count": 2,
        "contacts_30d": 1,
        "contacts_90d": 2,
        "last_contact_at": "2026-02-19T09:00:00.000000Z",
        "messages_received_30d": 2,  # the engine's sends: 1 and 10 days ago (31, 59 are out of the window)
        "last_message_at": "2026-02-28T12:00:00.000000Z",
        "open_rate": 0.5,
        "click_rate": 0.25,
        "last_seen_at": "2026-02-20T08:00:00.000000Z",
    }
    assert set(p.kpis) == set(profiles.KPI_KEYS)
    assert len(p.contacts) == 4  # the 61-day-old contact is not kept
    assert p.orders["o3"].currency == "RUB"
    assert p.orders["o3"].revenue == 25.25


def test_empty_profile_kpis_are_null_not_zero_division() -> None:
    k = compute_kpis(Profile(id="x"), NOW)
    assert k["orders_count"] == 0 and k["revenue_total"] == 0
    for key in (
        "average_order_value",
        "first_order_at",
        "average_days_between_orders",
        "nps_last_score",
        "average_pickup_storage_hours",
        "unclaimed_orders_percent",
        "last_contact_at",
        "last_message_at",
        "open_rate",
        "click_rate",
        "last_seen_at",
    ):
        assert k[key] is None, key
    assert k["repeat_orders_count"] == 0 and k["contacts_30d"] == 0 and k["distinct_shops_count"] == 0
    assert k["contacts_90d"] == 0 and k["messages_received_30d"] == 0


def test_one_order_has_no_average_interval() -> None:
    p = Profile(id="u1")
    apply_message(p, three_orders()[0], NOW)
    assert p.kpis["orders_count"] == 1
    assert p.kpis["average_days_between_orders"] is None
    assert p.kpis["repeat_orders_count"] == 0
    assert p.kpis["average_order_value"] == 25.25


def test_out_of_order_gives_the_same_kpis() -> None:
    newest_first, oldest_first = Profile(id="a"), Profile(id="b")
    orders = three_orders()
    apply_all(newest_first, *orders)
    apply_all(oldest_first, *reversed(orders))
    assert newest_first.kpis == oldest_first.kpis
    assert newest_first.kpis["first_order_at"] == "2026-01-01T10:00:00.000000Z"


def test_duplicate_order_id_counts_once() -> None:
    p = Profile(id="u1")
    first = track("Order Completed", "2026-01-01T10:00:00", order_id="o1", revenue=100)
    again = track("Order Completed", "2026-01-01T10:05:00", order_id="o1", revenue=100, shop="S")
    apply_all(p, first, again, first)
    assert p.kpis["orders_count"] == 1
    assert p.kpis["revenue_total"] == 100
    assert p.kpis["distinct_shops_count"] == 1  # a repeat fills what was missing
    assert p.kpis["first_order_at"] == "2026-01-01T10:00:00.000000Z"


def test_full_refund_removes_the_order() -> None:
    p = Profile(id="u1")
    apply_all(p, *three_orders())
    changes = apply_message(p, track("Order Refunded", "2026-02-01T00:00:00", order_id="o2"), NOW)
    assert "orders" in changes and "kpis" in changes
    assert p.kpis["orders_count"] == 2
    assert p.kpis["revenue_total"] == 125.25
    assert p.kpis["distinct_shops_count"] == 1
    assert p.kpis["average_days_between_orders"] == 30.0
    assert p.orders["o2"].status == "refunded"


def test_partial_refund_lowers_revenue_and_keeps_the_order() -> None:
    p = Profile(id="u1")
    apply_all(p, *three_orders())
    refund = track("Order Refunded", "2026-02-01T00:00:00", mid="r1", order_id="o1", amount="30")
    apply_all(p, refund, refund)  # a replay of the same refund counts once
    assert p.kpis["orders_count"] == 3
    assert p.kpis["revenue_total"] == 145.75
    assert p.orders["o1"].refunded_amount == 30
    apply_message(p, track("Order Refunded", "2026-02-02T00:00:00", order_id="o1", total=70), NOW)
    assert p.orders["o1"].status == "refunded"  # partials reaching the revenue are a full refund
    assert p.kpis["orders_count"] == 2
    assert p.kpis["revenue_total"] == 75.75


def test_partial_refund_by_products() -> None:
    p = Profile(id="u1")
    apply_all(p, *three_orders())
    apply_message(
        p, track("Order Refunded", "2026-02-01T00:00:00", order_id="o3", products=[{"price": 10}]), NOW
    )
    assert p.kpis["revenue_total"] == 165.75 and p.kpis["orders_count"] == 3


def test_completed_after_refund_does_not_resurrect() -> None:
    p = Profile(id="u1")
    completed = track("Order Completed", "2026-01-01T10:00:00", order_id="o1", revenue=100)
    apply_all(p, completed, track("Order Refunded", "2026-01-02T00:00:00", order_id="o1"), completed)
    assert p.kpis["orders_count"] == 0 and p.kpis["revenue_total"] == 0
    # refund seen before the order itself (import newest first): still not counted
    q = Profile(id="u2")
    apply_all(q, track("Order Refunded", "2026-01-02T00:00:00", order_id="o1"), completed)
    assert q.kpis["orders_count"] == 0
    assert q.orders["o1"].revenue == 100 and q.orders["o1"].refunded_amount == 100


def test_cancel_removes_from_count_and_revenue() -> None:
    p = Profile(id="u1")
    apply_all(p, *three_orders(), track("Order Cancelled", "2026-02-01T00:00:00", order_id="o3"))
    assert p.kpis["orders_count"] == 2
    assert p.kpis["revenue_total"] == 150.5
    assert p.kpis["last_order_at"] == "2026-01-11T10:00:00.000000Z"
    apply_message(p, three_orders()[0], NOW)
    assert p.kpis["orders_count"] == 2


def test_delivery_events_before_the_order_wait_as_pending() -> None:
    p = Profile(id="u1")
    apply_all(
        p,
        track("Order Picked Up", "2026-01-03T12:00:00", order_id="o9"),
        track("Order Ready for Pickup", "2026-01-02T12:00:00", order_id="o9"),
        track("Order Shipped", "2026-01-01T18:00:00", order_id="o9"),
    )
    assert p.kpis["orders_count"] == 0
    assert p.kpis["average_pickup_storage_hours"] == 24.0
    apply_message(p, track("Order Completed", "2026-01-01T12:00:00", order_id="o9", revenue=10), NOW)
    assert p.kpis["orders_count"] == 1
    assert p.orders["o9"].shipped_at == at("2026-01-01T18:00:00")


def test_unclaimed_percent_only_over_orders_that_reached_a_pickup_point() -> None:
    p = Profile(id="u1")
    apply_all(p, *three_orders())  # none reached a pickup point yet
    assert p.kpis["unclaimed_orders_percent"] is None
    apply_all(
        p,
        track("Order Ready for Pickup", "2026-01-02T00:00:00", order_id="o1"),
        track("Order Unclaimed", "2026-01-20T00:00:00", order_id="o2"),
    )
    assert p.kpis["unclaimed_orders_percent"] == 50.0
    assert p.kpis["average_pickup_storage_hours"] is None  # o1 not picked up yet


def test_order_event_without_order_id_is_noted_not_applied() -> None:
    p = Profile(id="u1")
    changes = apply_message(p, track("Order Completed", "2026-01-01T00:00:00", revenue=5), NOW)
    assert "orders" not in changes
    assert p.orders == {}
    assert "order_id" in p.notes[-1]["note"]


def test_event_names_are_case_insensitive() -> None:
    p = Profile(id="u1")
    apply_message(p, track("order  completed", "2026-01-01T00:00:00", order_id=7, revenue="12,5"), NOW)
    assert p.kpis["orders_count"] == 1 and p.kpis["revenue_total"] == 12.5
    assert "7" in p.orders


# --------------------------------------------------------------------------- interests, seen


def test_product_interest_keeps_the_latest_time() -> None:
    p = Profile(id="u1")
    changes = apply_all(
        p,
        track("Product Viewed", "2026-02-01T00:00:00", product_id="p1"),
        track("Product Added", "2026-02-03T00:00:00", sku="p2"),
        track("Product Viewed", "2026-01-01T00:00:00", product_id="p1"),  # older: ignored
        track("Product Added to Wishlist", "2026-02-04T00:00:00", id=3),
    )
    assert p.interests == {
        "p1": "2026-02-01T00:00:00.000000Z",
        "p2": "2026-02-03T00:00:00.000000Z",
        "3": "2026-02-04T00:00:00.000000Z",
    }
    assert "interests" in changes[0] and "interests" not in changes[2]


def test_seen_times_take_min_and_max() -> None:
    p = Profile(id="u1")
    apply_all(p, track("A", "2026-02-01T00:00:00"), track("B", "2026-01-01T00:00:00"))
    assert p.first_seen_at == at("2026-01-01T00:00:00")
    assert p.last_seen_at == at("2026-02-01T00:00:00")
    assert p.kpis["last_seen_at"] == "2026-02-01T00:00:00.000000Z"
    assert p.created_at == NOW


def test_anonymous_id_of_a_message_is_linked() -> None:
    p = Profile(id="u1")
    m = track("A", "2026-02-01T00:00:00").model_copy(update={"anonymous_id": "anon-9"})
    assert "identity" in apply_message(p, m, NOW)
    assert p.anonymous_ids == ["anon-9"]
    assert "identity" not in apply_message(p, m, NOW)


# --------------------------------------------------------------------------- traits


def test_meaningful_traits_are_normalized() -> None:
    p = Profile(id="u1")
    changes = apply_message(
        p,
        identify(
            "2026-02-01T00:00:00",
            email="  Ivan@Example.RU ",
            phone="8 (916) 123-45-67",
            firstName="Иван",
            birthday="05-17",
            timezone="Europe/Moscow",
            locale="ru",
            preferred_channel="SMS",
            vip="true",
            has_account=1,
            has_mobile_app=False,
            plan="gold",
        ),
        NOW,
    )
    assert "traits" in changes
    assert p.traits == {
        "email": "ivan@example.ru",
        "phone": "+79161234567",
        "first_name": "Иван",
        "birthday": "05-17",
        "timezone": "Europe/Moscow",
        "locale": "ru",
        "preferred_channel": "sms",
        "vip": True,
        "has_account": True,
        "has_mobile_app": False,
        "plan": "gold",
    }
    assert p.trait_ts["email"] == "2026-02-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+7 916 123-45-67", "+79161234567"),
        ("79161234567", "+79161234567"),
        ("0044 20 7946 0958", "+442079460958"),
        (79161234567, "+79161234567"),
        ("ext. 123", "ext. 123"),  # not clearly a number: kept as given
    ],
)
def test_phone_normalization(raw: Any, expected: str) -> None:
    assert profiles.normalize_phone(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1990-05-17", "1990-05-17"),
        ("02-29", "02-29"),
        ("--12-31", "12-31"),
        ("1990-05-17T00:00:00Z", "1990-05-17"),
        ("1990-13-01", None),
        ("17.05.1990", None),
    ],
)
def test_birthday_normalization(raw: str, expected: str | None) -> None:
    assert profiles.normalize_birthday(raw) == expected


def test_invalid_meaningful_traits_are_ignored_and_noted() -> None:
    p = Profile(id="u1")
    apply_message(p, identify("2026-02-01T00:00:00", timezone="Europe/Moscow"), NOW)
    apply_message(
        p, identify("2026-02-02T00:00:00", timezone="Mars/Olympus", birthday="soon", email="nope"), NOW
    )
    assert p.traits == {"timezone": "Europe/Moscow"}
    notes = " | ".join(n["note"] for n in p.notes)
    assert "Mars/Olympus" in notes and "birthday" in notes and "email" in notes


def test_older_identify_never_overwrites_a_newer_trait() -> None:
    p = Profile(id="u1")
    apply_message(p, identify("2026-02-10T00:00:00", email="new@x.ru", city="Moscow"), NOW)
    changes = apply_message(p, identify("2026-02-01T00:00:00", email="old@x.ru", zip="101000"), NOW)
    assert p.traits["email"] == "new@x.ru"
    assert p.traits["city"] == "Moscow"
    assert p.traits["zip"] == "101000"  # per key: an older event still fills a trait it is first to set
    assert p.trait_ts["email"] == "2026-02-10T00:00:00.000000Z"
    assert "traits" in changes
    apply_message(p, identify("2026-02-11T00:00:00", email=None), NOW)
    assert p.traits["email"] is None  # an explicit null from a newer event clears it


def test_identify_with_unchanged_traits_reports_no_trait_change() -> None:
    p = Profile(id="u1")
    apply_message(p, identify("2026-02-01T00:00:00", plan="a"), NOW)
    assert "traits" not in apply_message(p, identify("2026-02-02T00:00:00", plan="a"), NOW)


# --------------------------------------------------------------------------- consent


def test_consent_object_with_evidence() -> None:
    p = Profile(id="u1")
    evidence = {"ip": "1.2.3.4", "form": "checkout", "text": "Согласен на рассылку"}
    changes = apply_message(
        p,
        identify(
            "2026-02-01T00:00:00",
            mid="idf-1",
            email_consent={
                "granted": True,
                "source": "checkout",
                "at": "2026-01-31T23:59:00Z",
                "evidence": evidence,
            },
            sms_consent=False,
        ),
        NOW,
    )
    assert "consent" in changes
    email = p.consent["email"]
    assert email.granted and email.source == "checkout"
    assert email.at == at("2026-01-31T23:59:00") and email.evidence == evidence
    assert p.consent["sms"].granted is False and p.consent["sms"].source == "identify"
    assert p.consent["sms"].at == at("2026-02-01T00:00:00")
    assert "email_consent" not in p.traits
    entry = next(e for e in p.consent_log if e["channel"] == "email")
    assert entry["granted"] is True and entry["evidence"] == evidence
    assert entry["message_id"] == "idf-1" and entry["source"] == "checkout"
    assert entry["at"] == "2026-01-31T23:59:00.000000Z"
    assert facts(p, NOW)["consent"] == {"email": True, "sms": False}


def test_older_consent_statement_does_not_undo_a_newer_one() -> None:
    p = Profile(id="u1")
    apply_message(p, identify("2026-02-05T00:00:00", email_consent=False), NOW)
    changes = apply_message(p, identify("2026-02-01T00:00:00", email_consent=True), NOW)
    assert "consent" not in changes
    assert p.consent["email"].granted is False
    assert len(p.consent_log) == 2  # both statements are in the log


def test_double_opt_in_pending_then_confirmed_by_trait() -> None:
    p = Profile(id="u1")
    apply_message(
        p, identify("2026-02-01T00:00:00", email_consent={"granted": True, "double_opt_in": True}), NOW
    )
    assert p.consent["email"].granted is True
    assert p.consent["email"].confirmed_at is None
    assert facts(p, NOW)["consent"]["email"] is False  # pending
    changes = apply_message(
        p, identify("2026-02-01T00:10:00", email_consent={"granted": True, "confirmed": True}), NOW
    )
    assert "consent" in changes
    assert p.consent["email"].confirmed_at == at("2026-02-01T00:10:00")
    assert facts(p, NOW)["consent"]["email"] is True
    # signing up again does not put a confirmed subscription back to pending
    apply_message(
        p, identify("2026-02-03T00:00:00", email_consent={"granted": True, "double_opt_in": True}), NOW
    )
    assert facts(p, NOW)["consent"]["email"] is True


def test_double_opt_in_confirmed_by_event() -> None:
    p = Profile(id="u1")
    apply_message(
        p, identify("2026-02-01T00:00:00", sms_consent={"granted": True, "double_opt_in": True}), NOW
    )
    assert facts(p, NOW)["consent"]["sms"] is False
    wrong = apply_message(p, track("Consent Confirmed", "2026-02-01T00:05:00", channel="fax"), NOW)
    assert "consent" not in wrong
    changes = apply_message(p, track("Consent Confirmed", "2026-02-01T00:05:00", channel="SMS"), NOW)
    assert "consent" in changes
    assert p.consent["sms"].confirmed_at == at("2026-02-01T00:05:00")
    again = apply_message(p, track("Consent Confirmed", "2026-02-02T00:00:00", channel="sms"), NOW)
    assert "consent" not in again  # already confirmed: nothing changes
    assert p.consent["sms"].confirmed_at == at("2026-02-01T00:05:00")
    assert p.consent["sms"].at == at("2026-02-01T00:00:00")
    assert facts(p, NOW)["consent"] == {"email": False, "sms": True}


def test_revocation_after_confirmation() -> None:
    p = Profile(id="u1")
    apply_message(
        p, identify("2026-02-01T00:00:00", email_consent={"granted": True, "double_opt_in": True}), NOW
    )
    apply_message(p, track("Consent Confirmed", "2026-02-01T00:05:00", channel="email"), NOW)
    assert profiles.set_consent(p, "email", False, source="unsubscribe_link", at=at("2026-02-02T00:00:00"))
    assert facts(p, NOW)["consent"]["email"] is False
    assert p.consent_log[-1]["source"] == "unsubscribe_link"


def test_consent_log_keeps_the_last_50() -> None:
    p = Profile(id="u1")
    for i in range(60):
        apply_message(p, identify(f"2026-02-01T00:{i:02d}:00", email_consent=i % 2 == 0), NOW)
    assert len(p.consent_log) == 50
    assert p.consent_log[-1]["at"] == "2026-02-01T00:59:00.000000Z"
    assert p.consent["email"].granted is False


# --------------------------------------------------------------------------- NPS


def test_nps_latest_answer_and_replacement_by_ref() -> None:
    p = Profile(id="u1")
    profiles.record_nps(p, 6, at("2026-02-01T00:00:00"), NOW, ref="t1")
    profiles.record_nps(p, 10, at("2026-02-01T00:01:00"), NOW, ref="t1", comment="ok")
    assert [h["score"] for h in p.nps["history"]] == [10]
    assert p.kpis["nps_last_score"] == 10
    apply_message(p, track("NPS Answered", "2026-02-05T00:00:00", score=3), NOW)
    assert p.kpis["nps_last_score"] == 3 and len(p.nps["history"]) == 2
    with pytest.raises(ValueError):
        profiles.record_nps(p, 11, NOW, NOW)


# --------------------------------------------------------------------------- merge


def test_merge_anonymous_into_known() -> None:
    anon = Profile(id="anon-1")
    apply_all(
        anon,
        track("Product Viewed", "2026-01-05T00:00:00", product_id="p1"),
        track("Order Completed", "2026-01-06T00:00:00", order_id="o1", revenue=40, shop="X"),
        identify("2026-01-04T00:00:00", email="anon@x.ru", city="Tver"),
    )
    anon.message_stats = {"delivered": 1, "opened": 1}
    anon.contacts = ["2026-02-20T00:00:00.000000Z"]
    anon.journeys = {"browse-abandonment": {"state": "active"}}

    known = Profile(id="u1", version=7, segments={"lifecycle": {"newbie": {"since": "x"}}})
    apply_all(
        known,
        identify("2026-02-01T00:00:00", email="known@x.ru", email_consent=True),
        track("Order Completed", "2026-02-02T00:00:00", order_id="o2", revenue=60, shop="Y"),
        track("Product Viewed", "2026-01-01T00:00:00", product_id="p1"),
    )
    known.message_stats = {"delivered": 3}

    merge_profiles(known, anon, NOW)

    assert known.traits == {"email": "known@x.ru", "city": "Tver"}  # newer email kept
    assert known.trait_ts["city"] == "2026-01-04T00:00:00.000000Z"
    assert known.kpis["orders_count"] == 2 and known.kpis["revenue_total"] == 100
    assert known.kpis["distinct_shops_count"] == 2
    assert known.kpis["average_days_between_orders"] == 27.0
    assert known.interests["p1"] == "2026-01-05T00:00:00.000000Z"
    assert known.anonymous_ids == ["anon-1"]
    assert known.message_stats == {"delivered": 4, "opened": 1}
    assert known.kpis["open_rate"] == 0.25
    assert known.contacts == ["2026-02-20T00:00:00.000000Z"] and known.kpis["messages_received_30d"] == 1
    assert known.first_seen_at == at("2026-01-01T00:00:00")
    assert known.last_seen_at == at("2026-02-02T00:00:00")
    assert known.consent["email"].granted is True
    assert known.journeys == {"browse-abandonment": {"state": "active"}}
    assert known.version == 7 and known.id == "u1"


def test_merge_consent_newest_wins_and_same_order_merges() -> None:
    target = Profile(id="u1")
    apply_all(
        target,
        identify("2026-01-01T00:00:00", email_consent=True),
        track("Order Completed", "2026-01-02T00:00:00", order_id="o1", revenue=50),
    )
    source = Profile(id="anon")
    apply_all(
        source,
        identify("2026-01-05T00:00:00", email_consent=False),
        track("Order Completed", "2026-01-02T00:00:00", order_id="o1", revenue=50),
        track("Order Refunded", "2026-01-03T00:00:00", order_id="o1", amount=20),
    )
    merge_profiles(target, source, NOW, source_is_anonymous=False)
    assert target.consent["email"].granted is False
    assert target.kpis["orders_count"] == 1 and target.kpis["revenue_total"] == 30
    assert target.anonymous_ids == []
    assert [e["granted"] for e in target.consent_log] == [True, False]


# --------------------------------------------------------------------------- facts & documents


def test_facts_flatten_segments_and_carry_everything() -> None:
    p = Profile(
        id="u1",
        traits={"vip": True},
        segments={
            "lifecycle": {"loyal": {"since": "2026-01-01T00:00:00Z", "manual": False}},
            "flags": {"vip": {"since": "x"}, "mobile_app": {"since": "y", "manual": True}},
            "nps_group": {},
        },
    )
    f = facts(p, NOW)
    # plain ids and group-qualified ones (`nps_group/passive` vs `potential/passive` are different)
    assert f["segments"] == {"loyal", "vip", "mobile_app", "lifecycle/loyal", "flags/vip", "flags/mobile_app"}
    assert f["traits"] == {"vip": True}
    assert f["consent"] == {"email": False, "sms": False}
    assert f["kpis"]["orders_count"] == 0
    assert f["now"] == NOW


def test_doc_round_trip() -> None:
    p = Profile(
        id="u1", segments={"lifecycle": {"newbie": {"since": "s"}}}, journeys={"welcome": {"step": 1}}
    )
    apply_all(
        p,
        *three_orders(),
        track("Order Refunded", "2026-02-01T00:00:00", order_id="o1", amount=10),
        identify(
            "2026-02-01T00:00:00", email="a@b.c", email_consent={"granted": True, "evidence": {"ip": "1"}}
        ),
        track("Product Viewed", "2026-02-02T00:00:00", product_id="p"),
    )
    profiles.record_nps(p, 8, at("2026-02-03T00:00:00"), NOW)
    p.version = 3
    doc = p.to_doc()
    assert "\n" not in doc and ": " not in doc
    assert isinstance(json.loads(doc), dict)
    back = Profile.from_doc(doc)
    # the orders are items of their own (the doc keeps their aggregates: its size does not grow with them)
    assert "orders" not in json.loads(doc) and back.orders == {}
    assert back.model_dump(exclude={"orders"}) == p.model_dump(exclude={"orders"})
    assert back.order_stats == p.order_stats and back.kpis == p.kpis
    assert not back.orders_complete() and p.orders_complete()
    assert Profile.from_doc(json.loads(doc)).model_dump() == back.model_dump()
    from retention.customers.store import order_from_item, order_item
    item = order_item("u1", p.orders["o1"])
    assert order_from_item(item) == p.orders["o1"] and order_from_item(item).refunds


def test_suppressed_channel_is_not_consented_in_facts() -> None:
    p = Profile(id="u1")
    apply_message(p, identify("2026-02-01T00:00:00", email_consent=True, sms_consent=True), NOW)
    assert facts(p, NOW)["consent"] == {"email": True, "sms": True}
    p.suppressed["email"] = {"reason": "bounce", "at": "2026-02-02T00:00:00Z"}
    assert facts(p, NOW)["consent"] == {"email": False, "sms": True}
    p.meta["manual_segments"] = {"vip": {"until": "x"}}
    back = Profile.from_doc(p.to_doc())
    assert back.suppressed == p.suppressed and back.meta == p.meta
    known = Profile(id="u2")
    merge_profiles(known, p, NOW)
    assert known.suppressed == {"email": {"reason": "bounce", "at": "2026-02-02T00:00:00Z"}}


def test_one_list_of_interest_events_for_the_profile_and_the_product_index() -> None:
    """The profile and ingestion's product index used two lists (`Product Subscribed` and cart lines
    reached the index only, so a merge did not carry them): one list, one reader of product ids."""
    from retention.ingestion.ingestor import _interests
    from retention.ingestion.wire import internal_message
    now = datetime(2026, 11, 24, tzinfo=UTC)
    p = profiles.Profile(id="c1", created_at=now)
    msgs = [internal_message("c1", event="Product Subscribed", properties={"sku": "S1"}, at=now),
            internal_message("c1", event="product added", at=now,
                             properties={"product_id": "P1", "products": [{"product_id": "P2"}, {"id": "P3"}]})]
    for m in msgs:
        profiles.apply_message(p, m, now)
    assert sorted(p.interests) == ["P1", "P2", "P3", "S1"]
    assert sorted((pid, kind) for pid, kind, _ in _interests(msgs)) == [
        ("P1", "carted"), ("P2", "carted"), ("P3", "carted"), ("S1", "subscribed")]


def test_contacts_are_the_customers_own_and_the_event_list_is_a_setting() -> None:
    """Seed 000's "частота обращений": support requests and complaints over 30/90 days, not the engine's
    sends (those are messages_received_30d); a shop can name its own contact events."""
    p = Profile(id="c1")
    apply_message(p, track("Complaint Opened", "2026-02-25T10:00:00"), NOW)
    apply_message(p, track("Complaint Opened", "2026-02-25T10:00:00"), NOW)  # the same contact again
    apply_message(p, track("Support Requested", "2025-12-15T10:00:00"), NOW)  # 76 days ago
    apply_message(p, track("Product Viewed", "2026-02-28T10:00:00", product_id="p1"), NOW)
    profiles.record_contact(p, NOW - timedelta(days=2), NOW)  # a marketing email the engine sent
    assert (p.kpis["contacts_30d"], p.kpis["contacts_90d"]) == (1, 2)
    assert p.kpis["last_contact_at"] == "2026-02-25T10:00:00.000000Z"
    assert p.kpis["messages_received_30d"] == 1
    q = Profile(id="c2")
    apply_message(q, track("Chat Started", "2026-02-27T10:00:00"), NOW, contact_events=["Chat Started"])
    apply_message(q, track("Complaint Opened", "2026-02-27T11:00:00"), NOW, contact_events=["Chat Started"])
    assert q.kpis["contacts_30d"] == 1 and q.kpis["last_contact_at"] == "2026-02-27T10:00:00.000000Z"


def test_the_engines_sends_never_count_as_the_customers_contacts() -> None:
    """Issue 14 item 9: `contacts_30d` changed meaning. The stored send list (both message classes) feeds
    `messages_received_30d` / `last_message_at` only; `contacts_30d` / `last_contact_at` move only with the
    customer's own contact events, and the README says which is which."""
    from pathlib import Path

    from retention.customers.store import StoredProfile as Stored
    from retention.customers.store import encode_doc, from_item, to_item
    p = Profile(id="c1", created_at=NOW - timedelta(days=40))
    apply_message(p, track("Support Requested", "2026-02-20T10:00:00"), NOW)
    sends = [{"at": "2026-02-27T10:00:00.000000Z", "rule": "abandoned-cart", "step": 1, "marketing": True},
             {"at": "2026-02-28T10:00:00.000000Z", "rule": "order-confirmation", "step": 0, "marketing": False},
             {"at": "2026-01-05T10:00:00.000000Z", "rule": "welcome", "step": 1, "marketing": True}]  # 55 days ago
    item = {**to_item(Stored(profile=p, version=1), NOW), "sends": sends, "doc": encode_doc(p.to_doc())}
    loaded = from_item("c1", item, NOW).profile
    kpis = compute_kpis(loaded, NOW)
    assert (kpis["contacts_30d"], kpis["contacts_90d"], kpis["last_contact_at"]) == (
        1, 1, "2026-02-20T10:00:00.000000Z")
    assert (kpis["messages_received_30d"], kpis["last_message_at"]) == (2, "2026-02-28T10:00:00.000000Z")
    profiles.record_contact(loaded, NOW - timedelta(hours=1), NOW)  # the sender's bookkeeping of one more send
    assert (loaded.kpis["contacts_30d"], loaded.kpis["messages_received_30d"]) == (1, 3)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "`contacts_30d` / `contacts_90d` / `last_contact_at` are the customer's own contacts" in readme
    assert "never the engine's messages: those are `messages_received_30d`" in readme


def test_a_merge_keeps_the_later_erasure_mark_of_a_re_created_customer() -> None:
    """`erased_before` (the ingestion's keyed-event guard on a profile re-created after an erasure, issue 17
    review finding 4): absent on every other profile; a merge keeps the later of the two."""
    anon = Profile(id="anon-1")
    known = Profile(id="u1")
    assert profiles.erased_before(known) is None
    merge_profiles(known, anon, NOW)
    assert profiles.erased_before(known) is None and profiles.ERASED_BEFORE not in known.meta
    anon.meta[profiles.ERASED_BEFORE] = "2026-02-20T00:00:00.000000Z"
    merge_profiles(known, anon, NOW)
    assert profiles.erased_before(known) == at("2026-02-20T00:00:00")
    older = Profile(id="anon-2", meta={profiles.ERASED_BEFORE: "2026-01-01T00:00:00.000000Z"})
    merge_profiles(known, older, NOW)
    assert profiles.erased_before(known) == at("2026-02-20T00:00:00")
