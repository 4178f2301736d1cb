"""Answer labels -> codebook codes, for one question: the codebook's labels, the reviewed alias table (aliases.py)
and the release-specific decorations ("Fourth step{4}", "USA: Republican Party", "1 Never justifiable") removed.

Labels compare after `normalize` (case, quotes, punctuation and spacing variants are equal). A label the codebook
cut (catalog.LABEL_CUT characters) matches a file's longer label that starts with it, when only one option does. A
free number (age, year of birth, counts: NUMERIC_ITEMS) is known only within its plausible range (statements.toml
[numbers]); any other number, and any text, is unknown, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from valuesim.data.aliases import ALIASES, GLOBAL_ALIASES, MISSING_LABELS, MISSING_PATTERN
from valuesim.data.catalog import NUMERIC_ITEMS, Catalog, Question
from valuesim.data.statements import NUMBERS
from valuesim.errors import ValueSimError

MAX_CODE_DIGITS = 18  # answer codes have at most 6 digits; a longer number is never one (and fits an int64)


class AmbiguousLabelError(ValueSimError):
    """A label that starts with the cut codebook labels of two or more options."""


def plausible_range(code: str) -> tuple[int, int]:
    """The inclusive range of a free-number item (statements.toml [numbers], where its sentences come from)."""
    low, high = NUMBERS[code]["range"]
    return int(low), int(high)


def normalize(label: str) -> str:
    """Case, quote, punctuation and spacing variants of one label compare equal."""
    s = str(label).strip().lower()
    s = re.sub(r"[´’‘`]", "'", s)
    s = s.replace("&", " and ")
    s = re.sub(r"[\s_]+", " ", s)
    return s.rstrip(" .;:").strip()


class LabelMapper:
    """Label -> code for one question, from the codebook plus the reviewed alias table. `cut`: the codes (keys of
    `choices`) whose codebook label the codebook cut (Question.cut)."""

    def __init__(self, code: str, choices: dict[str, str], cut: Collection[int | str] = ()):
        self.code = code
        # (normalized label, code, label) of the cut labels: a longer file label starting with one is that option
        self.cut = [(normalize(choices[str(c)]), int(c), choices[str(c)]) for c in cut if str(c) in choices]
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
        self.range = plausible_range(code) if self.numeric else (0, -1)
        # 10-point scales label the middle points with digits ("2".."9") and the ends with words; a release may
        # give an end point as its digit too ("10", "1 None at all"), which is then the code itself
        codes = {int(c): str(lab).strip() for c, lab in choices.items() if int(c) >= 0}
        self.scale_points = set(codes) if any(lab == str(c) for c, lab in codes.items()) else set()

    def __call__(self, raw: Any) -> tuple[bool, int | None]:
        """(known, code): known=False means the label is not recognised."""
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) >= 10**MAX_CODE_DIGITS:
            return raw < 0, None  # negative = missing; a huge number is no answer (10**5000 has no str())
        key = normalize(raw)
        for candidate in _variants(key):
            if candidate in self.lookup:
                return True, self.lookup[candidate]
        if key in MISSING_LABELS or re.fullmatch(MISSING_PATTERN, key):
            return True, None
        for candidate in _variants(key):
            if _is_code(candidate) and int(candidate) in self.scale_points:
                return True, int(candidate)
        number = re.fullmatch(r"(-?)(\d+)", key)
        if number:
            if number.group(1):
                return True, None  # negative codes are missing answers
            low, high = self.range
            if self.numeric and _is_code(number.group(2)) and low <= int(number.group(2)) <= high:
                return True, int(number.group(2))
        return self._cut_match(key, raw)

    def _cut_match(self, key: str, raw: Any) -> tuple[bool, int | None]:
        """The one option whose cut label the label (or its undecorated variant) starts with; an error when several
        do (the codebook cut two long labels to the same start)."""
        found: dict[int, str] = {}
        for candidate in _variants(key):
            for start, code, label in self.cut:
                if len(candidate) > len(start) and candidate.startswith(start):
                    found[code] = label
        if len(found) > 1:
            options = " and ".join(f"{c} ({label!r})" for c, label in sorted(found.items()))
            raise AmbiguousLabelError(
                f"{self.code}: label {str(raw)!r} starts with the codebook's cut labels of options {options}; "
                "add it to valuesim/data/aliases.py to say which"
            )
        if found:
            return True, next(iter(found))
        return False, None


def _is_code(text: str) -> bool:
    """Decimal digits short enough to be a code ("²" is a digit to str.isdigit, but not to int())."""
    return text.isdecimal() and len(text) <= MAX_CODE_DIGITS


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
