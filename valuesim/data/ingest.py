"""Read WVS-7 respondent files into one table of canonical answer codes.

Two layouts are read:
- per-country labelled exports (`*.xlsx` or `*.csv`, header `CODE: label`, cells hold answer labels);
- the official cross-national CSV (one column per variable code, numeric codes, negative codes for missing).

Every answer becomes its codebook code; missing answers (Don't know, No answer, Not asked, negative codes)
become <NA>. A label that matches no option is an error naming the file, column and value, unless
`collect_unknown=True`, which gathers them all for one report.

The official CSV (97,220 respondents, ~600 columns) is read in chunks of CSV_CHUNK rows, only the columns the
benchmark uses: read whole as text it took ~4 GB. Each distinct label or code of a column is looked up once.
"""

from __future__ import annotations

import csv
import hashlib
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from python_calamine import CalamineError

from valuesim.data.aliases import ALIASES, GLOBAL_ALIASES, MISSING_LABELS, MISSING_PATTERN
from valuesim.data.catalog import COUNTRY_SPECIFIC, NUMERIC_ITEMS, Catalog, Question
from valuesim.errors import ValueSimError

if TYPE_CHECKING:
    from rich.progress import Progress

ID_COLUMNS = {"country": "B_COUNTRY_ALPHA", "interview": "D_INTERVIEW", "urban": "H_URBRURAL"}
REQUIRED = ["B_COUNTRY_ALPHA", "D_INTERVIEW", "Q1"]
CSV_CHUNK = 20_000  # rows per chunk of a CSV file (~40 MB of parsed columns)


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
            value = None  # an alias to None marks a missing answer
            if target is not None:
                if normalize(target) not in self.lookup:
                    continue  # alias for a label this question does not have
                value = self.lookup[normalize(target)]
            self.lookup.setdefault(normalize(variant), value)
        self.numeric = code in NUMERIC_ITEMS
        # 10-point scales label the middle points with digits ("2".."9") and the ends with words; a release may
        # give an end point as its digit too ("10", "1 None at all"), which is then the code itself
        codes = {int(c): str(lab).strip() for c, lab in choices.items() if int(c) >= 0}
        self.scale_points = set(codes) if any(lab == str(c) for c, lab in codes.items()) else set()

    def __call__(self, raw: Any) -> tuple[bool, int | None]:
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
    wvs_dir: str | Path,
    catalog: Catalog,
    cache_dir: str | Path | None = None,
    collect_unknown: bool = False,
    progress: Progress | None = None,
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
    return read_files(files, catalog, cache_dir=cache_dir, collect_unknown=collect_unknown, progress=progress)


def read_files(
    files: Iterable[str | Path],
    catalog: Catalog,
    cache_dir: str | Path | None = None,
    collect_unknown: bool = False,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, IngestReport]:
    """The respondent files as one table of codes. With `progress` (valuesim.progress.bars), a bar per file."""
    report = IngestReport()
    frames = []
    for path in map(Path, files):
        task = progress.add_task(f"reading {path.name}", total=_count_rows(path)) if progress else None
        rows = 0
        for raw in _read_chunks(path, catalog, cache_dir):
            frames.append(to_codes(raw, path, catalog, report, collect_unknown))
            rows += len(raw)
            if progress and task is not None:
                progress.advance(task, len(raw))
        if rows == 0:
            raise WVSFormatError(f"{path}: no respondent rows (only a header)")
        if progress and task is not None:
            progress.remove_task(task)
        report.files.append(str(path))
    report.unmapped = _merged(report.unmapped)
    if collect_unknown:
        _name_shifted_columns(report, catalog)
    table = pd.concat(frames, ignore_index=True)
    dup = table["person_id"].duplicated()
    if dup.any():
        raise WVSFormatError(f"duplicate respondent ids across files: {table.loc[dup, 'person_id'].head(3).tolist()}")
    report.respondents = len(table)
    return table, report


