"""Answers as second-person statements, as in the ValueSim profiles ("Family is very important in your life.").

The sentences are data: `statements.toml` beside this module holds every table (its header describes the kinds:
group forms, per-answer sentences, templates around an option label, free numbers, name lists). This module reads
it and renders. `valuesim data build` calls `statements_for` once per question (`Catalog.from_wvs`) and the
catalog stores the sentences, so programs read them from catalog.json and nothing renders at run time.

Option labels come from the codebook and carry artefacts ("Eight step", "(for example: ...", "NIRL: ",
truncated party names); they are cleaned here, never in the catalog, so the codes stay those of the data.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from valuesim.errors import ValueSimError

PATH = Path(__file__).with_name("statements.toml")
TABLE_NAMES = (
    "membership", "groups", "sentences", "templates", "option_wording", "numbers", "special", "country_names",
    "language_names", "party_choices", "party_names", "party_rules", "ethnic_groups",
)  # fmt: skip


def load(path: Path = PATH) -> dict[str, Any]:
    """The tables of a statements file, checked for the tables this module reads."""
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueSimError(f"{path}: not found (the valuesim package is incomplete)") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueSimError(f"{path}: not valid TOML ({e})") from None
    missing = [name for name in TABLE_NAMES if name not in tables]
    if missing:
        raise ValueSimError(f"{path}: missing tables {missing}")
    return tables


def _codes(table: dict[str, str], where: str) -> dict[int, str]:
    """TOML keys are strings; answer codes are integers."""
    try:
        return {int(code): text for code, text in table.items()}
    except ValueError:
        raise ValueSimError(f"{PATH}: [{where}]: keys must be answer codes (integers)") from None


def _norm(label: str) -> str:
    """Lookup key for an option label: the codebook spells the same answer in several ways."""
    return re.sub(r"\s+", " ", label.replace("’", "'").replace("´", "'")).strip().lower()


@dataclass(frozen=True)
class Form:
    """One sentence form shared by a block of questions (a [[groups]] entry of statements.toml).

    `answers` maps a normalized option label to a sentence with {slots}; the key "#" stands for every point of a
    numeric scale (its value has {n}). `items` gives each question's words for the slots: a string fills {x}.
    """

    answers: dict[str, str]
    items: dict[str, str | dict[str, str]]
    defaults: dict[str, str] = field(default_factory=dict)

    def render(self, code: str, answer: int, label: str) -> str:
        template = self.answers.get(_norm(label)) or self.answers.get("#")
        if template is None:  # an option label this form does not know: the table needs a line
            raise ValueError(f"{code}: no sentence for the option {label!r} (add it to its group in {PATH.name})")
        slots = self.items[code]
        fields = {"x": slots} if isinstance(slots, str) else self.defaults | slots
        return template.format(n=answer, **fields)


def _forms(tables: dict[str, Any]) -> dict[str, Form]:
    """Question code -> the form of its group. `items = "<table>"` takes the items of another table (membership)."""
    forms: dict[str, Form] = {}
    for i, group in enumerate(tables["groups"], start=1):
        if "answers" not in group or "items" not in group:
            raise ValueSimError(f"{PATH}: [[groups]] number {i} needs 'answers' and 'items'")
        items = group["items"]
        if isinstance(items, str):
            items = {code: words for code, words in tables[items].items() if code not in group.get("exclude", ())}
        form = Form(group["answers"], items, group.get("defaults", {}))
        forms |= {code: form for code in items}
    return forms


TABLES = load()
FORMS: dict[str, Form] = _forms(TABLES)
MEMBERSHIP: dict[str, str] = TABLES["membership"]
SENTENCES = {code: _codes(t, f"sentences.{code}") for code, t in TABLES["sentences"].items()}
TEMPLATES: dict[str, str] = TABLES["templates"]
OPTION_WORDING = {code: _codes(t, f"option_wording.{code}") for code, t in TABLES["option_wording"].items()}
NUMBERS: dict[str, dict[str, Any]] = TABLES["numbers"]
SPECIAL: dict[str, str] = TABLES["special"]
COUNTRY_NAMES: dict[str, str] = TABLES["country_names"]
LANGUAGE_NAMES: dict[str, str] = TABLES["language_names"]
PARTY_CHOICES = _codes(TABLES["party_choices"], "party_choices")
PARTY_NAMES: dict[str, str] = TABLES["party_names"]
PARTY_PROPER_NAMES = set(TABLES["party_rules"]["proper_names"])
_PARTY_NOUNS = re.compile(r"\b(" + "|".join(map(re.escape, TABLES["party_rules"]["nouns"])) + r")\b")
ETHNIC_GROUPS: dict[str, str] = TABLES["ethnic_groups"]
_COUNTRIES_WITH_THE = re.compile(r"^(United |Netherlands|Philippines|Bahamas|Gambia|Maldives)|Islands\b")


# ---------------------------------------------------------------------------------------------------------------
# Cleaning option labels


def _lower_first(text: str) -> str:
    """Lower-case an option label's first letter ("A stable economy"), keeping acronyms and names ("TV news")."""
    first = text.split()[0]
    if first in {"A", "An"} or (first[1:].islower() and first != "God"):
        return text[0].lower() + text[1:]
    return text


