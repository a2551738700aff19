"""GDELT 2.1 Global Knowledge Graph (GKG) files in, one row per relevant news record out.

GDELT publishes a GKG file every 15 minutes (``20240102101500.gkg.csv.zip``, one
``.gkg.csv`` inside): UTF-8 text, no header, one document per line, 27 tab-separated
fields in the order of the GKG 2.1 codebook (``GKG_COLUMNS``). Sub-fields use their own
delimiters: ``;`` between entries, ``#`` between the parts of a location, ``,`` inside
V2Tone and the V2 "enhanced" fields, ``#`` between quotations and ``|`` inside one.

What is kept per record (``NEWS_COLUMNS``): the record id, the publication time
(``DATE``, ``YYYYMMDDHHMMSS`` in UTC; GDELT stamps every record of a file with the time of
its 15-minute batch, so items are known to the minute the batch appears, which is why
the sentiment features take an explicit publication lag), the source and its URL
(``SourceCommonName``, ``DocumentIdentifier``), the V1 themes, the country codes of the
locations (FIPS 10-4, as GDELT writes them: Germany is ``GM``, the UK ``UK``, Japan
``JA``), the organisations, the seven V2Tone numbers, and two text fields that the text
scorers can read (the names the document mentions and its quotations). GKG holds no
article text; ``record_texts`` builds the text a lexicon or transformer scorer sees from
these fields, and GDELT's own tone stays the primary signal.

Relevance (``Relevance``): a record is kept when it carries one of the configured themes
(an entry matches the theme or any theme starting with ``entry + "_"``) and, with a
currency pair, mentions a country of either currency (``PAIR_COUNTRIES`` for the majors:
EUR/USD -> the euro-area countries and the United States) or names one of its central
banks or currencies (``CURRENCY_KEYWORDS``) among its organisations or names.

Bad input: a line with the wrong number of fields, a date that does not parse or a
V2Tone that is not seven numbers is *malformed*: it is counted per reason with its file
and line number (``GkgReport``), logged, and never silently dropped. A file that is not
GKG 2.1 at all (no tab on its first line, or no line with the 27 fields: a GKG 1.0 file,
a comma-separated export) is refused with a ``SourceError`` naming the file and what is
wrong. Written by hand: no maintained Python library reads GKG 2.1 files into a table
with line-level error reporting (gdeltPyR downloads; it does not validate local files).
"""

from __future__ import annotations

import functools
import logging
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator

from moola.core.errors import ConfigError, SourceError
from moola.data.sources._common import PathLike, require_file

logger = logging.getLogger(__name__)

__all__ = [
    "CURRENCY_COUNTRIES",
    "CURRENCY_KEYWORDS",
    "DEFAULT_THEMES",
    "GKG_COLUMNS",
    "NEWS_COLUMNS",
    "TONE_COLUMNS",
    "GkgRead",
    "GkgReport",
    "Malformed",
    "Relevance",
    "read_gkg",
    "record_texts",
]

# The 27 fields of a GKG 2.1 line, in file order (GKG 2.1 codebook).
GKG_COLUMNS: tuple[str, ...] = (
    "GKGRECORDID",
    "DATE",
    "SourceCollectionIdentifier",
    "SourceCommonName",
    "DocumentIdentifier",
    "Counts",
    "V2Counts",
    "Themes",
    "V2Themes",
    "Locations",
    "V2Locations",
    "Persons",
    "V2Persons",
    "Organizations",
    "V2Organizations",
    "V2Tone",
    "Dates",
    "GCAM",
    "SharingImage",
    "RelatedImages",
    "SocialImageEmbeds",
    "SocialVideoEmbeds",
    "Quotations",
    "AllNames",
    "Amounts",
    "TranslationInfo",
    "Extras",
)
_COL = {name: i for i, name in enumerate(GKG_COLUMNS)}

