"""Read WVS-7 respondent files into one table of canonical answer codes.

Two layouts are read:
- per-country labelled exports (`*.xlsx` or `*.csv`, header `CODE: label`, cells hold answer labels);
- the official cross-national CSV (one column per variable code, numeric codes, negative codes for missing).

Every answer becomes its codebook code; missing answers (Don't know, No answer, Not asked, negative codes)
become <NA>. A label that matches no option is an error naming the file, column and value, unless
`collect_unknown=True`, which gathers them all for one report.
"""

from __future__ import annotations

import csv
import hashlib
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from python_calamine import CalamineError

from valuesim.data.aliases import ALIASES, GLOBAL_ALIASES, MISSING_LABELS, MISSING_PATTERN
from valuesim.data.catalog import COUNTRY_SPECIFIC, NUMERIC_ITEMS, Catalog, Question
from valuesim.errors import ValueSimError

ID_COLUMNS = {"country": "B_COUNTRY_ALPHA", "interview": "D_INTERVIEW", "urban": "H_URBRURAL"}
REQUIRED = ["B_COUNTRY_ALPHA", "D_INTERVIEW", "Q1"]


class WVSFormatError(ValueSimError):
    """A file that is not a readable WVS-7 respondent file."""


@dataclass
class Unmapped:
    file: str
    column: str
    value: str
    count: int


@dataclass
class IngestReport:
    files: list[str] = field(default_factory=list)
    respondents: int = 0
    cells: int = 0  # non-missing answer cells seen
    mapped: int = 0
    missing: int = 0
    unmapped: list[Unmapped] = field(default_factory=list)
    looks_like: dict[str, str] = field(default_factory=dict)  # "file|column" -> question whose options it holds

    @property
    def mapped_share(self) -> float:
        """Share of non-missing answer cells mapped to an option code."""
        answered = self.cells - self.missing
        return self.mapped / answered if answered else 1.0


def normalize(label: str) -> str:
    """Case, quote, punctuation and spacing variants of one label compare equal."""
    s = str(label).strip().lower()
    s = re.sub(r"[´’‘`]", "'", s)
    s = s.replace("&", " and ")
    s = re.sub(r"[\s_]+", " ", s)
    return s.rstrip(" .;:").strip()


class LabelMapper:
    """Label -> code for one question, from the codebook plus the reviewed alias table."""

    def __init__(self, code: str, choices: dict[str, str]):
        self.code = code
        self.lookup: dict[str, int | None] = {}
        for c, lab in choices.items():
            self.lookup[normalize(lab)] = int(c) if int(c) >= 0 else None
            # "25.- 7 or more children" style labels also appear without the prefix
            self.lookup[normalize(re.sub(r"^\d+\.-\s*", "", lab))] = int(c) if int(c) >= 0 else None
            # per-country options ("USA: Democratic Party") also appear without the prefix in some releases
        for variant, target in {**GLOBAL_ALIASES, **ALIASES.get(code, {})}.items():
            key = normalize(target) if isinstance(target, str) else None
            value = self.lookup.get(key) if key is not None else target
            if key is not None and key not in self.lookup:
                continue  # alias for a label this question does not have
            self.lookup.setdefault(normalize(variant), value)
        self.numeric = code in NUMERIC_ITEMS
        # 10-point scales label the middle points with digits ("2".."9") and the ends with words; a release may
        # give an end point as its digit too ("10", "1 None at all"), which is then the code itself
        codes = {int(c): str(lab).strip() for c, lab in choices.items() if int(c) >= 0}
        self.scale_points = set(codes) if any(lab == str(c) for c, lab in codes.items()) else set()

    def __call__(self, raw) -> tuple[bool, int | None]:
        """(known, code): known=False means the label is not recognised."""
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        key = normalize(raw)
        for candidate in _variants(key):
            if candidate in self.lookup:
                return True, self.lookup[candidate]
        if key in MISSING_LABELS or re.fullmatch(MISSING_PATTERN, key):
            return True, None
        for candidate in _variants(key):
            if candidate.isdigit() and int(candidate) in self.scale_points:
                return True, int(candidate)
        if re.fullmatch(r"-?\d+", key):
            n = int(key)
            if n < 0:
                return True, None
            if self.numeric:
                return True, n
        return False, None


def _variants(key: str) -> list[str]:
    """The label, then its release-specific decorations removed, most specific first."""
    out = [key]
    braced = re.fullmatch(r"(.*?)\s*\{(.*)\}", key)  # 6.0.0 release: "Fourth step{4}", "Farm owner{Farm owner/manager}"
    if braced:
        out += [braced.group(1).strip(), braced.group(2).strip()]
    for k in list(out):
        # per-country options: "usa: republican party", "us: hispanic", "bol:movement for socialism", "nirl: ..."
        prefixed = re.fullmatch(r"[a-z]{2,4}:\s*(.*)", k)
        if prefixed:
            out.append(prefixed.group(1))
        numbered = re.fullmatch(r"(\d+) \D.*", k)  # end-labelled scale points: "1 there is no corruption ..."
        if numbered:
            out.append(numbered.group(1))
    return out


