import pytest
from retention.core.errors import BadRequestError
from retention.messaging.sms import clean_sms, normalize_phone, prepare_sms, sms_segments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("GSM-7", 0, 0)),
        ("a" * 160, ("GSM-7", 1, 160)),
        ("a" * 161, ("GSM-7", 2, 161)),
        ("a" * 306, ("GSM-7", 2, 306)),
        ("a" * 307, ("GSM-7", 3, 307)),
        ("Я" * 70, ("UCS-2", 1, 70)),
        ("Я" * 71, ("UCS-2", 2, 71)),
        ("Я" * 134, ("UCS-2", 2, 134)),
        ("Я" * 135, ("UCS-2", 3, 135)),
        ("€" * 80, ("GSM-7", 1, 160)),
        ("a" * 159 + "€", ("GSM-7", 2, 161)),
        ("{}[]~|^\\", ("GSM-7", 1, 16)),
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", ("GSM-7", 1, 42)),
    ],
)
def test_segments(text, expected):
    assert sms_segments(text) == expected


def test_one_cyrillic_letter_switches_the_whole_text_to_ucs2():
    assert sms_segments("Order 100234 is ready, код 4829") == ("UCS-2", 1, 31)
    assert sms_segments("x" * 100 + "ж") == ("UCS-2", 2, 101)


def test_an_escape_pair_is_never_split_between_parts():
    # 306 septets would fit two 153-septet parts, but the € straddles the boundary.
    assert sms_segments("a" * 152 + "€" + "a" * 152) == ("GSM-7", 3, 306)


def test_emoji_take_two_ucs2_units_and_are_not_split():
    assert sms_segments("😀" * 35) == ("UCS-2", 1, 70)
    assert sms_segments("😀" * 36) == ("UCS-2", 2, 72)
    # 33 emoji = 66 units in the first part, the 34th does not fit in the last unit left
    assert sms_segments("😀" * 33 + "a" + "😀" * 34) == ("UCS-2", 3, 135)


def test_prepare_strips_controls_and_collapses_whitespace():
    text = "  Анна,\x00 ваш\tзаказ   №100234\r\n\r\n\r\n\r\nготов \x1b\u200b к выдаче  "
    assert prepare_sms(text) == "Анна, ваш заказ №100234\n\nготов к выдаче"


def test_prepare_keeps_a_lone_no_break_space():
    assert prepare_sms("Итого 1\u202f290\u00a0₽") == "Итого 1\u202f290\u00a0₽"
    assert prepare_sms("a\u00a0\u00a0 b") == "a b"


def test_typographic_characters_become_gsm_in_a_latin_text():
    cleaned = clean_sms("Anna’s order — “ready”…")
    assert cleaned == 'Anna\'s order - "ready"...'
    assert sms_segments(cleaned)[0] == "GSM-7"
    # In a Cyrillic text UCS-2 is unavoidable, so the typography stays.
    assert clean_sms("Заказ «готов» — ждём") == "Заказ «готов» — ждём"


def test_prepare_enforces_the_segment_cap():
    assert prepare_sms("Я" * 402) == "Я" * 402  # 6 × 67
    with pytest.raises(BadRequestError) as err:
        prepare_sms("Я" * 403)
    assert err.value.code == "sms_too_long"
    assert "7 segments" in err.value.message
    assert prepare_sms("a" * 161, max_segments=2) == "a" * 161
    with pytest.raises(BadRequestError):
        prepare_sms("a" * 161, max_segments=1)


def test_prepare_refuses_an_empty_text():
    with pytest.raises(BadRequestError) as err:
        prepare_sms(" \x00\r\n ")
    assert err.value.code == "sms_empty"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("8 (916) 123-45-67", "+79161234567"),
        ("89161234567", "+79161234567"),
        ("79161234567", "+79161234567"),
        ("+7 916 123 45 67", "+79161234567"),
        ("9161234567", "+79161234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+1 (415) 555-2671", "+14155552671"),
        ("+380 44 123 4567", "+380441234567"),
        ("  +49.30.1234567 ", "+49301234567"),
    ],
)
def test_normalize_phone(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        None,
        12345,
        "abc",
        "+7 916 123 45 6",  # +7 numbers have 10 digits after the country code
        "+7 916 123 45 678",
        "8916123456",
        "123",
        "+0123456789",
        "+1234567890123456",  # 16 digits: longer than E.164 allows
        "442079460958",  # no + and not Russian: which country?
        "+7916123456x",
        "+7 ٩١٦ 123 45 67",  # non-ASCII digits
        "8-800-555-35-35 ext 2",
    ],
)
def test_normalize_phone_rejects_garbage(raw):
    assert normalize_phone(raw) is None
