from pathlib import Path

import pytest

from ingest.dates import date_in_name, family_of, find_dates, labelled_date, parse_user_date, resolve_effective_date


def test_find_dates_formats() -> None:
    text = "Issued 2024-03-01, revised 2024/4/2, 2023年1月15日 and March 5, 2022 and 7 Feb 2021; not 2024-13-40."
    assert find_dates(text) == ["2024-03-01", "2024-04-02", "2023-01-15", "2022-03-05", "2021-02-07"]


def test_labelled_date_english_and_chinese() -> None:
    assert labelled_date("Warranty policy\nEffective date: 2024-03-01\nText 2020-01-01") == "2024-03-01"
    assert labelled_date("保修政策\n生效日期：2023年1月1日") == "2023-01-01"
    assert labelled_date("A date 2020-01-01 without a label") is None


def test_date_in_name() -> None:
    assert date_in_name("warranty-policy-2023") == "2023-01-01"
    assert date_in_name("report_20240315_final") == "2024-03-15"
    assert date_in_name("manual v2") is None


def test_parse_user_date_rejects_garbage_with_value() -> None:
    assert parse_user_date("2024") == "2024-01-01"
    assert parse_user_date("2024-05") == "2024-05-01"
    with pytest.raises(ValueError, match="'next tuesday'"):
        parse_user_date("next tuesday")


def _resolve(**kw):  # type: ignore[no-untyped-def]
    base = dict(explicit=None, sidecar=None, title="", first_page="", metadata={}, path=None, mtime=None)
    base.update(kw)
    return resolve_effective_date(**base)


def test_resolution_order() -> None:
    page = "Effective date: 2024-03-01"
    assert _resolve(explicit="2020", first_page=page) == ("2020-01-01", "explicit")
    assert _resolve(first_page=page, metadata={"created": "2019-01-01T00:00:00"}) == ("2024-03-01", "content")
    assert _resolve(title="Policy 2022", metadata={"created": "2019-05-05"}) == ("2022-01-01", "title")
    assert _resolve(metadata={"created": "2019-05-05T10:00:00"}, path=Path("x-2018.md")) == ("2019-05-05", "metadata")
    assert _resolve(path=Path("x-2018.md"), mtime=0.0) == ("2018-01-01", "filename")
    assert _resolve(mtime=86400.0 * 365) == ("1971-01-01", "mtime")
    assert _resolve() == (None, "none")


def test_family_strips_dates_and_versions() -> None:
    assert family_of("warranty-policy-2023") == family_of("Warranty_Policy_2024-03-01") == "warranty-policy"
    assert family_of("保修政策-2024") == "保修政策"
    assert family_of("manual v2.1") == "manual"
