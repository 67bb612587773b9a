"""SMS destinations by country (issue 15, item 8): premium-rate and far-away numbers are how SMS pumping
bills a shop, so SMS goes only to allow-listed countries (default: the shop's own)."""

from retention.core.config import Settings
from retention.messaging.sms import country_of, sms_country_allowed


def test_country_of_calling_codes() -> None:
    assert country_of("+79161234567") == "RU"
    assert country_of("+77011234567") == "KZ"
    assert country_of("+375291234567") == "BY"
    assert country_of("+12025550123") == "US"
    assert country_of("+88234567890") is None  # international networks: never allowed


def test_default_allows_only_the_shops_country() -> None:
    settings = Settings()
    assert settings.sms_allowed() == {"RU"}
    assert sms_country_allowed("+79161234567", settings.sms_allowed())
    assert not sms_country_allowed("+77011234567", settings.sms_allowed())
    assert not sms_country_allowed("+4420712345678", settings.sms_allowed())
    wider = Settings(sms_countries=["ru", "KZ", "CA"])
    assert sms_country_allowed("+77011234567", wider.sms_allowed())
    assert sms_country_allowed("+14165550123", wider.sms_allowed())  # +1 is shared by US and CA
    assert Settings(shop_country="DE").sms_allowed() == {"DE"}
