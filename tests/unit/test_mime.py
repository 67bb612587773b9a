import email
from datetime import UTC, datetime, timedelta, timezone
from email import policy

import pytest
from retention.core.errors import BadRequestError
from retention.messaging.mime import build_email, format_date, parse_email

NOW = datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC)
SUBJECT = "Анна, вы забыли 2 товара в корзине — вернитесь и получите скидку 10 % на весь заказ до 24 ноября"


def make(**overrides):
    args = {
        "sender": "Магазин «Ромашка» <news@shop.example>",
        "to": "anna@example.com",
        "subject": SUBJECT,
        "html": "<html><body><p>Привет, Анна!</p><a href='https://shop.example/cart'>Корзина</a></body></html>",
        "text": "Привет, Анна!\nКорзина: https://shop.example/cart",
        "preheader": "Скидка 10 % внутри",
        "unsubscribe_url": "https://engine.example/u/tok~abc",
        "unsubscribe_mailto": "unsubscribe@shop.example",
        "message_id_domain": "shop.example",
        "headers": {"X-Retention-Rule": "abandoned-cart"},
        "now": NOW,
    }
    args.update(overrides)
    return build_email(**args)


def header_block(raw: bytes) -> str:
    return raw.split(b"\r\n\r\n", 1)[0].decode("ascii")


def test_cyrillic_subject_and_sender_round_trip():
    raw = make()
    parsed = parse_email(raw)
    assert parsed["subject"] == SUBJECT
    assert parsed["from"] == "Магазин «Ромашка» <news@shop.example>"
    assert parsed["to"] == "anna@example.com"
    head = header_block(raw)
    assert "=?utf-8?B?" in head
    assert head.isascii()


@pytest.mark.parametrize(
    "subject",
    [
        "Короткая тема",
        ("а б в г д е ж з и к л м н о п р с т у ф х ц ч ш щ э ю я " * 4).strip(),
        "Mixed: Скидка 10% on “sneakers” 👟 до 24.11",
        "Plain ASCII subject that is rather long and needs folding somewhere around here, really long",
        "Looks like =?utf-8?B?0JA=?= an encoded word",
    ],
)
def test_subjects_round_trip_exactly(subject):
    assert parse_email(make(subject=subject))["subject"] == subject