def read_wvs_dir(
    wvs_dir: str | Path, catalog: Catalog, cache_dir: str | Path | None = None, collect_unknown: bool = False
) -> tuple[pd.DataFrame, IngestReport]:
    """All respondent files under `wvs_dir` (`countries/*.xlsx`, `*.csv`) as one table of codes."""
    wvs_dir = Path(wvs_dir)
    files = sorted(
        p
        for p in [*wvs_dir.glob("*.csv"), *wvs_dir.glob("countries/*.xlsx"), *wvs_dir.glob("countries/*.csv")]
        if not p.name.startswith(".")
    )
    if not files:
        raise WVSFormatError(f"{wvs_dir}: no respondent files (expected countries/*.xlsx or a WVS-7 *.csv)")
    return read_files(files, catalog, cache_dir=cache_dir, collect_unknown=collect_unknown)


def read_files(
    files: Iterable[str | Path],
    catalog: Catalog,
    cache_dir: str | Path | None = None,
    collect_unknown: bool = False,
) -> tuple[pd.DataFrame, IngestReport]:
    report = IngestReport()
    frames = []
    for path in map(Path, files):
        raw = _read_raw(path, cache_dir)
        if raw.empty:
            raise WVSFormatError(f"{path}: no respondent rows (only a header)")
        frames.append(to_codes(raw, path, catalog, report, collect_unknown))
        report.files.append(str(path))
    table = pd.concat(frames, ignore_index=True)
    dup = table["person_id"].duplicated()
    if dup.any():
        raise WVSFormatError(f"duplicate respondent ids across files: {table.loc[dup, 'person_id'].head(3).tolist()}")
    report.respondents = len(table)
    return table, report


def to_codes(
    raw: pd.DataFrame, path: Path, catalog: Catalog, report: IngestReport, collect_unknown: bool
) -> pd.DataFrame:
    """One raw sheet (labelled or numeric) -> person_id, country, urban, Q1..Q290 as nullable ints."""
    columns = {str(c).split(":", 1)[0].strip(): c for c in raw.columns}
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise WVSFormatError(
            f"{path}: not a WVS-7 respondent file: missing column(s) {', '.join(missing)} "
            f"(found {len(columns)} columns, e.g. {', '.join(list(columns)[:3])})"
        )
    labelled = any(":" in str(c) for c in raw.columns)
    out = pd.DataFrame(index=raw.index)
    country = raw[columns["B_COUNTRY_ALPHA"]].astype(str).str.strip()
    out["person_id"] = country + "-" + raw[columns["D_INTERVIEW"]].astype(str).str.replace(r"\.0$", "", regex=True)
    out["country"] = country
    urban = raw[columns["H_URBRURAL"]] if "H_URBRURAL" in columns else pd.Series(pd.NA, index=raw.index)
    urban_codes = {"urban": 1, "rural": 2, "1": 1, "2": 2}
    out["urban"] = urban.map(lambda v: urban_codes.get(normalize(v)) if pd.notna(v) else None)
    for q in catalog.codes:
        if q not in columns:
            out[q] = pd.array([pd.NA] * len(raw), dtype="Int64")
            continue
        col = raw[columns[q]]
        question = catalog[q]
        # Per-country options (parties, ethnic groups) share labels across countries ("Republican Party" is a
        # USA, BLR, TUN and ZWE option): map each country's rows with that country's options only.
        groups = country.groupby(country, sort=False).groups if q in COUNTRY_SPECIFIC else {None: raw.index}
        values = pd.Series([None] * len(raw), index=raw.index, dtype=object)
        for c, idx in groups.items():
            part = col.loc[idx]
            if labelled:
                mapped = _map_labels(part, q, _question_choices(question, c), path, columns[q], report, collect_unknown)
            else:
                mapped = _map_codes(part, q, question, c, path, report, collect_unknown)
            values.loc[idx] = mapped
        out[q] = pd.array(values.tolist(), dtype="Int64")
        if labelled and collect_unknown and report.unmapped and report.unmapped[-1].column == str(columns[q]):
            bad = [u.value for u in report.unmapped if u.file == str(path) and u.column == str(columns[q])]
            like = _whose_options(bad, catalog, exclude=q)
            if like:
                report.looks_like[f"{path}|{columns[q]}"] = like
    return out


def _whose_options(values: list[str], catalog: Catalog, exclude: str) -> str | None:
    """The question whose labels map at least 80% of `values`: a shifted header puts a column's answers under its
    neighbour's name. Only called for columns with unmapped labels."""
    shares = {
        q.code: sum(LabelMapper(q.code, _question_choices(q))(v)[0] for v in values) / len(values)
        for q in catalog
        if q.code != exclude and not q.open
    }
    best = max(shares, key=shares.get)
    return best if shares[best] >= 0.8 else None