def _merged(unmapped: list[Unmapped]) -> list[Unmapped]:
    """One entry per file, column and value (a CSV read in chunks reports a value once per chunk)."""
    out: dict[tuple[str, str, str], Unmapped] = {}
    for u in unmapped:
        key = (u.file, u.column, u.value)
        if key in out:
            out[key].count += u.count
        else:
            out[key] = Unmapped(u.file, u.column, u.value, u.count)
    return list(out.values())


def _name_shifted_columns(report: IngestReport, catalog: Catalog) -> None:
    """For each labelled column with unmapped labels, the question whose options they are, if any (a shifted
    header puts a column's answers under its neighbour's name)."""
    bad: dict[tuple[str, str], list[str]] = {}
    for u in report.unmapped:
        bad.setdefault((u.file, u.column), []).append(u.value)
    for (file, column), values in bad.items():
        code = column.split(":", 1)[0].strip()
        if ":" not in column or code not in catalog:  # numeric layout: codes, not labels
            continue
        like = _whose_options(values, catalog, exclude=code)
        if like:
            report.looks_like[f"{file}|{column}"] = like


def to_codes(
    raw: pd.DataFrame, path: Path, catalog: Catalog, report: IngestReport, collect_unknown: bool
) -> pd.DataFrame:
    """One raw sheet (labelled or numeric) -> person_id, country, urban, Q1..Q290 as nullable ints."""
    columns = {str(c).split(":", 1)[0].strip(): c for c in raw.columns}
    _check_columns(columns, path)
    labelled = any(":" in str(c) for c in raw.columns)
    n = len(raw)
    out: dict[str, object] = {}
    country = raw[columns["B_COUNTRY_ALPHA"]].astype(str).str.strip()
    out["person_id"] = country + "-" + raw[columns["D_INTERVIEW"]].astype(str).str.replace(r"\.0$", "", regex=True)
    out["country"] = country
    urban = raw[columns["H_URBRURAL"]] if "H_URBRURAL" in columns else pd.Series(pd.NA, index=raw.index)
    urban_codes = {"urban": 1, "rural": 2, "1": 1, "2": 2}
    out["urban"] = urban.map(lambda v: urban_codes.get(normalize(v)) if pd.notna(v) else None)
    by_country = country.groupby(country, sort=False).indices  # row positions per country
    for q in catalog.codes:
        if q not in columns:
            out[q] = pd.array([pd.NA] * n, dtype="Int64")
            continue
        col = raw[columns[q]]
        question = catalog[q]
        codes, known = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
        # Per-country options (parties, ethnic groups) share labels across countries ("Republican Party" is a
        # USA, BLR, TUN and ZWE option): map each country's rows with that country's options only.
        groups = by_country.items() if q in COUNTRY_SPECIFIC else [(None, np.arange(n))]
        for c, rows in groups:
            part = col.iloc[rows]
            if labelled:
                part_codes, part_known = _map_labels(
                    part, q, _question_choices(question, c), path, columns[q], report, collect_unknown
                )
            else:
                part_codes, part_known = _map_codes(part, q, question, c, path, report, collect_unknown)
            codes[rows], known[rows] = part_codes, part_known
        out[q] = pd.arrays.IntegerArray(codes, ~known)
    return pd.DataFrame(out, index=raw.index)


def _check_columns(columns: dict, path: Path) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise WVSFormatError(
            f"{path}: not a WVS-7 respondent file: missing column(s) {', '.join(missing)} "
            f"(found {len(columns)} columns, e.g. {', '.join(list(columns)[:3])})"
        )


def _whose_options(values: list[str], catalog: Catalog, exclude: str) -> str | None:
    """The question whose labels map at least 80% of `values`: a shifted header puts a column's answers under its
    neighbour's name. Only called for columns with unmapped labels."""
    shares = {
        q.code: sum(LabelMapper(q.code, _question_choices(q))(v)[0] for v in values) / len(values)
        for q in catalog
        if q.code != exclude and not q.open
    }
    best = max(shares, key=shares.__getitem__)
    return best if shares[best] >= 0.8 else None


