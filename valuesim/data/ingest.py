"""Read WVS-7 respondent files into one table of canonical answer codes.

Two layouts are read:
- per-country labelled exports (`*.xlsx` or `*.csv`, header `CODE: label`, cells hold answer labels);
- the official cross-national file as CSV, SPSS `.sav`, Stata `.dta` or R `.rds` (one column per variable code,
  numeric codes, negative codes for missing; an `.rds` column saved as an R factor holds labels).

Every answer becomes its codebook code; missing answers (Don't know, No answer, Not asked, negative codes)
become <NA>. A label that matches no option is an error naming the file, column and value, unless
`collect_unknown=True`, which gathers them all for one report.

The files are read by raw.py (the CSV in chunks, only the columns the benchmark uses); labels are looked up by
labels.py, each distinct label or code of a column once.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from valuesim.data.catalog import COUNTRY_SPECIFIC, NUMERIC_ITEMS, Catalog, Question
from valuesim.data.labels import AmbiguousLabelError, LabelMapper, _question_choices, normalize, plausible_range
from valuesim.data.raw import WVSFormatError, _check_columns, _count_rows, _read_chunks
from valuesim.files import quoted

if TYPE_CHECKING:
    from rich.progress import Progress


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
    label_conflicts: list[str] = field(default_factory=list)  # .sav/.dta value labels disagreeing with the codebook

    @property
    def mapped_share(self) -> float:
        """Share of non-missing answer cells mapped to an option code."""
        answered = self.cells - self.missing
        return self.mapped / answered if answered else 1.0


def read_wvs_dir(
    wvs_dir: str | Path,
    catalog: Catalog,
    cache_dir: str | Path | None = None,
    collect_unknown: bool = False,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, IngestReport]:
    """All respondent files under `wvs_dir` (`countries/*.xlsx`, `*.csv`, `*.sav`, `*.dta`, `*.rds`) as one table
    of codes."""
    wvs_dir = Path(wvs_dir)
    formats = ("csv", "sav", "dta", "rds")
    patterns = [*(f"*.{ext}" for ext in formats), *(f"countries/*.{ext}" for ext in ("xlsx", *formats))]
    files = sorted(p for pattern in patterns for p in wvs_dir.glob(pattern) if not p.name.startswith("."))
    if not files:
        raise WVSFormatError(
            f"{wvs_dir}: no respondent files (expected countries/*.xlsx, or a WVS-7 .csv, .sav, .dta or .rds file)"
        )
    return read_files(files, catalog, cache_dir=cache_dir, collect_unknown=collect_unknown, progress=progress)


def read_files(
    files: Iterable[str | Path],
    catalog: Catalog,
    cache_dir: str | Path | None = None,
    collect_unknown: bool = False,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, IngestReport]:
    """The respondent files as one table of codes, countries in code order (so the benchmark rows are the same
    whichever of the release's formats holds the respondents). With `progress` (valuesim.progress.bars), a bar per
    file."""
    report = IngestReport()
    frames = []
    for path in map(Path, files):
        if path.suffix.lower() in (".sav", ".dta"):
            _check_value_labels(path, catalog, report, collect_unknown)
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
    # One order whatever the files' format: countries by code, each country's respondents in their file's order.
    # The per-country exports (files sorted by name) are in this order already; a cross-national file need not be.
    if not table["country"].is_monotonic_increasing:
        table = table.sort_values("country", kind="stable", ignore_index=True)
    dup = table["person_id"].duplicated()
    if dup.any():
        raise WVSFormatError(f"duplicate respondent ids across files: {table.loc[dup, 'person_id'].head(3).tolist()}")
    report.respondents = len(table)
    return table, report


def _check_value_labels(path: Path, catalog: Catalog, report: IngestReport, collect_unknown: bool) -> None:
    """A .sav/.dta carries its own value labels: one that names another option than the codebook's for its code is
    an error (or, with collect_unknown, listed in the report), since the codes are then of another codebook."""
    from valuesim.data.stat_files import label_conflicts

    conflicts = label_conflicts(path, catalog)
    if conflicts and not collect_unknown:
        more = f" (and {len(conflicts) - 1} more; --report-unknown lists all)" if len(conflicts) > 1 else ""
        raise WVSFormatError(f"{conflicts[0]}{more}")
    report.label_conflicts += conflicts


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
    # as objects: an R factor's map would give floats where the other formats give ints
    out["urban"] = urban.astype(object).map(lambda v: urban_codes.get(normalize(v)) if pd.notna(v) else None)
    by_country = country.groupby(country, sort=False).indices  # row positions per country
    for q in catalog.codes:
        if q not in columns:  # all missing, with the zeros under the mask the other columns have (same bytes)
            out[q] = pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool))
            continue
        col = raw[columns[q]]
        question = catalog[q]
        # an R factor (.rds) holds its labels, whatever the file's other columns hold
        by_label = labelled or isinstance(col.dtype, pd.CategoricalDtype)
        codes, known = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
        # Per-country options (parties, ethnic groups) share labels across countries ("Republican Party" is a
        # USA, BLR, TUN and ZWE option): map each country's rows with that country's options only.
        groups = by_country.items() if q in COUNTRY_SPECIFIC else [(None, np.arange(n))]
        for c, rows in groups:
            part = col.iloc[rows]
            if by_label:
                mapper = LabelMapper(q, _question_choices(question, c), question.cut)
                part_codes, part_known = _map_labels(part, mapper, path, columns[q], report, collect_unknown)
            else:
                part_codes, part_known = _map_codes(part, q, question, c, path, report, collect_unknown)
            codes[rows], known[rows] = part_codes, part_known
        out[q] = pd.arrays.IntegerArray(codes, ~known)
    return pd.DataFrame(out, index=raw.index)


def _whose_options(values: list[str], catalog: Catalog, exclude: str) -> str | None:
    """The question whose labels map at least 80% of `values`: a shifted header puts a column's answers under its
    neighbour's name. Only called for columns with unmapped labels."""
    shares = {
        q.code: sum(_recognised(LabelMapper(q.code, _question_choices(q), q.cut), v) for v in values) / len(values)
        for q in catalog
        if q.code != exclude and not q.open
    }
    best = max(shares, key=shares.__getitem__)
    return best if shares[best] >= 0.8 else None


def _recognised(mapper: LabelMapper, value: str) -> bool:
    try:
        return mapper(value)[0]
    except AmbiguousLabelError:
        return True  # one of this question's options, which one does not matter here


def _map_labels(
    col: pd.Series, mapper: LabelMapper, path: Path, column: str, report: IngestReport, collect_unknown: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(codes, known) of a column of labels; each distinct label is looked up once."""
    keys, labels = pd.factorize(col, use_na_sentinel=True)  # labels in order of first appearance
    counts = np.bincount(keys[keys >= 0], minlength=len(labels))
    try:
        found = [mapper(v) for v in labels]
    except AmbiguousLabelError as e:
        raise WVSFormatError(f"{path}: column {column!r}: {e}") from None
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
    values = _as_floats(col)
    present = ~np.isnan(values)
    # "2.7" is no answer code: truncating it would count a wrong answer as mapped
    whole = present & np.isfinite(values) & (values == np.floor(values))
    answered = whole & (values >= 0)
    if q in NUMERIC_ITEMS:  # a free number: known within its plausible range (1e30 is no age and no int64)
        low, high = plausible_range(q)
        known = answered & (values >= low) & (values <= high)
    else:
        known = answered if not valid else answered & np.isin(values, list(valid))
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


def _as_floats(col: pd.Series) -> np.ndarray:
    """A column as floats: text that is no number is NaN (no answer), a number beyond float range is +-inf."""
    try:
        return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    except OverflowError:  # a Python int beyond float range in an object column: pandas does not coerce it
        return np.array([_as_float(v) for v in col], dtype=float)


def _as_float(value: object) -> float:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value) if abs(value) < 10**300 else (math.inf if value > 0 else -math.inf)
    return float(pd.to_numeric(pd.Series([value], dtype=object), errors="coerce").to_numpy(dtype=float)[0])


def _report_bad(bad: dict[str, int], path: Path, column: str, report: IngestReport, collect_unknown: bool) -> None:
    if not bad:
        return
    if not collect_unknown:
        value, count = next(iter(bad.items()))
        raise WVSFormatError(
            f"{path}: column {quoted(column, 80)}: unknown answer {quoted(value)} ({count} rows); "
            "add it to valuesim/data/aliases.py or run with --report-unknown to list all"
        )
    report.unmapped += [Unmapped(str(path), str(column), v, n) for v, n in bad.items()]


def fingerprint(table: pd.DataFrame) -> str:
    """Short content hash of the respondent table, logged with every run."""
    h = hashlib.sha256(pd.util.hash_pandas_object(table, index=False).values.tobytes())
    return h.hexdigest()[:12]