# V2Tone's seven comma-separated numbers, in order.
TONE_COLUMNS: tuple[str, ...] = (
    "tone",
    "positive",
    "negative",
    "polarity",
    "activity_density",
    "self_group_density",
    "word_count",
)

# Columns of the news table ``read_gkg`` returns (and the registry stores).
NEWS_COLUMNS: tuple[str, ...] = (
    "record_id",
    "published",
    "source",
    "url",
    "themes",
    "countries",
    "organizations",
    *TONE_COLUMNS,
    "names",
    "quotations",
    "file",
    "line",
)

# Themes of monetary policy, rates, prices, currencies and markets (GKG theme names).
DEFAULT_THEMES: tuple[str, ...] = (
    "ECON_CENTRALBANK",
    "ECON_INTEREST_RATES",
    "ECON_INFLATION",
    "ECON_CURRENCY_EXCHANGE_RATE",
    "ECON_CURRENCY_RESERVES",
    "ECON_DEBT",
    "ECON_STOCKMARKET",
    "ECON_TRADE",
    "ECON_UNEMPLOYMENT",
    "ECON_TAXATION",
)

_EURO_AREA = (
    "AU",  # Austria (FIPS; ISO's AU is Australia, here AS)
    "BE",
    "CY",
    "EI",  # Ireland
    "EN",  # Estonia
    "FI",
    "FR",
    "GM",  # Germany
    "GR",
    "HR",  # Croatia
    "IT",
    "LG",  # Latvia
    "LH",  # Lithuania
    "LO",  # Slovakia
    "LU",
    "MT",
    "NL",
    "PO",  # Portugal
    "SI",  # Slovenia
    "SP",  # Spain
)
# FIPS 10-4 country codes (GDELT's) of each major currency.
CURRENCY_COUNTRIES: dict[str, tuple[str, ...]] = {
    "EUR": _EURO_AREA,
    "USD": ("US",),
    "GBP": ("UK",),
    "JPY": ("JA",),
    "CHF": ("SZ",),
    "AUD": ("AS",),
    "CAD": ("CA",),
    "NZD": ("NZ",),
    "CNY": ("CH",),
}
# Lower-case words that name a currency or its central bank in organisations or names.
CURRENCY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "EUR": ("euro", "european central bank", "ecb", "eurozone", "euro zone"),
    "USD": ("dollar", "federal reserve", "federal open market committee", "fomc"),
    "GBP": ("sterling", "pound", "bank of england"),
    "JPY": ("yen", "bank of japan"),
    "CHF": ("swiss franc", "swiss national bank"),
    "AUD": ("australian dollar", "reserve bank of australia"),
    "CAD": ("canadian dollar", "bank of canada"),
    "NZD": ("new zealand dollar", "reserve bank of new zealand"),
    "CNY": ("yuan", "renminbi", "people's bank of china"),
}

_DATE = re.compile(r"^\d{14}$")
MAX_EXAMPLES = 5  # malformed lines quoted per reason in a report