def _map_labels(
    col: pd.Series,
    q: str,
    choices: dict[str, str],
    path: Path,
    column: str,
    report: IngestReport,
    collect_unknown: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(codes, known) of a column of labels; each distinct label is looked up once."""
    mapper = LabelMapper(q, choices)
    keys, labels = pd.factorize(col, use_na_sentinel=True)  # labels in order of first appearance
    counts = np.bincount(keys[keys >= 0], minlength=len(labels))
    found = [mapper(v) for v in labels]
    is_known = np.array([k for k, _ in found], dtype=bool)
    is_code = np.array([k and c is not None for k, c in found], dtype=bool)
    label_codes = np.array([c if k and c is not None else 0 for k, c in found], dtype=np.int64)
    report.cells += int(counts.sum())
    report.mapped += int(counts[is_code].sum())
    report.missing += int(counts[is_known & ~is_code].sum())
    bad: dict[str, int] = {}
    for u in np.flatnonzero(~is_known):
        bad[str(labels[u])] = bad.get(str(labels[u]), 0) + int(counts[u])
    _report_bad(bad, path, column, report, collect_unknown)
    known = (keys >= 0) & is_code[keys]
    return np.where(known, label_codes[keys], 0), known


def _map_codes(
    col: pd.Series,
    q: str,
    question: Question,
    country: str | None,
    path: Path,
    report: IngestReport,
    collect_unknown: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(codes, known) of a column of numeric codes: negative = missing; a code outside the options is unknown."""
    valid = set(question.options_for(country)) if country is not None else set(question.options)
    if country is None:
        valid |= {c for o in question.country_options.values() for c in o}
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    present = ~np.isnan(values)
    # "2.7" is no answer code: truncating it would count a wrong answer as mapped
    whole = present & np.isfinite(values) & (values == np.floor(values))
    answered = whole & (values >= 0)
    known = answered if q in NUMERIC_ITEMS or not valid else answered & np.isin(values, list(valid))
    report.cells += int(present.sum())
    report.missing += int((whole & (values < 0)).sum())
    report.mapped += int(known.sum())
    bad: dict[str, int] = {}
    wrong = present & ~(known | (whole & (values < 0)))
    if wrong.any():
        for v, count in pd.Series(values[wrong]).value_counts(sort=False).items():
            key = str(int(v)) if np.isfinite(v) and v == int(v) else str(v)
            bad[key] = bad.get(key, 0) + int(count)
    _report_bad(bad, path, q, report, collect_unknown)
    return np.where(known, values, 0).astype(np.int64), known


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


def _read_chunks(path: Path, catalog: Catalog, cache_dir: str | Path | None) -> Iterator[pd.DataFrame]:
    """The raw rows of one file: a CSV in chunks of CSV_CHUNK rows, only the columns `to_codes` reads (labels as
    text; codes as numbers, ids as text); an xlsx whole, through the parse cache (`_read_raw`)."""
    if path.suffix.lower() != ".csv" or not path.exists():
        yield _read_raw(path, cache_dir)
        return
    sep = _sniff_delimiter(path)
    try:
        header = pd.read_csv(path, sep=sep, nrows=0).columns
        columns = {str(c).split(":", 1)[0].strip(): c for c in header}
        _check_columns(columns, path)
        keep = [c for code, c in columns.items() if code in catalog or code in ID_COLUMNS.values()]
        labelled = any(":" in str(c) for c in header)
        dtype = object if labelled else {columns[c]: object for c in ID_COLUMNS.values() if c in columns}
        yield from pd.read_csv(path, sep=sep, usecols=keep, dtype=dtype, chunksize=CSV_CHUNK)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        if isinstance(e, WVSFormatError):
            raise
        raise WVSFormatError(f"{path}: cannot be read as csv ({type(e).__name__}: {e})") from None


def _count_rows(path: Path) -> int | None:
    """Data rows of a CSV (lines after the header, for a progress bar); None for other files."""
    if path.suffix.lower() != ".csv" or not path.exists():
        return None
    with open(path, "rb") as f:
        lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))
    return max(lines - 1, 0)


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