def test_list_unsubscribe_headers_exact():
    head = header_block(make())
    lines = head.split("\r\n")
    assert "List-Unsubscribe: <https://engine.example/u/tok~abc>, <mailto:unsubscribe@shop.example>" in lines
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    parsed = parse_email(make(unsubscribe_mailto=None))
    assert parsed["headers"]["List-Unsubscribe"] == "<https://engine.example/u/tok~abc>"
    assert parsed["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_mailto_with_prefix_and_query_is_kept():
    parsed = parse_email(make(unsubscribe_mailto="mailto:unsub@shop.example?subject=unsubscribe"))
    assert parsed["headers"]["List-Unsubscribe"] == (
        "<https://engine.example/u/tok~abc>, <mailto:unsub@shop.example?subject=unsubscribe>"
    )


def test_standard_headers():
    parsed = parse_email(make())
    headers = parsed["headers"]
    assert headers["Date"] == "Tue, 24 Nov 2026 10:00:05 +0000"
    assert headers["MIME-Version"] == "1.0"
    assert headers["Message-ID"].startswith("<20261124100005.")
    assert headers["Message-ID"].endswith("@shop.example>")
    assert headers["X-Retention-Rule"] == "abandoned-cart"
    assert headers["Content-Type"].startswith("multipart/alternative")
    assert make()  # every call gets its own Message-ID
    assert parse_email(make())["headers"]["Message-ID"] != headers["Message-ID"]


def test_format_date_converts_to_utc():
    moscow = timezone(timedelta(hours=3))
    assert format_date(datetime(2026, 11, 24, 13, 0, tzinfo=moscow)) == "Tue, 24 Nov 2026 10:00:00 +0000"
    assert format_date(datetime(2026, 1, 4, 0, 0)) == "Sun, 04 Jan 2026 00:00:00 +0000"


def test_text_first_then_html():
    raw = make()
    message = email.message_from_bytes(raw, policy=policy.default)
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    parsed = parse_email(raw)
    assert parsed["text"] == "Привет, Анна!\nКорзина: https://shop.example/cart"
    assert "<p>Привет, Анна!</p>" in parsed["html"]


def test_transfer_encoding_follows_the_content():
    raw = make(
        text="Hello Anna, your cart is waiting: https://shop.example/cart",
        html="<p>Привет, Анна!</p>" * 5,
        preheader=None,
    )
    message = email.message_from_bytes(raw, policy=policy.default)
    plain, html = message.iter_parts()
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert html["Content-Transfer-Encoding"] == "base64"
    assert plain.get_content_charset() == "utf-8"
    assert parse_email(raw)["text"] == "Hello Anna, your cart is waiting: https://shop.example/cart"


def test_single_part_messages():
    html_only = parse_email(make(text=None))
    assert html_only["headers"]["Content-Type"] == 'text/html; charset="utf-8"'
    assert html_only["text"] is None
    assert "Привет" in html_only["html"]
    text_only = parse_email(make(html=None))
    assert text_only["headers"]["Content-Type"] == 'text/plain; charset="utf-8"'
    assert text_only["text"] == "Привет, Анна!\nКорзина: https://shop.example/cart"
    assert text_only["html"] is None
    with pytest.raises(BadRequestError):
        make(html=None, text=None)


def test_preheader_is_the_first_hidden_element_of_the_body():
    html = parse_email(make(preheader="Скидка <10 %> внутри"))["html"]
    body_at = html.index("<body>") + len("<body>")
    assert html[body_at:].startswith('<div style="display:none;')
    assert "Скидка &lt;10 %&gt; внутри" in html
    assert html.index("Скидка &lt;10") < html.index("<p>Привет")
    no_body_tag = parse_email(make(html="<p>Hi</p>", preheader="Pre"))["html"]
    assert no_body_tag.startswith('<div style="display:none;') and no_body_tag.endswith("<p>Hi</p>")
    assert "display:none" not in parse_email(make(preheader=None))["html"]


def test_cr_lf_in_subject_and_names_is_stripped():
    raw = make(
        subject="Hello\r\nBcc: victim@example.com\r\n\r\nbody",
        sender="Shop\r\nBcc: victim@example.com <news@shop.example>",
        headers={"X-Note": "a\r\nBcc: victim@example.com", "X-Tab": "a\tb\x00c\u2028d"},
    )
    parsed = parse_email(raw)
    assert "Bcc" not in parsed["headers"]
    assert parsed["subject"] == "Hello Bcc: victim@example.com body"
    assert parsed["from"] == '"Shop Bcc: victim@example.com" <news@shop.example>'
    assert parsed["headers"]["X-Note"] == "a Bcc: victim@example.com"
    assert parsed["headers"]["X-Tab"] == "a b c d"
    assert all(not line.lower().startswith("bcc") for line in header_block(raw).split("\r\n"))


@pytest.mark.parametrize(
    "to",
    [
        "anna@example.com\r\nBcc: victim@example.com",
        "anna@example.com\n",
        "Anna\r\n <anna@example.com>",
        "anna.example.com",
        "anna@",
        "@example.com",
        "anna@@example.com",
        "an na@example.com",
        "anna@example",
        "<>",
        "",
        "Анна@example.com",
    ],
)
def test_bad_recipient_is_refused(to):
    with pytest.raises(BadRequestError):
        make(to=to)


def test_recipient_with_display_name_and_idn_domain():
    parsed = parse_email(make(to="Анна Смирнова <anna@пример.рф>"))
    assert parsed["to"] == "Анна Смирнова <anna@xn--e1afmkfd.xn--p1ai>"


@pytest.mark.parametrize(
    "overrides",
    [
        {"sender": "Shop <news@shop.example\r\nBcc: x@y.z>"},
        {"sender": "no-address"},
        {"headers": {"Bcc": "x@example.com"}},
        {"headers": {"From": "x@example.com"}},
        {"headers": {"List-Unsubscribe": "<https://evil.example>"}},
        {"headers": {"X Bad": "v"}},
        {"headers": {"X-Bad:": "v"}},
        {"headers": {"X-Bad\r\nBcc": "v"}},
        {"unsubscribe_url": "https://engine.example/u/a b"},
        {"unsubscribe_url": "https://engine.example/u/<a>"},
        {"unsubscribe_url": ""},
        {"unsubscribe_mailto": "not-an-address"},
        {"message_id_domain": "bad domain"},
        {"subject": "\r\n"},
    ],
)
def test_invalid_input_is_refused(overrides):
    with pytest.raises(BadRequestError):
        make(**overrides)


def test_cr_lf_in_the_unsubscribe_url_cannot_add_a_header():
    # the line break is removed; what is left has a space, so it is refused as a URL
    with pytest.raises(BadRequestError):
        make(unsubscribe_url="https://engine.example/u/tok\r\nBcc: x@example.com")
    with pytest.raises(BadRequestError):
        make(unsubscribe_mailto="unsub@shop.example>\r\nBcc: <x@example.com")


def test_no_line_exceeds_998_characters():
    raw = make(
        subject="x" * 3000,
        text="y" * 5000 + "\n" + "Ж" * 3000,
        html="<p>" + "z" * 5000 + "</p>",
        unsubscribe_url="https://engine.example/u/" + "t" * 850,
        headers={"X-Long": "w" * 2000, "X-Words": "word " * 400},
    )
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = parse_email(raw)
    assert parsed["subject"] == "x" * 3000
    assert parsed["headers"]["X-Long"] == "w" * 2000
    assert parsed["headers"]["X-Words"] == ("word " * 400).strip()
    assert parsed["text"] == "y" * 5000 + "\n" + "Ж" * 3000
    assert parsed["headers"]["List-Unsubscribe"].startswith("<https://engine.example/u/tttt")


def test_crlf_line_endings_everywhere():
    raw = make()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
