"""Finding a document's effective date, and recording where it came from.

Order of trust: an explicit date given by the user, a sidecar file, a date the text labels as effective/published, a
date in the title, the file's declared metadata, a date in the file name, any date on the first page, and the file's
mtime only as a last resort. Declared metadata ranks below labelled dates because generators stamp the conversion time
there.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from retrieval.types import DateSource

_MONTHS = {
    m: i + 1
    for i, names in enumerate(
        ["jan january", "feb february", "mar march", "apr april", "may", "jun june", "jul july", "aug august",
         "sep sept september", "oct october", "nov november", "dec december"]
    )
    for m in names.split()
}
_YMD = r"(?P<y>(?:19|20)\d\d)\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?"
_MDY = r"(?P<mon>[A-Za-z]{3,9})\.?\s+(?P<d2>\d{1,2}),?\s+(?P<y2>(?:19|20)\d\d)"
_DMY = r"(?P<d3>\d{1,2})\s+(?P<mon3>[A-Za-z]{3,9})\.?,?\s+(?P<y3>(?:19|20)\d\d)"
_ANY_DATE = re.compile(f"{_YMD}|{_MDY}|{_DMY}")
_LABEL = re.compile(
    r"(effective(?:\s+date)?|effective\s+from|valid\s+from|published|issued|revised|version\s+date|dated|"
    r"生效日期|生效时间|施行日期|实施日期|发布日期|发布时间|修订日期|自)\s*[:：]?\s*",
    re.IGNORECASE,
)
_COMPACT = re.compile(r"(?<!\d)((?:19|20)\d\d)(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?!\d)")
_YEAR = re.compile(r"(?<![\d.])((?:19|20)\d\d)(?![\d.])")


def _valid(y: int, m: int, d: int) -> str | None:
    try:
        return dt.date(y, m, d).isoformat()
    except ValueError:
        return None


def _from_match(mt: re.Match[str]) -> str | None:
    g = mt.groupdict()
    if g.get("y"):
        return _valid(int(g["y"]), int(g["m"]), int(g["d"]))
    if g.get("y2"):
        mon = _MONTHS.get(g["mon"].lower())
        return _valid(int(g["y2"]), mon, int(g["d2"])) if mon else None
    if g.get("y3"):
        mon = _MONTHS.get(g["mon3"].lower())
        return _valid(int(g["y3"]), mon, int(g["d3"])) if mon else None
    return None


def find_dates(text: str) -> list[str]:
    """Every full calendar date written in the text (ISO strings), in order."""
    return [d for mt in _ANY_DATE.finditer(text) if (d := _from_match(mt))]


def labelled_date(text: str) -> str | None:
    """A date the text introduces as effective/published ("Effective date: 2024-03-01", "生效日期：2024年3月1日")."""
    for lab in _LABEL.finditer(text):
        mt = _ANY_DATE.match(text, lab.end())
        if mt and (d := _from_match(mt)):
            return d
    return None


def date_in_name(name: str) -> str | None:
    """A date in a title or file name: a full date, a compact YYYYMMDD, or a lone year (taken as 1 January)."""
    if ds := find_dates(name):
        return ds[0]
    if mt := _COMPACT.search(name):
        return _valid(int(mt[1]), int(mt[2]), int(mt[3]))
    if mt := _YEAR.search(name):
        return f"{mt[1]}-01-01"
    return None


def parse_user_date(value: str) -> str:
    """An explicit --date: YYYY, YYYY-MM or YYYY-MM-DD. Raises ValueError naming the bad value."""
    v = value.strip()
    for fmt, pad in (("%Y-%m-%d", ""), ("%Y-%m", "-01"), ("%Y", "-01-01")):
        try:
            dt.datetime.strptime(v, fmt)
            return v + pad
        except ValueError:
            continue
    raise ValueError(f"not a date: {value!r} (use YYYY, YYYY-MM or YYYY-MM-DD)")


def resolve_effective_date(
    *,
    explicit: str | None,
    sidecar: str | None,
    title: str,
    first_page: str,
    metadata: dict[str, str],
    path: Path | None,
    mtime: float | None,
) -> tuple[str | None, DateSource]:
    if explicit:
        return parse_user_date(explicit), "explicit"
    if sidecar:
        return parse_user_date(sidecar), "explicit"
    if d := labelled_date(first_page):
        return d, "content"
    if title and (d := date_in_name(title)):
        return d, "title"
    for key in ("effective_date", "date", "published", "created", "modified"):
        if value := metadata.get(key):
            found = find_dates(value)
            if d := (found[0] if found else date_in_name(value)):
                return d, "metadata"
    if path is not None and (d := date_in_name(path.stem)):
        return d, "filename"
    if ds := find_dates(first_page):
        return ds[0], "content"
    if mtime is not None:
        return dt.datetime.fromtimestamp(mtime, tz=dt.UTC).date().isoformat(), "mtime"
    return None, "none"


def family_of(stem: str) -> str:
    """A name shared by dated versions of one document: the stem without dates, years and version tags."""
    s = _ANY_DATE.sub(" ", stem)
    s = _COMPACT.sub(" ", s)
    s = _YEAR.sub(" ", s)
    s = re.sub(r"(?i)\bv(?:er(?:sion)?)?\s*\d+(?:\.\d+)*\b|修订版|新版|旧版", " ", s)
    s = re.sub(r"[\s_\-.()（）\[\]]+", "-", s).strip("-").lower()
    return s or stem.lower()