class Relevance(BaseModel):
    """Which GKG records count as FX/market news (see the module docstring).

    ``themes``: theme names (or prefixes); ``()`` keeps every record. ``pair``: a currency
    pair such as ``"EURUSD"`` or ``"EUR/USD"``; its two currencies' countries and keywords
    (``CURRENCY_COUNTRIES``, ``CURRENCY_KEYWORDS``) are required on top of a theme.
    ``countries`` / ``keywords`` replace the built-in tables (e.g. for a pair they lack).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    themes: tuple[str, ...] = DEFAULT_THEMES
    pair: str | None = None
    countries: tuple[str, ...] | None = None
    keywords: tuple[str, ...] | None = None

    @field_validator("themes")
    @classmethod
    def _upper_themes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(theme).strip().upper() for theme in value if str(theme).strip())

    @field_validator("pair")
    @classmethod
    def _known_pair(cls, value: str | None) -> str | None:
        if value is None:
            return None
        pair = re.sub(r"[^A-Za-z]", "", value).upper()
        if len(pair) != 6:
            raise ValueError(f"{value!r} is not a currency pair like 'EURUSD' or 'EUR/USD'")
        return pair

    def currencies(self) -> tuple[str, ...]:
        """The pair's two currencies (empty without a pair)."""
        return () if self.pair is None else (self.pair[:3], self.pair[3:])

    def country_codes(self) -> frozenset[str]:
        """FIPS codes that make a record about the pair (empty: no country test)."""
        if self.countries is not None:
            return frozenset(code.upper() for code in self.countries)
        return frozenset(code for cur in self.currencies() for code in _table(cur, "countries"))

    def keyword_list(self) -> tuple[str, ...]:
        """Lower-case keywords that make a record about the pair."""
        if self.keywords is not None:
            return tuple(word.lower() for word in self.keywords)
        return tuple(word for cur in self.currencies() for word in _table(cur, "keywords"))

    def check(self) -> None:
        """``ConfigError`` when a pair's currency is in neither table and nothing replaces it."""
        for currency in self.currencies():
            if self.countries is None:
                _table(currency, "countries")
            if self.keywords is None:
                _table(currency, "keywords")


def _table(currency: str, which: str) -> tuple[str, ...]:
    table = CURRENCY_COUNTRIES if which == "countries" else CURRENCY_KEYWORDS
    if currency not in table:
        raise ConfigError(
            f"No built-in {which} for currency {currency!r} (known: {', '.join(table)}). "
            f"Pass {which}=... to Relevance with the ones to match.",
            param="pair",
        )
    return table[currency]


@dataclass(frozen=True)
class Malformed:
    """One malformed line: where it is and why it was not read."""

    file: str
    line: int
    reason: str


@dataclass
class GkgReport:
    """What reading GKG files found: lines read, records kept, filtered out, malformed.

    ``malformed`` counts lines per reason; ``examples`` keeps up to ``MAX_EXAMPLES`` of
    each reason with file and line number, enough to find and inspect them.
    """

    files: list[str] = field(default_factory=list)
    lines: int = 0
    kept: int = 0
    irrelevant: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    examples: list[Malformed] = field(default_factory=list)

    @property
    def n_malformed(self) -> int:
        return sum(self.malformed.values())

    def add(self, file: str, line: int, reason: str) -> None:
        shown = sum(1 for e in self.examples if e.reason == reason)
        self.malformed[reason] = self.malformed.get(reason, 0) + 1
        if shown < MAX_EXAMPLES:
            self.examples.append(Malformed(file, line, reason))

    def merge(self, other: GkgReport) -> None:
        self.files += other.files
        self.lines += other.lines
        self.kept += other.kept
        self.irrelevant += other.irrelevant
        for reason, count in other.malformed.items():
            self.malformed[reason] = self.malformed.get(reason, 0) + count
        for example in other.examples:
            if sum(1 for e in self.examples if e.reason == example.reason) < MAX_EXAMPLES:
                self.examples.append(example)

    def counts(self) -> str:
        """Files, lines, and records kept, not relevant and malformed, in one phrase."""
        return (
            f"{len(self.files)} file(s), {self.lines:,} line(s): {self.kept:,} relevant "
            f"record(s) kept, {self.irrelevant:,} not relevant, {self.n_malformed:,} malformed"
        )

    def malformed_lines(self) -> str:
        """The malformed lines by reason, each with up to ``MAX_EXAMPLES`` file:line."""
        parts = []
        for reason, count in sorted(self.malformed.items()):
            where = ", ".join(
                f"{e.file} line {e.line}" for e in self.examples if e.reason == reason
            )
            parts.append(f"{count} x {reason} (e.g. {where})")
        return "; ".join(parts)

    def summary(self) -> str:
        """One paragraph: ``counts()`` and, when there are any, ``malformed_lines()``."""
        text = self.counts()
        return text + (f": {self.malformed_lines()}." if self.n_malformed else ".")

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": list(self.files),
            "lines": self.lines,
            "kept": self.kept,
            "irrelevant": self.irrelevant,
            "malformed": dict(sorted(self.malformed.items())),
            "malformed_examples": [
                {"file": e.file, "line": e.line, "reason": e.reason} for e in self.examples
            ],
        }


