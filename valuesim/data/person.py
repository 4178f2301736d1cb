"""A person file for `valuesim simulate`: who someone is and what they answered, by question code.

    {
      "country": "USA",
      "answers": {"Q260": "Female", "Q262": 34, "Q275": "Bachelor or equivalent", "Q1": "Very important",
                  "Q164": 8, "Q46": 2}
    }

Answers are option codes (numbers) or option labels (text, compared without case or punctuation); free numbers
(age Q262, year of birth Q261, household size Q270, children Q274) are whole numbers within the plausible range
statements.toml's [numbers] gives (age 0-130, year of birth 1850-2100, counts 0-40). Demographics are Q260-Q290,
value questions Q1-Q259. An optional "id" (text or a number) names the person; the file name does otherwise.

A person file is read as strict UTF-8 JSON of at most MAX_PERSON_BYTES (1 MB: a person with every answer is about
10 kB), nested at most valuesim.files.MAX_DEPTH deep. Every problem is one PersonFileError naming the file and the
field, quoting at most ~200 characters of the bad value.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import dspy

from valuesim.data.benchmark import make_example, make_person
from valuesim.data.catalog import NUMERIC_ITEMS, Catalog
from valuesim.data.labels import normalize, plausible_range
from valuesim.errors import ValueSimError
from valuesim.files import FileFormatError, quoted, read_json

MAX_PERSON_BYTES = 1_000_000  # a person with all 290 answers as labels is ~10 kB
MAX_ID_CHARS = 200


class PersonFileError(ValueSimError):
    """A person file that cannot be read; the message names the file and the field."""


def load_person(path: str | Path, catalog: Catalog) -> dict:
    """The person in a person file (see the module docstring), ready for make_example."""
    try:
        data = read_json(path, MAX_PERSON_BYTES, "person file")
    except FileFormatError as e:
        raise PersonFileError(str(e)) from None
    return parse_person(data, catalog, str(path))


def ask(person: str | Path | dict, question: str, catalog: Catalog) -> dspy.Example:
    """`person` (a person file, or its JSON as a dict) asked `question`: the example whose `inputs()` a program
    takes. An unknown question code or a free-number item is a one-line error, checked before the person."""
    if question not in catalog:
        raise ValueSimError(f"unknown question code {question!r} (expected Q1-Q290)")
    if catalog[question].open:
        raise ValueSimError(f"{question} ({catalog[question].label}) is a free-number item and cannot be asked")
    who = parse_person(person, catalog) if isinstance(person, dict) else load_person(person, catalog)
    return make_example(catalog, who, question)


def parse_person(data: Any, catalog: Catalog, source: str = "person") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise PersonFileError(f"{source}: expected a JSON object with 'country' and 'answers'")
    country = data.get("country")
    if not isinstance(country, str) or not re.fullmatch(r"[A-Za-z]{3}", country.strip()):
        raise PersonFileError(
            f"{source}: field 'country' must be an ISO alpha-3 code such as \"USA\", got {quoted(country)}"
        )
    country = country.strip().upper()
    if catalog.countries and country not in catalog.countries:
        raise PersonFileError(f"{source}: field 'country': unknown country code {country!r}")
    answers = data.get("answers", {})
    if not isinstance(answers, dict):
        raise PersonFileError(f"{source}: field 'answers' must be an object of question code -> answer")
    items: list[dict[str, Any]] = []
    for code, value in answers.items():
        if not isinstance(code, str) or code not in catalog:
            raise PersonFileError(f"{source}: answers.{_key(code)}: unknown question code (expected Q1-Q290)")
        items.append({"q": code, "a": answer_code(catalog, code, value, country, source)})
    demographics = [i for i in items if catalog[i["q"]].kind == "demographic"]
    profile = [i for i in items if catalog[i["q"]].kind == "value"]
    try:
        person = make_person(catalog, country, demographics, profile)
    except ValueError as e:  # Question.statement: an answer without a sentence (a catalog of an older build)
        raise PersonFileError(f"{source}: {e}") from None
    person["person_id"] = person_id(data, source)
    return person


def person_id(data: dict, source: str) -> str:
    """The file's "id" (text or a whole number), else the file name without its suffix."""
    if "id" not in data:
        return Path(source).stem
    value = data["id"]
    if isinstance(value, bool) or not isinstance(value, str | int) or len(str(value).strip()) > MAX_ID_CHARS:
        raise PersonFileError(f"{source}: field 'id' must be text or a whole number, got {quoted(value)}")
    return str(value).strip()


def _key(code: Any) -> str:
    """A question code for an error line: as written when it looks like one, else quoted and cut."""
    return code if isinstance(code, str) and re.fullmatch(r"\w{1,20}", code, re.ASCII) else quoted(code, 60)


def number_answer(catalog: Catalog, code: str, value: Any, source: str) -> int:
    """A free number (age, year of birth, counts): a whole, finite number in plausible_range, or text holding one."""
    low, high = plausible_range(code)
    number: int | float | None = None
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d+)?", value.strip(), re.ASCII):
        number = float(value)  # never int(): a 5,000-digit text is refused by int() itself (float gives inf)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    whole = isinstance(number, int) or (isinstance(number, float) and math.isfinite(number) and number.is_integer())
    if number is None or not whole or not low <= number <= high:
        label = catalog[code].label
        raise PersonFileError(
            f"{source}: answers.{code}: {label} must be a whole number from {low} to {high}, got {quoted(value)}"
        )
    return int(number)


def loose_label(label: str) -> str:
    """A label without any punctuation: "very important!" and "Very important." compare equal."""
    return " ".join(re.sub(r"[^\w\s]", " ", normalize(label)).split())


def bare_label(label: str) -> str:
    """A label without its parenthesized notes: "Bachelor or equivalent" for "Bachelor or equivalent (ISCED 6)"."""
    return loose_label(re.sub(r"\([^)]*\)", " ", str(label)))


def answer_code(catalog: Catalog, code: str, value: Any, country: str, source: str) -> int:
    """An option code from a code or a label; raises with the allowed options when it is neither.

    Labels match exactly up to case, quotes and spacing, then without punctuation, then without parenthesized
    notes; the looser matches only count when they name a single option."""
    q = catalog[code]
    options = q.options_for(country)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PersonFileError(f"{source}: answers.{code}: expected a number or an option label, got {quoted(value)}")
    if code in NUMERIC_ITEMS:
        return number_answer(catalog, code, value, source)
    if isinstance(value, int) and value in options:
        return value
    if isinstance(value, float) and value.is_integer() and int(value) in options:
        return int(value)
    if isinstance(value, str):
        by_label = {normalize(label): c for c, label in options.items()}
        key = normalize(value)
        if key in by_label:
            return by_label[key]
        if re.fullmatch(r"-?\d{1,9}(\.0+)?", key, re.ASCII) and int(float(key)) in options:  # "3", "3.0": code 3
            return int(float(key))
        for looser in (loose_label, bare_label):
            matches = [c for c, label in options.items() if looser(label) == looser(value)]
            if len(matches) == 1 and looser(value):
                return matches[0]
    listed = "; ".join(f"{c} = {label}" for c, label in list(options.items())[:12])
    raise PersonFileError(f"{source}: answers.{code}: {quoted(value)} is not an option of {code} ({listed})")