def _map_labels(col, q, choices, path, column, report, collect_unknown) -> list:
    mapper = LabelMapper(q, choices)
    values = []
    bad: dict[str, int] = {}
    cache: dict = {}
    for v in col:
        if pd.isna(v):
            values.append(None)
            continue
        if v not in cache:
            cache[v] = mapper(v)
        known, code = cache[v]
        report.cells += 1
        if not known:
            bad[str(v)] = bad.get(str(v), 0) + 1
            values.append(None)
        elif code is None:
            report.missing += 1
            values.append(None)
        else:
            report.mapped += 1
            values.append(code)
    _report_bad(bad, path, column, report, collect_unknown)
    return values


def _map_codes(col, q, question: Question, country, path, report, collect_unknown) -> list:
    valid = set(question.options_for(country)) if country is not None else set(question.options)
    if country is None:
        valid |= {c for o in question.country_options.values() for c in o}
    values, bad = [], {}
    for v in pd.to_numeric(col, errors="coerce"):
        if pd.isna(v):
            values.append(None)
            continue
        report.cells += 1
        if v != int(v):  # "2.7" is no answer code; truncating it would count a wrong answer as mapped
            bad[str(v)] = bad.get(str(v), 0) + 1
            values.append(None)
            continue
        n = int(v)
        if n < 0:
            report.missing += 1
            values.append(None)
        elif q in NUMERIC_ITEMS or not valid or n in valid:
            report.mapped += 1
            values.append(n)
        else:
            bad[str(n)] = bad.get(str(n), 0) + 1
            values.append(None)
    _report_bad(bad, path, q, report, collect_unknown)
    return values


def _report_bad(bad: dict[str, int], path: Path, column: str, report: IngestReport, collect_unknown: bool) -> None:
    if not bad:
        return
    if not collect_unknown:
        value, count = next(iter(bad.items()))
        raise WVSFormatError(
            f"{path}: column {column!r}: unknown answer {value!r} ({count} rows); "
            "add it to valuesim/data/aliases.py or run with --report-unknown to list all"
        )
    report.unmapped += [Unmapped(str(path), str(column), v, n) for v, n in bad.items()]


def _question_choices(q: Question, country: str | None = None) -> dict[str, str]:
    """Label table of one question, including missing codes, from the catalog's codebook copy. With a country,
    per-country items (COUNTRY_SPECIFIC) list that country's options only; without, every country's."""
    if country is not None:
        choices = {str(c): lab for c, lab in q.options_for(country).items()}
    else:
        choices = {str(c): lab for c, lab in q.options.items()}
        for opts in q.country_options.values():
            choices.update({str(c): lab for c, lab in opts.items()})
    return {**choices, **{str(c): lab for c, lab in q.missing.items()}}


def _choices(catalog: Catalog) -> dict[str, dict[str, str]]:
    """Label tables per question (all countries' options for per-country items)."""
    return {q.code: _question_choices(q) for q in catalog}


def _read_raw(path: Path, cache_dir: str | Path | None) -> pd.DataFrame:
    """Read an xlsx/csv once; later builds read a pickle keyed by the file's size, mtime and name."""
    if not path.exists():
        raise WVSFormatError(f"{path}: not found")
    cached = None
    if cache_dir is not None:
        st = path.stat()
        key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        cached = Path(cache_dir) / f"{path.stem}-{key}.pkl"
        if cached.exists():
            return pd.read_pickle(cached)
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            sheets = pd.read_excel(path, sheet_name=None, dtype=object, engine="calamine")  # 5x faster than openpyxl
            raw = _pick_sheet(sheets, path)
        elif path.suffix.lower() == ".csv":
            raw = pd.read_csv(path, dtype=object, sep=_sniff_delimiter(path))
        else:
            raise WVSFormatError(f"{path}: unsupported file type {path.suffix!r} (expected .xlsx or .csv)")
    except (zipfile.BadZipFile, ValueError, KeyError, EOFError, pd.errors.ParserError, CalamineError) as e:
        if isinstance(e, WVSFormatError):
            raise
        raise WVSFormatError(f"{path}: cannot be read as {path.suffix.lstrip('.')} ({type(e).__name__}: {e})") from None
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        raw.to_pickle(cached)
    return raw


def _sniff_delimiter(path: Path) -> str:
    """The CSV's delimiter among , ; tab |; a file with one column (or too little to tell) reads as comma-separated.
    (pandas' own sniffing, sep=None, may pick a letter and raises csv.Error on an empty file.)"""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        sample = f.read(65536)
    if len(sample) == 65536 and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _pick_sheet(sheets: dict[str, pd.DataFrame], path: Path) -> pd.DataFrame:
    for df in sheets.values():
        if any(str(c).split(":", 1)[0].strip() == "B_COUNTRY_ALPHA" for c in df.columns):
            return df
    names = ", ".join(map(repr, sheets))
    raise WVSFormatError(f"{path}: no sheet has WVS-7 columns (B_COUNTRY_ALPHA, D_INTERVIEW, Q1...); sheets: {names}")


def fingerprint(table: pd.DataFrame) -> str:
    """Short content hash of the respondent table, logged with every run."""
    h = hashlib.sha256(pd.util.hash_pandas_object(table, index=False).values.tobytes())
    return h.hexdigest()[:12]