def _article(phrase: str) -> str:
    """The indefinite article by sound ("a Ukrainian", "an Uzbek"), for ethnic-group phrases."""
    if re.match(r"(?i)(uk|uy|ui|uni|eu|one)", phrase):
        return "a"
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def country_phrase(label: str) -> str:
    """A country name as it reads in a sentence: "the United States", "Colombia"."""
    if label in COUNTRY_NAMES:
        return COUNTRY_NAMES[label]
    return f"the {label}" if _COUNTRIES_WITH_THE.search(label) else label


def _language(label: str) -> str:
    return LANGUAGE_NAMES.get(label) or re.split(r"[;,]", label)[0].strip()


def _party(label: str) -> str:
    """A party name as it reads after "vote for": 'the Labour Party', '"Law and Justice"', 'Hezbollah'."""
    if label in PARTY_NAMES:
        return PARTY_NAMES[label]
    name = re.sub(r"^[A-Z]{2,4}:\s*", "", label)  # "NIRL: Green Party" (country prefix the catalog leaves)
    name = name.replace("´", "'").replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    name = re.sub(r"\s+(--|-|–)\s+", " - ", name).replace("[", "(").replace("]", ")")
    if name in PARTY_PROPER_NAMES or name.startswith('"'):
        return name
    if name.startswith("The "):
        return "the " + name[4:]
    head = re.split(r" - | / ", name)[0]  # "Fidesz - Hungarian Civic Alliance": the article goes by "Fidesz"
    if _PARTY_NOUNS.search(head) and not head[-1].isdigit():
        return "the " + name
    return f'"{name}"'  # a plain-word name ("Attack", "Law and Justice") is quoted so the sentence stays clear


def _ethnic_group(label: str) -> str:
    return ETHNIC_GROUPS.get(label) or f"{_article(label)} {label} person"


# The [special] items: how each cleans its option label into the {name} of its sentence.
NAMES = {
    "Q223": _party,
    "Q266": country_phrase,
    "Q267": country_phrase,
    "Q268": country_phrase,
    "Q272": _language,
    "Q290": _ethnic_group,
}


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def _fallback(code: str, text: str, label: str) -> str:
    """Safety net for a question no table covers (the tests check that none does)."""
    return f'Asked "{text}", you answered "{label}".'


def _render(code: str, answer: int, label: str, text: str) -> str:
    if code in SPECIAL:
        if code == "Q223" and answer in PARTY_CHOICES:  # the shared codes: no right to vote, would not vote, ...
            return PARTY_CHOICES[answer]
        return SPECIAL[code].format(name=NAMES.get(code, str)(label))
    if code in FORMS:
        return FORMS[code].render(code, answer, label)
    if code in SENTENCES:
        return SENTENCES[code][answer]
    if code in TEMPLATES:
        wording = OPTION_WORDING.get(code, {}).get(answer) or _lower_first(label)
        return TEMPLATES[code].format(x=wording, label=label)
    return _fallback(code, text, label)


def _number(code: str, answer: int) -> str:
    return SENTENCES.get(code, {}).get(answer) or NUMBERS[code]["sentence"].format(n=answer)


def statements_for(code: str, options: dict[int, str], text: str = "") -> dict[int, str]:
    """Every answer of a question as a second-person sentence, by answer code.

    `options` is every option of the question (per-country ones included: their codes are unique); a free number
    ([numbers]: year of birth, age, counts) has a sentence for every value of its plausible range instead. `text`
    is the question's wording, for the fallback sentence no question should need. Raises ValueError naming the
    question and label when a group form has no sentence for an option.
    """
    if code in NUMBERS:
        low, high = NUMBERS[code]["range"]
        sentences = {n: _number(code, n) for n in range(low, high + 1)}
    else:
        sentences = {answer: _render(code, answer, label, text) for answer, label in options.items()}
    return {answer: s[0].upper() + s[1:] for answer, s in sentences.items()}
