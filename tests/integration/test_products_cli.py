"""`retention catalog import` (CSV, JSON lines, YML, Google Merchant; bad rows by line; batches; resume) and
`retention coupons upload|stats`, through the real admin handler in process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from retention.admin.people import create_admin_token
from retention.products.catalog import Catalog

from tests.integration.test_cli import TOKEN, Cli

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


@pytest.fixture
def cli(stack: Any) -> Cli:
    create_admin_token(stack.deps.config, "t", token=TOKEN)
    return Cli(stack)


def _catalog(cli: Cli) -> Catalog:
    return Catalog(cli.stack.deps.dynamodb, cli.stack.deps.env.products_table)


def test_csv_import_reports_bad_rows_by_line_and_imports_the_rest(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "catalog.csv"
    f.write_text("product_id,name,url,price,category,in_stock,accessories\n"
                 "s1,Trail shoes,https://shop.test/p/s1,5000,Shoes,true,a1;a2\n"
                 ",No id,https://shop.test/p/x,1,Shoes,true,\n"
                 "s2,City sneakers,https://shop.test/p/s2,abc,Shoes,yes,\n"
                 "s3,Gym shoes,https://shop.test/p/s3,\"4 500,50\",Shoes,out of stock,\n", encoding="utf-8")
    code, out, err = cli("catalog", "import", str(f), "--batch", "1")
    assert code == 1
    assert "2 products imported, 2 bad rows" in out
    assert f"{f}:3: product_id" in err and f"{f}:4: price" in err
    cat = _catalog(cli)
    assert cat.get("s1")["accessories"] == ["a1", "a2"]
    assert cat.get("s3")["price"] == 4500.5 and cat.get("s3")["in_stock"] is False
    assert not Path(str(f) + ".progress").exists()


def test_resume_continues_after_the_last_accepted_batch(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "catalog.jsonl"
    f.write_text("\n".join(json.dumps({"product_id": f"p{i}", "name": f"P{i}", "price": i, "category": "C"})
                           for i in range(1, 7)) + "\n", encoding="utf-8")
    Path(str(f) + ".progress").write_text("4")
    code, out, _ = cli("catalog", "import", str(f), "--resume")
    assert code == 0 and "2 products imported" in out
    cat = _catalog(cli)
    assert cat.get("p4") is None and cat.get("p5") is not None and cat.get("p6") is not None


def test_catalog_delete(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "catalog.jsonl"
    f.write_text("\n".join(json.dumps({"product_id": pid, "name": pid, "price": 10, "category": "C"})
                           for pid in ("p1", "shop/42")) + "\n", encoding="utf-8")
    assert cli("catalog", "import", str(f))[0] == 0
    code, out, _ = cli("catalog", "delete", "shop/42")
    assert code == 0 and "product shop/42 deleted" in out
    assert _catalog(cli).get("shop/42") is None and _catalog(cli).get("p1") is not None
    code, _, err = cli("catalog", "delete", "shop/42")
    assert code != 0 and "no product 'shop/42'" in err


def test_every_format_carries_the_replenishment_days(cli: Cli, tmp_path: Path) -> None:
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("product_id,name,category,consumable_days\nc1,Food,Pet,30\nc2,Toy,Pet,\nc3,Bad,Pet,soon\n",
                        encoding="utf-8")
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(json.dumps({"product_id": "j1", "consumable_days": 45}) + "\n", encoding="utf-8")
    yml = tmp_path / "c.yml"
    yml.write_text("""<?xml version="1.0" encoding="UTF-8"?>
<yml_catalog><shop><categories><category id="1">Корма</category></categories><offers>
<offer id="y1" available="true"><name>Корм</name><price>900</price><categoryId>1</categoryId>
<param name="Вес" unit="кг">2</param><param name="consumable_days">21</param></offer>
<offer id="y2" available="true"><name>Миска</name><price>300</price><categoryId>1</categoryId>
<param name="Цвет">синий</param></offer>
</offers></shop></yml_catalog>
""", encoding="utf-8")
    rss = tmp_path / "c.rss"
    rss.write_text("""<?xml version="1.0"?>
<rss xmlns:g="http://base.google.com/ns/1.0" version="2.0"><channel>
<item><g:id>g1</g:id><g:title>Filter</g:title><g:price>500.00 RUB</g:price>
<g:custom_label_0>summer</g:custom_label_0><g:custom_label_1>consumable_days:90</g:custom_label_1></item>
</channel></rss>
""", encoding="utf-8")
    code, _, err = cli("catalog", "import", str(csv_file))
    assert code == 1 and f"{csv_file}:4: consumable_days" in err
    for f in (jsonl, yml, rss):
        assert cli("catalog", "import", str(f))[0] == 0
    cat = _catalog(cli)
    days = {pid: (cat.get(pid) or {}).get("consumable_days") for pid in ("c1", "c2", "j1", "y1", "y2", "g1")}
    assert days == {"c1": 30, "c2": None, "j1": 45, "y1": 21, "y2": None, "g1": 90}
    assert cat.get("c1")["consumable"] is True and cat.get("c2")["consumable"] is False


def test_yandex_market_yml_feed(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "market.yml"
    f.write_text("""<?xml version="1.0" encoding="UTF-8"?>
