"""The WVS-7 respondent files as raw frames, before any answer is mapped: checked for the columns every respondent
file has, an xlsx whole (parsed once, then read from a pickle cache), a CSV in chunks (SPSS/Stata: stat_files.py,
R: r_files.py).

The official CSV (97,220 respondents, ~600 columns) is read in chunks of CSV_CHUNK rows, only the columns the
benchmark uses: read whole as text it took ~4 GB.
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from python_calamine import CalamineError

from valuesim.data.catalog import Catalog
from valuesim.errors import ValueSimError

ID_COLUMNS = {"country": "B_COUNTRY_ALPHA", "interview": "D_INTERVIEW", "urban": "H_URBRURAL"}
REQUIRED = ["B_COUNTRY_ALPHA", "D_INTERVIEW", "Q1"]
CSV_CHUNK = 20_000  # rows per chunk of a CSV file (~40 MB of parsed columns)


class WVSFormatError(ValueSimError):
    """A file that is not a readable WVS-7 respondent file."""


def _check_columns(columns: dict, path: Path) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise WVSFormatError(
            f"{path}: not a WVS-7 respondent file: missing column(s) {', '.join(missing)} "
            f"(found {len(columns)} columns, e.g. {', '.join(list(columns)[:3])})"
        )


def ids_as_text(chunk: pd.DataFrame) -> pd.DataFrame:
    """The id columns of a numeric chunk (.sav, .dta, .rds) as text, as the CSV path reads them: those files store
    numbers as doubles (840070001.0, 1.0), and person ids and the urban/rural codes are compared as text."""
    for column in ID_COLUMNS.values():
        if column in chunk and pd.api.types.is_numeric_dtype(chunk[column]):
            chunk[column] = [str(int(v)) if pd.notna(v) else None for v in chunk[column]]
    return chunk


def _read_chunks(path: Path, catalog: Catalog, cache_dir: str | Path | None) -> Iterator[pd.DataFrame]:
    """The raw rows of one file: a CSV in chunks of CSV_CHUNK rows, only the columns `to_codes` reads (labels as
    text; codes as numbers, ids as text); a .sav or .dta in chunks too (stat_files), an .rds read whole and handed
    on in chunks (r_files); an xlsx whole, through the parse cache (`_read_raw`)."""
    if path.suffix.lower() in (".sav", ".dta"):
        from valuesim.data.stat_files import read_chunks

        yield from read_chunks(path, catalog)
        return
    if path.suffix.lower() == ".rds":
        from valuesim.data import r_files

        yield from r_files.read_chunks(path, catalog)
        return
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
    """Data rows of a CSV, .sav or .dta (for a progress bar); None for other files."""
    if path.suffix.lower() in (".sav", ".dta") and path.exists():
        from valuesim.data.stat_files import read_metadata

        return read_metadata(path).number_rows
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
            raise WVSFormatError(
                f"{path}: unsupported file type {path.suffix!r} (expected .xlsx, .csv, .sav, .dta or .rds)"
            )
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
