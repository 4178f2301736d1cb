"""The whole WVS-7 as the official cross-national CSV: 97,220 synthetic respondents in 66 countries, ~600 columns.

The scale benchmark of `valuesim data build` (scripts/build_bench.py) runs on this. It is valuesim.testing.synthetic's
numeric layout with what the official file has and the small test folders do not (shapes from synthetic.toml):
- the WVS-7 countries, with sample sizes drawn between ~1,000 and ~4,000 and summing to 97,220;
- missing answers at realistic rates: a lognormal rate per question times one per country, calibrated on the four
  real countries, and some (country, question) pairs not asked at all (-4);
- per-country options that differ between countries: 3-12 parties (Q223) and 2-6 ethnic groups (Q290);
- the ~300 variables the benchmark does not read (fieldwork, weights, regions, recodes, indices, country-level
  figures), so the file has the official width.

    python -m valuesim.testing OUT --full [--respondents 97220] [--seed 0]
"""

from __future__ import annotations

import tomllib
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from valuesim.testing.synthetic import CSV_NAME, respondents, write_cross_national
from valuesim.testing.synthetic_codebook import CODES, _iso, write_metadata

SHAPE = tomllib.loads((Path(__file__).parent / "synthetic.toml").read_text())


def sample_sizes(countries: int, total: int, seed: int) -> np.ndarray:
    """Respondents per country: lognormal shares (WVS-7 samples run from ~1,000 to ~4,000), summing to `total`,
    at least one each (largest remainders)."""
    if total < countries:
        raise ValueError(f"{total} respondents cannot fill {countries} countries")
    weights = np.clip(np.random.default_rng(seed + 11).lognormal(0, 0.5, countries), 0.65, 2.75)
    quota = weights / weights.sum() * (total - countries)
    sizes = 1 + np.floor(quota).astype(np.int64)
    sizes[np.argsort(-(quota - np.floor(quota)), kind="stable")[: total - sizes.sum()]] += 1
    return sizes


def country_names(alpha3: list[str]) -> dict[str, dict[str, list[str]]]:
    """Each country's own parties and ethnic groups (a draw keyed by the country, so the same for any seed)."""
    out: dict[str, dict[str, list[str]]] = {}
    for a in alpha3:
        rng = np.random.default_rng(zlib.crc32(a.encode()))
        out[a] = {}
        for code in ("Q223", "Q290"):
            pool, (low, high) = SHAPE["options"][code], SHAPE["options"][f"{code}_count"]
            out[a][code] = [pool[i] for i in sorted(rng.choice(len(pool), rng.integers(low, high + 1), replace=False))]
    return out


def missing_rates(countries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rates, not asked): each (country, question)'s share of missing answers, and the pairs asked nowhere."""
    spec, rng = SHAPE["missing"], np.random.default_rng(seed + 12)
    log_rate = (
        np.log(spec["median"])
        + rng.normal(0, spec["question_sigma"], len(CODES))[None, :]
        + rng.normal(0, spec["country_sigma"], countries)[:, None]
    )
    return np.minimum(np.exp(log_rate), spec["max"]), rng.random((countries, len(CODES))) < spec["not_asked"]


def extra_columns(country: np.ndarray, alpha3: list[str], seed: int) -> dict[str, pa.Array]:
    """The variables the benchmark does not read: named ones from the codebook, numbered stand-ins for the rest."""
    spec, rng, n = SHAPE["extra_columns"], np.random.default_rng(seed + 13), len(country)
    out: dict[str, pa.Array] = {}
    for name in spec["integers"]:
        out[name] = pa.array(rng.integers(1, 10_000, n, dtype=np.int32))
    for name in spec["decimals"]:
        out[name] = pa.array(np.round(rng.normal(0, 50, n), 4))
    for name in spec["text"]:
        out[name] = pa.array(np.array([_iso(a).alpha_2.lower() for a in alpha3], dtype=object)[country])
    for i in range(1, spec["recodes"] + 1):
        codes = rng.integers(1, 6, n, dtype=np.int32)
        out[f"R_{i:03d}"] = pa.array(np.where(rng.random(n) < 0.03, -1, codes))
    for i in range(1, spec["indices"] + 1):
        out[f"Y_{i:03d}"] = pa.array(np.round(rng.random(n), 3), mask=rng.random(n) < 0.02)
    for i in range(1, spec["country_level"] + 1):
        out[f"CL_{i:03d}"] = pa.array(np.round(rng.lognormal(3, 1, len(alpha3)), 1)[country])
    return out


def write_full(
    out: str | Path, countries: int = 66, total: int | None = None, seed: int = 0, layout: str = "csv"
) -> Path:
    """Write the whole-WVS-7 folder (codebook, questions, metadata, folds and the numeric cross-national file):
    `layout` csv, or sav / dta (SPSS / Stata with value labels and the missing codes declared, as released), or rds
    (R)."""
    out = Path(out)
    alpha3 = SHAPE["countries"][:countries]
    if len(alpha3) < countries or countries < 1:
        raise ValueError(f"countries must be 1 to {len(SHAPE['countries'])}, got {countries}")
    sizes = sample_sizes(len(alpha3), total or SHAPE["respondents"], seed)
    codebook = write_metadata(out, alpha3, seed, names=country_names(alpha3))
    rates, not_asked = missing_rates(len(alpha3), seed)
    frame = respondents(codebook, alpha3, sizes, seed, missing_rates=rates)
    country = np.repeat(np.arange(len(alpha3)), sizes)
    answers = frame[CODES].to_numpy(copy=True)
    answers[not_asked[country]] = -4
    table = pa.Table.from_pandas(frame.drop(columns=CODES), preserve_index=False)
    columns = {q: pa.array(answers[:, j]) for j, q in enumerate(CODES)} | extra_columns(country, alpha3, seed)
    for name, column in columns.items():
        table = table.append_column(name, column)
    # pyarrow's writer: ~10x faster than pandas' to_csv on 600 columns; quotes only where needed, as the WVS file
    if layout == "csv":
        pacsv.write_csv(table, out / CSV_NAME, pacsv.WriteOptions(quoting_style="needed"))
    else:
        write_cross_national(table.to_pandas(), codebook, out / CSV_NAME.replace("csv", layout))
    return out