<yml_catalog date="2026-12-01 10:00">
  <shop>
    <name>Ромашка</name>
    <categories>
      <category id="1">Обувь</category>
      <category id="2" parentId="1">Кроссовки</category>
    </categories>
    <offers>
      <offer id="y1" available="true">
        <url>https://shop.test/p/y1</url>
        <price>4990</price>
        <currencyId>RUR</currencyId>
        <categoryId>2</categoryId>
        <picture>https://shop.test/i/y1.jpg</picture>
        <name>Кроссовки беговые</name>
        <vendor>Stride</vendor>
      </offer>
      <offer id="y2" available="false">
        <url>https://shop.test/p/y2</url>
        <price>минус</price>
        <categoryId>2</categoryId>
        <name>Кеды</name>
      </offer>
      <offer id="y3" available="false">
        <url>https://shop.test/p/y3</url>
        <price>3990</price>
        <categoryId>2</categoryId>
        <vendor>Stride</vendor><model>Gym</model>
      </offer>
    </offers>
  </shop>
</yml_catalog>
""", encoding="utf-8")
    code, out, err = cli("catalog", "import", str(f))
    assert code == 1 and "2 products imported, 1 bad rows" in out
    assert f"{f}:19: price" in err
    y1 = _catalog(cli).get("y1")
    assert (y1["name"], y1["category"], y1["price"], y1["brand"], y1["in_stock"]) == (
        "Кроссовки беговые", "Кроссовки", 4990, "Stride", True)
    y3 = _catalog(cli).get("y3")
    assert y3["name"] == "Stride Gym" and y3["in_stock"] is False


def test_google_merchant_rss_feed(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "merchant.xml"
    f.write_text("""<?xml version="1.0"?>
<rss xmlns:g="http://base.google.com/ns/1.0" version="2.0">
<channel>
<title>Shop</title>
<item>
<g:id>g1</g:id>
<g:title>Trail shoes</g:title>
<g:link>https://shop.test/p/g1</g:link>
<g:image_link>https://shop.test/i/g1.jpg</g:image_link>
<g:price>5000.00 RUB</g:price>
<g:availability>in_stock</g:availability>
<g:product_type>Apparel &gt; Shoes</g:product_type>
<g:brand>Stride</g:brand>
</item>
<item>
<g:title>No id</g:title>
</item>
</channel>
</rss>
""", encoding="utf-8")
    code, out, err = cli("catalog", "import", str(f))
    assert code == 1 and "1 products imported, 1 bad rows" in out
    assert f"{f}:15: an item without g:id" in err
    g1 = _catalog(cli).get("g1")
    assert (g1["price"], g1["currency"], g1["category"], g1["in_stock"]) == (5000, "RUB", "Shoes", True)


def test_coupons_upload_names_duplicates_and_stats(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "codes.csv"
    f.write_text("code\nW-1\nW-2\nW-2\n", encoding="utf-8")
    code, out, err = cli("coupons", "upload", "welcome", str(f), "--discount", "10%", "--valid-days", "7")
    assert code == 1 and "2 codes added, 1 rejected" in out
    assert "rejected W-2: duplicate in the upload" in err
    code, out, err = cli("coupons", "upload", "cart", str(f), "--discount", "500 RUB", "--valid-days", "3")
    assert code == 1 and "rejected W-1: already in pool 'welcome'" in err
    data = cli.json("coupons", "stats", "welcome")
    assert (data["issued"], data["redeemed"], data["left"], data["discount"]) == (0, 0, 2, "10%")
    assert data["fallback"] == {"issued": 0, "redeemed": 0, "revenue": 0.0} and data["window"]["days"] == 30
    assert cli.json("coupons", "stats", "welcome", "--days", "7")["window"]["days"] == 7
    code, out, _ = cli("coupons", "stats")
    assert code == 0 and "welcome" in out and "reactivation" in out
    assert "fallback issued" in out and "30d redeemed" in out


def test_report_shows_the_coupon_pools(cli: Cli, tmp_path: Path) -> None:
    from retention.products.coupons import Coupons
    Coupons(cli.stack.deps.dynamodb, cli.stack.deps.env.products_table).upload("cart", ["C-1", "C-2"], "5%", 7)
    code, out, _ = cli("report", "--out", str(tmp_path))
    assert code == 0 and "coupon pools" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("cart "))
    assert line.split() == ["cart", "5%", "0", "0", "0.0", "2"]
    assert "Coupon pools" in (tmp_path / "report.html").read_text()
