"""A synthetic WVS-7 folder: the file layout of the real one, made-up respondents.

The WVS terms forbid redistributing the data files, so a clone of this project has no WVS data; the tests and the
scale benchmarks run on a folder this module writes instead:

    codebook.json, questions.json, question_metadata.json    same structure as the real files (synthetic_codebook.py)
    protocol/fold_{1..5}.json                                5 folds over Q1-Q290, 232 profile / 58 held out
    countries/<ALPHA3>.xlsx                                  labelled exports (`xlsx=True`)
    WVS_Cross-National_Wave_7_csv_v6_0.csv                   the numeric cross-national layout (`csv=True`)
    WVS_Cross-National_Wave_7_{sav,dta}_v6_0.{sav,dta}      the same as SPSS or Stata (`cross_national="sav"`),
                                                             with value labels and the missing codes declared
    WVS_Cross-National_Wave_7_rds_v6_0.rds                   the same as R (`cross_national="rds"`): numeric
                                                             codes, a few columns as R factors (R_FACTORS)

Option labels come from the project's own statement tables (valuesim/data/statements.toml), so every answer renders
as a statement; nothing is taken from the WVS files. Answers follow a latent-trait model (three person traits
around a country mean, per-question loadings, a per-country shift per question), so neighbours, countries and
demographic cells carry some signal, as in real data. The labelled files carry the mess the real exports have:
release spellings from valuesim/data/aliases.py ("Agree strongly", "Don´t know", the codebook's short scale ends),
missing-answer labels ("Not asked in survey"), end-labelled 10-point scales ("1 Never justifiable", "10"),
per-country options with and without their prefix, and a few columns absent in one country.

    python -m valuesim.testing OUT [--countries 4] [--per-country 100] [--layout xlsx|csv|both] [--seed 0]
    python -m valuesim.testing OUT --full      # the whole WVS-7 as the official CSV (synthetic_full.py)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pycountry

from valuesim.data import statements as st
from valuesim.data.aliases import ALIASES, GLOBAL_ALIASES
from valuesim.data.catalog import COUNTRY_SPECIFIC
from valuesim.testing.synthetic_codebook import CODES, _capital, _iso, _numeric, whole_labels, write_metadata
from valuesim.testing.writers import write_r_file, write_stat_file, write_xlsx

DEFAULT_COUNTRIES = ("USA", "JPN", "COL", "BGD")
CSV_NAME = "WVS_Cross-National_Wave_7_csv_v6_0.csv"
RELEASES = ("1-5-0 (2020-11-16)", "6-0-0 (2024-04-15)")  # countries alternate between two data releases
DROPPED = ("Q5", "Q99", "Q180")  # columns the second country's export lacks (column sets differ a little)
N_TRAITS = 3
# columns an .rds holds as R factors of their labels (the rest as numeric codes, as the R release stores them)
R_FACTORS = ("H_URBRURAL", "Q1", "Q57", "Q177", *sorted(COUNTRY_SPECIFIC))


def country_codes(n: int) -> list[str]:
    """The default four, then ISO countries in alphabetical order (for the full-size 66-country benchmark)."""
    rest = sorted(c.alpha_3 for c in pycountry.countries if c.alpha_3 not in DEFAULT_COUNTRIES)
    return [*DEFAULT_COUNTRIES, *rest][:n]


# ---------------------------------------------------------------------------------------------------------------
# Respondents


def respondents(
    codebook: dict,
    alpha3: Sequence[str],
    per_country: int | Sequence[int] | np.ndarray,
    seed: int,
    missing_rates: np.ndarray | None = None,
) -> pd.DataFrame:
    """Numeric answer codes (negative = missing) for `per_country` respondents of each country (one number for
    all, or one per country), vectorized over respondents: a question's answer is its option at the respondent's
    position on a latent score. `missing_rates` (countries x CODES): each answer's chance to be missing (default
    4% everywhere)."""
    rng = np.random.default_rng(seed)
    sizes = np.broadcast_to(np.asarray(per_country, dtype=np.int64), (len(alpha3),))
    k, n = len(alpha3), int(sizes.sum())
    country = np.repeat(np.arange(k), sizes)
    numeric = np.array([_numeric(a) for a in alpha3])
    year = 2017 + np.arange(k) % 3
    traits = rng.normal(scale=0.7, size=(k, N_TRAITS))[country] + rng.normal(size=(n, N_TRAITS))
    columns: dict[str, np.ndarray] = {
        "version": np.array(RELEASES)[np.arange(k) % 2][country],
        "A_YEAR": year[country],
        "B_COUNTRY": numeric[country],
        "B_COUNTRY_ALPHA": np.array(alpha3)[country],
        # the real format: ISO numeric, "07", the interview number (840071622)
        "D_INTERVIEW": numeric[country] * 1_000_000 + 70_000 + np.concatenate([np.arange(1, s + 1) for s in sizes]),
        "H_URBRURAL": np.where(traits[:, 1] + rng.normal(size=n) > 0, 1, 2),
    }
    age = np.clip(np.round(46 + 11 * traits[:, 0] + 9 * rng.normal(size=n)), 18, 90).astype(np.int32)
    counts = np.clip(np.round(2.5 + 0.8 * traits[:, 2] + rng.normal(size=n)), 0, 7).astype(np.int32)
    born = year[country] - age - (rng.random(n) < 0.5)  # birthday before or after the interview
    free = {"Q262": age, "Q261": born, "Q270": np.maximum(counts, 1), "Q274": counts}
    answers = np.empty((n, len(CODES)), dtype=np.int32)
    for j, code in enumerate(CODES):
        if code in free:
            answers[:, j] = free[code]
            continue
        choices = [int(c) for c in codebook[code]["choices"] if int(c) > 0]
        # traits x loadings + the country's shift on this question + noise (the real baselines' order: majority <
        # country ~ demographic cell < kNN)
        score = traits @ rng.normal(size=N_TRAITS) + rng.normal(size=k)[country] + rng.normal(scale=1.2, size=n)
        if code in COUNTRY_SPECIFIC:  # each country chooses from its own list plus the shared codes
            for c in range(k):
                own = np.array([o for o in choices if o < 1000 or o // 1000 == numeric[c]])
                rows = country == c
                answers[rows, j] = own[_bins(score[rows], len(own), rng)]
        else:
            answers[:, j] = np.array(choices)[_bins(score, len(choices), rng)]
    # Missing answers: a few percent per question (Don't know, No answer, Missing), plus whole questions not asked
    # in one country (-4) and the columns the second country's export lacks
    missing = rng.random(answers.shape) < (0.04 if missing_rates is None else missing_rates[country])
    answers[missing] = rng.choice(np.array([-1, -1, -2, -5], dtype=np.int32), missing.sum())
    for c in range(min(k, 2)):  # two value questions not asked in each of the first two countries
        for q in rng.choice(np.arange(1, 260), 2, replace=False):
            answers[country == c, q - 1] = -4
    for code in DROPPED if k > 1 else ():
        answers[country == 1, CODES.index(code)] = -4
    return pd.concat([pd.DataFrame(columns), pd.DataFrame(answers, columns=CODES)], axis=1)


def _bins(score: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Option index 0..m-1 of each score: m-1 random cut points spread over the scores' range."""
    if m == 1:
        return np.zeros(len(score), dtype=np.int64)
    cuts = np.sort(rng.normal(size=m - 1)) * (score.std() or 1.0) + score.mean()
    return np.searchsorted(cuts, score)