@dataclass(frozen=True)
class GkgRead:
    """The relevant records of one or more GKG files (``NEWS_COLUMNS``) and the report."""

    records: pd.DataFrame
    report: GkgReport


def read_gkg(
    paths: PathLike | Sequence[PathLike], *, relevance: Relevance | None = None
) -> GkgRead:
    """Read GKG 2.1 files (``.gkg.csv.zip`` or unzipped ``.gkg.csv``) into a news table.

    ``relevance`` (default ``Relevance()``: the default themes, no pair) picks the records
    to keep; ``Relevance(themes=())`` keeps all. Records come sorted by publication time
    then record id; a record id seen twice is kept once and counted as malformed
    ("duplicate record id"). Malformed lines are counted and logged (see the module
    docstring). Raises ``SourceError`` naming the file for a missing, unreadable or
    not-GKG-2.1 file, and ``ConfigError`` for a pair with no built-in table.
    """
    relevance = relevance or Relevance()
    relevance.check()
    files = [paths] if isinstance(paths, str | Path) else list(paths)
    if not files:
        raise SourceError("No GKG files given: pass one or more .gkg.csv.zip files.")
    report = GkgReport()
    rows: list[dict[str, Any]] = []
    for path in files:
        file_rows, file_report = _read_one(require_file(path), relevance)
        rows += file_rows
        report.merge(file_report)
    records = _table_of(rows)
    duplicated = records["record_id"].duplicated(keep="first").to_numpy()
    for position in np.flatnonzero(duplicated):
        report.add(
            str(records["file"].iloc[position]),
            int(records["line"].iloc[position]),
            "duplicate record id",
        )
    report.kept -= int(duplicated.sum())
    records = records[~duplicated]
    records = records.sort_values(["published", "record_id"], kind="stable").reset_index(drop=True)
    if report.n_malformed:
        logger.warning("GKG: %s", report.summary())
    return GkgRead(records, report)


def record_texts(records: pd.DataFrame) -> list[str]:
    """The text a lexicon or transformer scorer reads for each news record.

    GKG carries no article text, only what GDELT extracted from it. Each record's text is
    its quotations when it has any (the document's own words), otherwise its themes made
    readable (``ECON_INTEREST_RATES`` -> ``econ interest rates``), organisations and names.
    A scorer reading this sees far less than the article: tone, computed by GDELT on the
    full text, is the primary signal and these scores a weaker complement.
    """
    texts = []
    for quotes, themes, orgs, names in zip(
        records["quotations"],
        records["themes"],
        records["organizations"],
        records["names"],
        strict=True,
    ):
        if quotes:
            texts.append(" ".join(quotes.split(";")))
            continue
        readable = ", ".join(t.lower().replace("_", " ") for t in themes.split(";") if t)
        parts = [readable, ", ".join(o for o in orgs.split(";") if o)]
        parts.append(", ".join(n for n in names.split(";") if n))
        texts.append(". ".join(p for p in parts if p))
    return texts


# --------------------------------------------------------------------------- reading


