"""A synthetic WVS-7 folder: the file layout of the real one, made-up respondents.

The WVS terms forbid redistributing the data files, so a clone of this project has no WVS data; the tests and the
scale benchmarks run on a folder this module writes instead:

    codebook.json, questions.json, question_metadata.json    same structure as the real files
    protocol/fold_{1..5}.json                                5 folds over Q1-Q290, 232 profile / 58 held out
    countries/<ALPHA3>.xlsx                                  labelled exports (`xlsx=True`)
    WVS_Cross-National_Wave_7_csv_v6_0.csv                   the numeric cross-national layout (`csv=True`)

Option labels come from the project's own statement tables (valuesim/data/statements.py), so every answer renders
as a statement. Answers follow a latent-trait model (two person traits, per-question loadings, a country effect
per question), so neighbours and demographics carry some signal, as in real data. The labelled files carry the
mess the real exports have: label variants from valuesim/data/aliases.py, missing-answer labels, end-labelled
10-point scales, a few columns absent in one country.

    python -m valuesim.data.synthetic OUT [--countries 4] [--per-country 100] [--csv-only] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pycountry

from valuesim.data import statements as st
from valuesim.data.aliases import ALIASES, GLOBAL_ALIASES
from valuesim.data.catalog import COUNTRY_SPECIFIC, NUMERIC_ITEMS, OPEN_ITEMS, SECTIONS

DEFAULT_COUNTRIES = ("USA", "JPN", "COL", "BGD")
MISSING = {-1: "Don't know", -2: "No answer", -4: "Not asked", -5: "Missing; Not available"}
MISSING_IN_FILES = ["Don't know", "Don´t know", "No answer", "Not asked", "Missing; Not available"]
CSV_NAME = "WVS_Cross-National_Wave_7_csv_v6_0.csv"
LANGUAGES = {1: "English", 2: "Spanish; Castilian", 3: "Japanese", 4: "Bengali", 5: "French"}
PARTIES = ["Green Party", "Labour Party", "Liberal Party", "Conservative Party", "Socialist Party"]
GROUPS = ["Majority group", "Minority group", "Mixed heritage"]


def countries(n: int) -> list[str]:
    """The default four, then ISO countries in alphabetical order (for the full-size 66-country benchmark)."""
    pool = list(DEFAULT_COUNTRIES) + sorted(
        c.alpha_3 for c in pycountry.countries if c.alpha_3 not in DEFAULT_COUNTRIES
    )
    return pool[:n]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _from_sentence(sentence: str) -> str:
    """A short option label from a statement: "You are male." -> "Male"."""
    label = re.sub(r"^(You are |You have |You |Your )", "", sentence.rstrip("."))
    return _capital(label)


def question_options(code: str, alpha3: list[str]) -> tuple[dict[int, str], bool]:
    """(code -> label, ordinal) for one question, from the statement table that renders it."""
    if code in NUMERIC_ITEMS:
        return {}, True
    if code in ("Q266", "Q267", "Q268"):
        return {int(pycountry.countries.get(alpha_3=a).numeric): _name(a) for a in alpha3}, False
    if code == "Q272":
        return dict(LANGUAGES), False
    if code == "Q223":
        return {c: _from_sentence(s) for c, s in st.PARTY_CHOICES.items() if c in (1, 2)}, False
    if code == "Q290":
        return {}, False
    form = st._FORM_OF.get(code)
    if form is not None:
        words = [k for k in form.answers if k != "#"]
        if "#" in form.answers:  # a 1-10 scale: digits, ends labelled with words
            slots = form.items[code] if isinstance(form.items[code], dict) else {}
            low, high = slots.get("low", "completely disagree"), slots.get("high", "completely agree")
            options = {n: _capital(low if n == 1 else high if n == 10 else str(n)) for n in range(1, 11)}
            return options | {i: _capital(w) for i, w in enumerate(words, start=11)}, True  # e.g. "(spontaneous)"
        seen, labels = set(), []
        for key in words:  # keep one spelling per sentence ("agree strongly" and "strongly agree" say the same)
            if form.answers[key] not in seen:
                seen.add(form.answers[key])
                labels.append(_capital(key))
        return dict(enumerate(labels, start=1)), True
    if code in st.SENTENCES:
        return {c: _from_sentence(s) for c, s in st.SENTENCES[code].items()}, False
    wording = st.OPTION_WORDING.get(code, {})
    if wording:
        return {c: _capital(w) for c, w in wording.items()}, False
    return {n: f"Option {n}" for n in range(1, 5)}, True


def _name(alpha3: str) -> str:
    country = pycountry.countries.get(alpha_3=alpha3)
    return getattr(country, "common_name", None) or country.name


def _numeric(alpha3: str) -> int:
    return int(pycountry.countries.get(alpha_3=alpha3).numeric)


def country_options(code: str, alpha3: str) -> dict[int, str]:
    """Per-country options (Q223 parties, Q290 ethnic groups): codes <ISO numeric> * 1000 + n, prefixed labels."""
    num, a2 = _numeric(alpha3), pycountry.countries.get(alpha_3=alpha3).alpha_2
    if code == "Q223":
        return {num * 1000 + i: f"{alpha3}: {p}" for i, p in enumerate(PARTIES[:4], start=1)}
    return {num * 1000 + i: f"{a2}: {g}" for i, g in enumerate(GROUPS, start=1)}


def write_metadata(out: Path, alpha3: list[str], seed: int) -> dict[str, dict]:
    """codebook.json, questions.json, question_metadata.json and protocol/; returns the codebook."""
    codebook: dict[str, dict] = {
        "B_COUNTRY": {
            "question": "ISO 3166-1 numeric country code",
            "choices": {str(_numeric(a)): _name(a) for a in alpha3},
        },
        "B_COUNTRY_ALPHA": {"question": "ISO 3166-1 alpha-3 country code", "choices": {a: _name(a) for a in alpha3}},
        "D_INTERVIEW": {"question": "Interview ID", "choices": {}},
        "H_URBRURAL": {"question": "Urban-Rural", "choices": {"1": "Urban", "2": "Rural"}},
    }
    wording, meta = {}, {}
    for n in range(1, 291):
        code = f"Q{n}"
        options, ordinal = question_options(code, alpha3)
        for a in alpha3 if code in COUNTRY_SPECIFIC else []:
            options |= country_options(code, a)
        section = next(name for lo, hi, name in SECTIONS if lo <= n <= hi)
        label = st.MEMBERSHIP.get(code) or f"{section}: item {n}"
        choices = {str(c): lab for c, lab in options.items()} | {str(c): lab for c, lab in MISSING.items()}
        codebook[code] = {"question": label, "question_instruction": "", "type": "multiple_choice", "choices": choices}
        wording[code] = {"question_text": f"Synthetic question {n} ({section.lower()})?", "options": choices}
        if code not in OPEN_ITEMS and options:
            meta[code] = {
                "question": wording[code]["question_text"],
                "category": section,
                "use_case": "value" if n < 260 else "demographic",
                "answer_scale_min": 1,
                "answer_scale_max": len(options),
                "answer_data_type": "ordinal" if ordinal else "nominal",
            }
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (("codebook.json", codebook), ("questions.json", wording), ("question_metadata.json", meta)):
        (out / name).write_text(json.dumps(data, ensure_ascii=False, indent=1))
    codes = [f"Q{n}" for n in range(1, 291)]
    np.random.default_rng(seed).shuffle(codes)
    (out / "protocol").mkdir(exist_ok=True)
    for fold in range(1, 6):
        test = codes[(fold - 1) * 58 : fold * 58]
        train = [c for c in codes if c not in test]
        (out / "protocol" / f"fold_{fold}.json").write_text(
            json.dumps({"fold": fold, "train_set": train, "test_set": test})
        )
    return codebook


def respondents(codebook: dict, alpha3: list[str], per_country: int, seed: int) -> pd.DataFrame:
    """Numeric answer codes (negative = missing) for `per_country` respondents of each country."""
    rng = np.random.default_rng(seed)
    n = per_country * len(alpha3)
    country = np.repeat(np.arange(len(alpha3)), per_country)
    traits = rng.normal(size=(n, 2))
    columns: dict[str, np.ndarray] = {
        "B_COUNTRY": np.array([_numeric(a) for a in alpha3])[country],
        "B_COUNTRY_ALPHA": np.array(alpha3)[country],
        "D_INTERVIEW": np.array([_numeric(a) * 100000 + i for a in alpha3 for i in range(1, per_country + 1)]),
        "H_URBRURAL": rng.integers(1, 3, n),
    }
    age = rng.integers(18, 86, n)
    free = {"Q262": age, "Q261": 2019 - age, "Q270": rng.integers(1, 9, n), "Q274": rng.integers(0, 6, n)}
    not_asked = {(1 % len(alpha3), f"Q{q}") for q in rng.choice(np.arange(1, 260), 3, replace=False)}
    for q in range(1, 291):
        code = f"Q{q}"
        if code in free:
            values = free[code]
        else:
            values = np.zeros(n, dtype=np.int64)
            for k, a in enumerate(alpha3):
                options = [int(c) for c in codebook[code]["choices"] if int(c) > 0]
                if code in COUNTRY_SPECIFIC:
                    options = [c for c in options if c < 1000 or c // 1000 == _numeric(a)]
                rows = country == k
                loading, shift = rng.normal(size=2), rng.normal(scale=0.8)
                score = traits[rows] @ loading + shift + rng.normal(size=rows.sum())
                cuts = np.sort(rng.normal(scale=1.2, size=len(options) - 1))
                values[rows] = np.array(options)[np.searchsorted(cuts, score)]
        missing = rng.random(n) < 0.04
        values = np.where(missing, rng.choice([-1, -1, -2, -5], n), values)
        for k, c in not_asked:
            if c == code:
                values = np.where(country == k, -4, values)
        columns[code] = values
    return pd.DataFrame(columns)


def labelled(frame: pd.DataFrame, codebook: dict, seed: int) -> pd.DataFrame:
    """A labelled export of `frame`: `CODE: label` headers, answer labels with release-style variants."""
    rng = np.random.default_rng(seed + 1)
    out = {
        "B_COUNTRY_ALPHA: ISO 3166-1 alpha-3 country code": frame["B_COUNTRY_ALPHA"],
        "D_INTERVIEW: Interview ID": frame["D_INTERVIEW"],
        "H_URBRURAL: Urban-Rural": frame["H_URBRURAL"].map({1: "Urban", 2: "Rural"}),
    }
    for q in range(1, 291):
        code = f"Q{q}"
        choices = codebook[code]["choices"]
        variants = {}  # codebook label -> a spelling another release uses
        for variant, target in {**GLOBAL_ALIASES, **ALIASES.get(code, {})}.items():
            for c, label in choices.items():
                if target is not None and label.lower() == target.lower() and variant != label.lower():
                    variants[c] = _capital(variant)
        scale = any(label.isdigit() for label in choices.values())  # 1-10 scales: digits with labelled ends
        values = frame[code].to_numpy()
        labels = []
        for v, r in zip(values, rng.random(len(values)), strict=True):
            if v < 0:
                labels.append(MISSING_IN_FILES[int(r * 100) % len(MISSING_IN_FILES)] if v != -4 else "Not asked")
            elif code in NUMERIC_ITEMS:
                labels.append(str(v))
            elif str(v) in variants and r < 0.3:
                labels.append(variants[str(v)])
            elif not scale or v not in (1, 10) or r >= 0.15:
                labels.append(choices[str(v)])
            else:  # end-labelled scale points, as one release writes them: "1 Never justifiable"
                labels.append(f"{v} {choices[str(v)]}")
        out[f"{code}: {codebook[code]['question']}"] = labels
    return pd.DataFrame(out)


def write_synthetic_wvs(
    out: str | Path,
    n_countries: int = 4,
    per_country: int = 100,
    seed: int = 0,
    xlsx: bool = True,
    csv: bool = False,
) -> Path:
    """Write a synthetic WVS-7 folder (see the module docstring) and return its path.

    `xlsx` writes one labelled file per country; `csv` writes the numeric cross-national file instead (both would
    hold the same respondents twice, which the reader rejects as duplicate ids)."""
    if xlsx == csv:
        raise ValueError("write either the labelled xlsx files or the numeric CSV (xlsx=True or csv=True)")
    out = Path(out)
    alpha3 = countries(n_countries)
    codebook = write_metadata(out, alpha3, seed)
    frame = respondents(codebook, alpha3, per_country, seed)
    if csv:
        frame.to_csv(out / CSV_NAME, index=False)
        return out
    (out / "countries").mkdir(exist_ok=True)
    files = labelled(frame, codebook, seed)
    for k, a in enumerate(alpha3):
        part = files[frame["B_COUNTRY_ALPHA"].to_numpy() == a]
        if k == 1:  # column sets differ a little between countries
            part = part.drop(columns=[c for c in part.columns if c.split(":")[0] in ("Q5", "Q99", "Q180")])
        part.to_excel(out / "countries" / f"{a}.xlsx", index=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="Write a synthetic WVS-7 folder (same layout, made-up respondents).")
    ap.add_argument("out", type=Path)
    ap.add_argument("--countries", type=int, default=4, help="number of countries (4 default ones, then ISO order)")
    ap.add_argument("--per-country", type=int, default=100, help="respondents per country")
    ap.add_argument("--csv-only", action="store_true", help="the numeric cross-national CSV instead of xlsx files")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    path = write_synthetic_wvs(args.out, args.countries, args.per_country, args.seed, not args.csv_only, args.csv_only)
    n = args.countries * args.per_country
    print(f"wrote {path}: {n:,} respondents in {args.countries} countries ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