# ---------------------------------------------------------------------------------------------------------------
# Labelled exports


def labelled(
    frame: pd.DataFrame, codebook: dict, seed: int, whole: dict[str, dict[int, str]] | None = None
) -> pd.DataFrame:
    """A labelled export of `frame`: `CODE: label` headers, answer labels as text with release-style variants.
    `whole`: per-country item -> code -> the whole label where the codebook's is cut (synthetic_codebook.whole_labels);
    the files carry the whole label, as real exports do."""
    rng = np.random.default_rng(seed + 1)
    n = len(frame)
    release = np.isin(frame["version"].to_numpy(), RELEASES[1])  # the newer release spells more labels its way
    head = ("version", "A_YEAR", "B_COUNTRY", "B_COUNTRY_ALPHA", "D_INTERVIEW", "H_URBRURAL")
    out = {f"{c}: {codebook[c]['question']}": frame[c].to_numpy() for c in head}
    # the exports write the country's name and the urban/rural label
    out[f"B_COUNTRY: {codebook['B_COUNTRY']['question']}"] = (
        frame["B_COUNTRY"].astype(str).map(codebook["B_COUNTRY"]["choices"])
    )
    out[f"H_URBRURAL: {codebook['H_URBRURAL']['question']}"] = frame["H_URBRURAL"].map({1: "Urban", 2: "Rural"})
    for code in CODES:
        choices = {int(c): label for c, label in codebook[code]["choices"].items()} | (whole or {}).get(code, {})
        values = frame[code].to_numpy()
        r = rng.random(n)
        # the option's label; free numbers (age, year of birth) are the number itself
        labels = np.array([choices.get(v, v) for v in values.tolist()], dtype=object)
        # release spellings of an option (aliases.py): the codebook label -> how a release writes it
        variants = {}
        for variant, target in {**GLOBAL_ALIASES, **ALIASES.get(code, {})}.items():
            for c, label in choices.items():
                if c > 0 and target is not None and st._norm(label) == st._norm(target) != st._norm(variant):
                    variants[c] = _capital(variant)
        if variants:
            pick = np.isin(values, list(variants)) & (r < np.where(release, 0.6, 0.1))
            labels[pick] = [variants[v] for v in values[pick].tolist()]
        if all(choices.get(p) == str(p) for p in range(2, 10)):  # a 1-10 scale: end points as "1 <label>" or "10"
            ends = np.isin(values, (1, 10))
            long, digit = ends & (r > 0.8), ends & (r > 0.65) & (r <= 0.8)
            labels[long] = [f"{v} {choices[v]}" for v in values[long].tolist()]
            labels[digit] = values[digit].astype(str)
        if code in COUNTRY_SPECIFIC:  # some releases drop the country prefix ("Labour Party")
            bare = (values >= 1000) & (r < 0.2)
            labels[bare] = [re.sub(r"^[A-Z]{2,4}:\s*", "", lab) for lab in labels[bare]]
        labels[(values == -1) & (r < 0.5)] = "Don´t know"
        labels[(values == -4) & release] = "Not asked in survey"  # how the newer release says it
        out[f"{code}: {codebook[code]['question']}"] = labels
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------------------------
# The folder