def _read_one(file: Path, relevance: Relevance) -> tuple[list[dict[str, Any]], GkgReport]:
    text, shown = _read_text(file)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    _check_layout(lines, shown)
    report = GkgReport(files=[shown])
    themes = relevance.themes
    countries = relevance.country_codes()
    keywords = relevance.keyword_list()
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if number == 1 and line.startswith("GKGRECORDID\t"):
            continue  # a header some tools add; GDELT's own files have none
        if not line.strip():
            continue
        report.lines += 1
        fields = line.split("\t")
        if len(fields) != len(GKG_COLUMNS):
            report.add(shown, number, f"{len(fields)} fields instead of {len(GKG_COLUMNS)}")
            continue
        published = _date(fields[_COL["DATE"]])
        if published is None:
            report.add(shown, number, "bad DATE (not YYYYMMDDHHMMSS)")
            continue
        tone = _tone(fields[_COL["V2Tone"]])
        if tone is None:
            report.add(shown, number, "bad V2Tone (not 7 numbers)")
            continue
        if themes and not _any_theme(fields, themes):  # most records stop here, cheaply
            report.irrelevant += 1
            continue
        row = _record(fields, published, tone, shown, number)
        if not _relevant(row, themes, countries, keywords):
            report.irrelevant += 1
            continue
        rows.append(row)
        report.kept += 1
    return rows, report


def _read_text(file: Path) -> tuple[str, str]:
    """The file's text (unzipped when needed) and the name errors and reports use."""
    try:
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                members = [n for n in archive.namelist() if not n.endswith("/")]
                if len(members) != 1:
                    raise SourceError(
                        f"{file}: a GKG zip holds one .gkg.csv file; this one holds "
                        f"{members or 'nothing'}. Pass the files GDELT publishes "
                        "(YYYYMMDDHHMMSS.gkg.csv.zip) or unzip and pass the .gkg.csv."
                    )
                data = archive.read(members[0])
                shown = f"{file.name}!{members[0]}"
        else:
            data = file.read_bytes()
            shown = file.name
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        raise SourceError(
            f"{file}: the zip archive cannot be read ({error}); it is probably truncated. "
            "Download it again."
        ) from None
    if not data.strip():
        raise SourceError(f"{file}: the file is empty. Download it again.")
    if b"\x00" in data[:4096]:
        raise SourceError(f"{file}: a binary file, not a GKG 2.1 text file.")
    # GDELT text is UTF-8; a stray invalid byte in one document must not refuse a file.
    return data.decode("utf-8-sig", errors="replace"), shown


def _check_layout(lines: list[str], shown: str) -> None:
    """Refuse a file that is not tab-separated GKG 2.1 at all, saying what it looks like."""
    first = next((line for line in lines if line.strip()), "")
    if "\t" not in first:
        guess = max((",", ";", "|"), key=first.count)
        hint = (
            f" It looks {guess!r}-separated ({first.count(guess)} on the first line)."
            if first.count(guess)
            else ""
        )
        raise SourceError(
            f"{shown}: the first line has no tab; GKG 2.1 files are tab-separated with "
            f"{len(GKG_COLUMNS)} fields per line.{hint} Pass the .gkg.csv(.zip) files "
            "GDELT publishes, unmodified (a spreadsheet export changes the delimiter)."
        )
    counts = [line.count("\t") + 1 for line in lines if line.strip()]
    if len(GKG_COLUMNS) not in counts:
        common = max(set(counts), key=counts.count)
        missing = ", ".join(GKG_COLUMNS[common:]) if common < len(GKG_COLUMNS) else ""
        detail = f" (missing {missing})" if missing else ""
        raise SourceError(
            f"{shown}: no line has the {len(GKG_COLUMNS)} tab-separated fields of GKG 2.1; "
            f"most lines have {common}{detail}. This is not a GKG 2.1 file (GKG 1.0 and the "
            "events/mentions exports have other columns). Pass YYYYMMDDHHMMSS.gkg.csv.zip "
            "files from http://data.gdeltproject.org/gdeltv2/."
        )


@functools.lru_cache(maxsize=1024)  # every record of a 15-minute file has the same DATE
def _date(text: str) -> datetime | None:
    text = text.strip()
    if not _DATE.match(text):
        return None
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _tone(text: str) -> tuple[float, ...] | None:
    parts = text.strip().split(",")
    if len(parts) != len(TONE_COLUMNS):
        return None
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        return None
    return values if all(np.isfinite(values)) else None


