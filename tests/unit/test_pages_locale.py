"""The language of the link pages (issue 16 item 7): the texts of every locale, and how one is chosen."""

from __future__ import annotations

import pytest
from retention.surveys import pages


def test_every_locale_has_every_text() -> None:
    keys = {loc: set(texts) for loc, texts in pages.TEXTS.items()}
    assert set(keys) == set(pages.LOCALES)
    assert keys["ru"] == keys["en"]
    assert all(v.strip() for texts in pages.TEXTS.values() for v in texts.values())


@pytest.mark.parametrize(("header", "expected"), [
    ("en-US,en;q=0.9,ru;q=0.8", "en"),
    ("ru-RU, en;q=0.5", "ru"),
    ("de-DE, en;q=0.3, ru;q=0.7", "ru"),  # by q-value, not by position
    ("de, fr", None),
    ("en;q=0, ru;q=0.1", "ru"),  # q=0 means "not this one"
    ("en;q=abc", None),
    ("", None),
    (None, None),
])
def test_accept_language(header: str | None, expected: str | None) -> None:
    assert pages.accepted_locale(header) == expected


def test_the_choice_order() -> None:
    assert pages.choose_locale(asked="en", profile="ru", accept_language="ru", default="ru") == "en"
    assert pages.choose_locale(asked="xx", profile="en_GB", accept_language="ru", default="ru") == "en"
    assert pages.choose_locale(profile=None, accept_language="en", default="ru") == "en"
    assert pages.choose_locale(default="en") == "en"
    assert pages.choose_locale(default="de") == "ru"


def test_a_page_escapes_what_it_is_given() -> None:
    body = pages.Pages("en", shop="<b>Shop</b>").survey_confirm('<script>alert(1)</script>').body
    assert "<script>" not in body and "&lt;script&gt;" in body
