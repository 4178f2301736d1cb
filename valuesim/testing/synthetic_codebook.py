"""The metadata files of a synthetic WVS-7 folder (valuesim.testing.synthetic): codebook.json, questions.json,
question_metadata.json and the five protocol folds, in the real files' structure.

Option labels come from the project's own statement tables (valuesim/data/statements.toml), so every answer renders
as a statement; where aliases.py says a release spells an option differently, the codebook gets the codebook's
spelling, so the labelled files can carry the release's. Per-country items (parties, ethnic groups) get codes
<ISO numeric> * 1000 + n and prefixed labels, as in the real codebook.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pycountry

from valuesim import files
from valuesim.data import statements as st
from valuesim.data.aliases import ALIASES
from valuesim.data.catalog import COUNTRY_SPECIFIC, LABEL_CUT, OPEN_ITEMS, SECTIONS

CODES = [f"Q{n}" for n in range(1, 291)]
MISSING = {-1: "Don't know", -2: "No answer", -4: "Not asked", -5: "Missing; Not available"}
# Small generic lists for the items whose real options are names (languages, parties, ethnic groups): the
# statement tables render any name, and real names would be WVS content. One party and one group are longer than
# the codebook's cut (LABEL_CUT with the prefix), as 30 real ones are: the codebook gets the cut label, the labelled
# files the whole one.
LANGUAGES = ("English", "Spanish; Castilian", "Japanese", "Bengali", "French")
PARTIES = (
    "Green Party", "Labour Party", "Liberal and Democratic Alliance for the Renewal of Civic and Social Institutions",
    "Conservative Party",
)  # fmt: skip
ETHNIC_GROUPS = (
    "Majority group", "Minority group", "Mixed heritage (two or more of the groups above, or any other background)",
)  # fmt: skip


def _iso(alpha3: str) -> Any:
    country = pycountry.countries.get(alpha_3=alpha3)
    if country is None:
        raise ValueError(f"{alpha3!r} is not an ISO 3166-1 alpha-3 country code")
    return country


def _name(alpha3: str) -> str:
    country = _iso(alpha3)
    return getattr(country, "common_name", None) or country.name


def _numeric(alpha3: str) -> int:
    return int(_iso(alpha3).numeric)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _from_sentence(sentence: str) -> str:
    """A short option label from a statement: "You are male." -> "Male"."""
    return _capital(re.sub(r"^(You are |You have |You |Your )", "", sentence.rstrip(".")))


def question_options(code: str, alpha3: Sequence[str]) -> tuple[dict[int, str], bool]:
    """(code -> label, ordinal) for one question, from the statement table that renders it."""
    if code in ("Q261", "Q262"):  # year of birth, age: free numbers without options
        return {}, True
    if code in ("Q266", "Q267", "Q268"):  # countries of birth: the countries in the folder
        return {_numeric(a): _name(a) for a in alpha3}, False
    if code == "Q272":
        return dict(enumerate(LANGUAGES, start=1)), False
    if code == "Q223":  # shared codes < 1000 (no right to vote, would not vote, ...); parties come per country
        return {c: _from_sentence(s) for c, s in st.PARTY_CHOICES.items()}, False
    if code == "Q290":  # only per-country codes
        return {}, False
    if code in st.NUMBERS:  # counts: codes 0-7 labelled with digits, the last "7 or more"
        codes = sorted(st.SENTENCES[code])
        return {c: str(c) if c < codes[-1] else f"{c} or more" for c in codes}, True
    form = st.FORMS.get(code)
    if form is not None:
        words = [k for k in form.answers if k != "#"]
        if "#" in form.answers:  # a 1-10 scale: digits, ends labelled with words, extra answers after 10
            item = form.items[code]
            slots = item if isinstance(item, dict) else {}
            low, high = slots.get("low", "completely disagree"), slots.get("high", "completely agree")
            options = {n: _capital(low if n == 1 else high if n == 10 else str(n)) for n in range(1, 11)}
            return options | {i: _capital(w) for i, w in enumerate(words, start=11)}, True
        seen: set[str] = set()
        labels: list[str] = []
        for key in words:  # one spelling per sentence ("agree strongly" and "strongly agree" say the same)
            if form.answers[key] not in seen:
                seen.add(form.answers[key])
                labels.append(_capital(key))
        return dict(enumerate(labels, start=1)), True
    if code in st.SENTENCES:
        return {c: _from_sentence(s) for c, s in st.SENTENCES[code].items()}, False
    # TEMPLATES: a sentence around the label; reworded options keep their wording, the others get a plain label
    wording = st.OPTION_WORDING.get(code, {})
    codes = sorted(set(range(1, 5)) | set(wording))
    # Ordinal, as every synthetic folder so far was built: the test this replaces, `code not in wording`, compared a
    # question code with option codes and so was always true (found by mypy; which items are nominal is open).
    return {c: _capital(wording[c]) if c in wording else f"Option {c}" for c in codes}, True


def _codebook_spelling(code: str, options: dict[int, str]) -> dict[int, str]:
    """Where aliases.py says a release spells an option differently from the codebook ("Incomes should be made
    more equal" in the files, "Incomes more equal" in the codebook), the codebook gets the codebook spelling, so
    the labelled files can carry the release spelling. Only where the statement still renders from that label."""
    form = st.FORMS.get(code)
    keyed_on_label = form is not None and "#" not in form.answers
    by_label = {st._norm(label): c for c, label in options.items()}
    out = dict(options)
    for variant, target in ALIASES.get(code, {}).items():
        c = by_label.get(st._norm(variant))
        if c is None or target is None:
            continue
        if not keyed_on_label or (form is not None and st._norm(target) in form.answers):
            out[c] = target
    return out


def country_options(code: str, alpha3: str, names: Sequence[str] | None = None) -> dict[int, str]:
    """Per-country options (Q223 parties, Q290 ethnic groups): codes <ISO numeric> * 1000 + n, labels prefixed
    like the real codebook's ("USA: Labour Party", "US: Majority group"). `names`: the country's own list
    (default PARTIES or ETHNIC_GROUPS)."""
    num = _numeric(alpha3)
    if code == "Q223":
        return {num * 1000 + i: f"{alpha3}: {p}" for i, p in enumerate(names or PARTIES, start=1)}
    return {num * 1000 + i: f"{_iso(alpha3).alpha_2}: {g}" for i, g in enumerate(names or ETHNIC_GROUPS, start=1)}


def whole_labels(
    alpha3: Sequence[str], names: Mapping[str, Mapping[str, Sequence[str]]] | None = None
) -> dict[str, dict[int, str]]:
    """Per-country item -> code -> its whole label, as the labelled files write it (the codebook cuts it)."""
    out: dict[str, dict[int, str]] = {code: {} for code in COUNTRY_SPECIFIC}
    for code in COUNTRY_SPECIFIC:
        for a in alpha3:
            out[code] |= country_options(code, a, (names or {}).get(a, {}).get(code))
    return out


def _entry(question: str, choices: dict, kind: str = "multiple_choice", instruction: str = "") -> dict:
    return {"question": question, "question_instruction": instruction, "type": kind, "choices": choices}


def write_metadata(
    out: Path, alpha3: Sequence[str], seed: int, names: Mapping[str, Mapping[str, Sequence[str]]] | None = None
) -> dict[str, dict]:
    """codebook.json, questions.json, question_metadata.json and protocol/; returns the codebook. `names`: per
    country and per-country item (Q223, Q290), the country's own option names (see country_options)."""
    codebook: dict[str, dict] = {
        "version": _entry("Version of Data File", {}, "objective"),
        "A_YEAR": _entry("Year of survey", {}, "objective"),
        "B_COUNTRY": _entry("ISO 3166-1 numeric country code", {str(_numeric(a)): _name(a) for a in alpha3}),
        "B_COUNTRY_ALPHA": _entry("ISO 3166-1 alpha-3 country code", {a: _name(a) for a in alpha3}),
        "D_INTERVIEW": _entry("Interview ID", {}, "objective", "ISO numeric country code, 07, interview number"),
        "H_URBRURAL": _entry("Urban-Rural", {"1": "Urban", "2": "Rural", "-5": "No answer; Missing"}),
    }
    wording, meta = {}, {}
    for code in CODES:
        n = int(code[1:])
        options, ordinal = question_options(code, alpha3)
        options = _codebook_spelling(code, options)
        for a in alpha3 if code in COUNTRY_SPECIFIC else ():
            own = country_options(code, a, (names or {}).get(a, {}).get(code))
            options |= {c: lab[:LABEL_CUT] for c, lab in own.items()}  # the codebook's cut, as in the real one
        section = next(name for lo, hi, name in SECTIONS if lo <= n <= hi)
        label = _capital(st.MEMBERSHIP.get(code) or f"{section}: item {n}")
        kind = "objective" if code in OPEN_ITEMS or code in COUNTRY_SPECIFIC else "multiple_choice"
        choices = {str(c): lab for c, lab in options.items()} | {str(c): m for c, m in MISSING.items()}
        codebook[code] = _entry(label, choices, kind)
        text = f"Synthetic question {n} ({section.lower()})?"
        shared = {str(c): lab for c, lab in options.items() if c < 1000}  # questions.json: no per-country lists
        wording[code] = {"question_text": text, "options": shared}
        if code not in OPEN_ITEMS and options:
            meta[code] = {
                "question": text,
                "category": section,
                "use_case": "value" if n < 260 else "demographic",
                "answer_scale_min": 1,
                "answer_scale_max": len(shared) or len(options),
                "answer_data_type": "ordinal" if ordinal else "nominal",
            }
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (("codebook.json", codebook), ("questions.json", wording), ("question_metadata.json", meta)):
        (out / name).write_text(files.strict_json(data, ensure_ascii=False))
    order = np.random.default_rng(seed).permutation(len(CODES))  # every question held out in exactly one fold
    (out / "protocol").mkdir(exist_ok=True)
    for fold in range(1, 6):
        test = {CODES[i] for i in order[(fold - 1) * 58 : fold * 58]}
        train, held_out = [c for c in CODES if c not in test], [c for c in CODES if c in test]
        (out / "protocol" / f"fold_{fold}.json").write_text(
            files.strict_json({"fold": fold, "train_set": train, "test_set": held_out}, indent=None)
        )
    return codebook