def _entries(text: str) -> list[str]:
    return [entry.strip() for entry in text.split(";") if entry.strip()]


def _unique(values: Iterator[str] | list[str]) -> str:
    return ";".join(dict.fromkeys(v for v in values if v))


def _countries(v1: str, v2: str) -> str:
    """Country codes of V1Locations and V2Locations (third ``#`` part of each entry)."""
    codes = []
    for entry in _entries(v1) + _entries(v2):
        parts = entry.split("#")
        if len(parts) > 2:
            codes.append(parts[2].strip().upper())
    return _unique(codes)


def _names(text: str) -> str:
    """``Name,offset;...`` (AllNames, V2 enhanced fields) -> ``Name;...``."""
    return _unique(entry.rsplit(",", 1)[0].strip() for entry in _entries(text))


def _quotations(text: str) -> str:
    """``offset|length|verb|quote#...`` (V2.1 Quotations) -> ``quote;...``."""
    quotes = []
    for block in text.split("#"):
        parts = block.split("|")
        if len(parts) >= 4 and parts[3].strip():
            quotes.append(parts[3].strip().replace(";", ","))
    return ";".join(quotes)


def _record(
    fields: list[str], published: datetime, tone: tuple[float, ...], file: str, line: int
) -> dict[str, Any]:
    themes = _entries(fields[_COL["Themes"]]) or [
        entry.rsplit(",", 1)[0] for entry in _entries(fields[_COL["V2Themes"]])
    ]
    orgs = _entries(fields[_COL["Organizations"]]) or _names(fields[_COL["V2Organizations"]]).split(
        ";"
    )
    return {
        "record_id": fields[_COL["GKGRECORDID"]].strip(),
        "published": published,
        "source": fields[_COL["SourceCommonName"]].strip(),
        "url": fields[_COL["DocumentIdentifier"]].strip(),
        "themes": _unique(t.upper() for t in themes),
        "countries": _countries(fields[_COL["Locations"]], fields[_COL["V2Locations"]]),
        "organizations": _unique(o.lower() for o in orgs),
        **dict(zip(TONE_COLUMNS, tone, strict=True)),
        "names": _names(fields[_COL["AllNames"]]),
        "quotations": _quotations(fields[_COL["Quotations"]]),
        "file": file,
        "line": line,
    }


def _any_theme(fields: list[str], themes: tuple[str, ...]) -> bool:
    """Whether the raw Themes (or V2Themes) field may hold one of ``themes``: a substring
    test, so never a false "no"; ``_relevant`` then decides exactly."""
    text = fields[_COL["Themes"]] or fields[_COL["V2Themes"]]
    upper = text.upper()
    return any(theme in upper for theme in themes)


def _relevant(
    row: dict[str, Any],
    themes: tuple[str, ...],
    countries: frozenset[str],
    keywords: tuple[str, ...],
) -> bool:
    if themes:
        found = row["themes"].split(";") if row["themes"] else []
        if not any(t == w or t.startswith(w + "_") for t in found for w in themes):
            return False
    if not countries and not keywords:
        return True
    if countries and countries.intersection(row["countries"].split(";")):
        return True
    haystack = f";{row['organizations']};{row['names'].lower()};"
    return any(re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", haystack) for word in keywords)


def _table_of(rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        frame = pd.DataFrame({column: [] for column in NEWS_COLUMNS})
    else:
        frame = pd.DataFrame(rows, columns=list(NEWS_COLUMNS))
    frame["published"] = pd.to_datetime(frame["published"], utc=True).astype("datetime64[ns, UTC]")
    for column in TONE_COLUMNS:
        frame[column] = frame[column].astype(np.float64)
    frame["line"] = frame["line"].astype(np.int64)
    text = ("record_id", "source", "url", "themes", "countries", "organizations")
    for column in (*text, "names", "quotations", "file"):
        frame[column] = frame[column].astype(str)
    return frame