def write_cross_national(frame: pd.DataFrame, codebook: dict, path: Path) -> None:
    """The numeric cross-national file as .sav, .dta or .rds (by `path`'s suffix)."""
    if path.suffix == ".rds":
        write_r_file(frame, codebook, path, factors=R_FACTORS)
    else:
        write_stat_file(frame, codebook, path)


def write_synthetic_wvs(
    out: str | Path,
    countries: int | Sequence[str] = 4,
    per_country: int = 100,
    seed: int = 0,
    xlsx: bool = True,
    csv: bool = False,
    cross_national: str = "csv",
) -> Path:
    """Write a synthetic WVS-7 folder (see the module docstring) and return its path.

    `countries`: how many (the default four, then ISO order) or ISO alpha-3 codes. `xlsx` writes one labelled
    file per country, `csv` the numeric cross-national file; with both, the labelled files hold the first half of
    the countries and the CSV the rest (a folder must not hold a respondent twice: the reader rejects duplicate
    ids). `cross_national`: that file's format, csv, sav (SPSS), dta (Stata) or rds (R). Several seconds for 4 x 100
    labelled; the full WVS-7 size as CSV takes about a minute."""
    if not (xlsx or csv):
        raise ValueError("nothing to write: xlsx=True and/or csv=True")
    out = Path(out)
    alpha3 = country_codes(countries) if isinstance(countries, int) else [_iso(a).alpha_3 for a in countries]
    if not alpha3 or per_country < 1:
        raise ValueError("need at least one country and one respondent per country")
    codebook = write_metadata(out, alpha3, seed)
    frame = respondents(codebook, alpha3, per_country, seed)
    as_csv = set(alpha3[(len(alpha3) + 1) // 2 :] if xlsx else alpha3) if csv else set()
    in_csv = frame["B_COUNTRY_ALPHA"].isin(as_csv).to_numpy()
    if in_csv.any() and cross_national == "csv":
        frame[in_csv].to_csv(out / CSV_NAME, index=False)
    elif in_csv.any():
        name = CSV_NAME.replace("csv", cross_national)  # WVS_Cross-National_Wave_7_sav_v6_0.sav, as released
        write_cross_national(frame[in_csv].reset_index(drop=True), codebook, out / name)
    if xlsx:
        (out / "countries").mkdir(exist_ok=True)
        files = labelled(frame[~in_csv].reset_index(drop=True), codebook, seed, whole_labels(alpha3))
        alpha_column = f"B_COUNTRY_ALPHA: {codebook['B_COUNTRY_ALPHA']['question']}"
        for k, a in enumerate(alpha3):
            if a in as_csv:
                continue
            part = files[files[alpha_column].to_numpy() == a]
            if k == 1:  # column sets differ a little between countries
                part = part.drop(columns=[c for c in part.columns if c.split(":")[0] in DROPPED])
            write_xlsx(out / "countries" / f"{a}.xlsx", part)
    return out
