"""A person file for `valuesim simulate`: who someone is and what they answered, by question code.

    {
      "country": "USA",
      "answers": {"Q260": "Female", "Q262": 34, "Q275": "Bachelor or equivalent", "Q1": "Very important",
                  "Q164": 8, "Q46": 2}
    }

Answers are option codes (numbers) or option labels (text, compared without case or punctuation); free numbers
(age Q262, year of birth Q261) are numbers. Demographics are Q260-Q290, value questions Q1-Q259.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import dspy

from valuesim.data.benchmark import make_example, make_person
from valuesim.data.catalog import NUMERIC_ITEMS, Catalog
from valuesim.data.labels import normalize
from valuesim.errors import ValueSimError


class PersonFileError(ValueSimError):
    """A person file that cannot be read; the message names the file and the field."""


def load_person(path: str | Path, catalog: Catalog) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM (Windows editors) is not an error
    except FileNotFoundError:
        raise PersonFileError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise PersonFileError(f"{path}: not valid JSON ({e})") from None
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
    if not isinstance(country, str) or not country:
        raise PersonFileError(f"{source}: field 'country' must be an ISO alpha-3 code such as \"USA\"")
    country = country.upper()
    if catalog.countries and country not in catalog.countries:
        raise PersonFileError(f"{source}: field 'country': unknown country code {country!r}")
    answers = data.get("answers", {})
    if not isinstance(answers, dict):
        raise PersonFileError(f"{source}: field 'answers' must be an object of question code -> answer")
    items = []
    for code, value in answers.items():
        if code not in catalog:
            raise PersonFileError(f"{source}: answers.{code}: unknown question code (expected Q1-Q290)")
        items.append({"q": code, "a": answer_code(catalog, code, value, country, source)})
    demographics = [i for i in items if catalog[i["q"]].kind == "demographic"]
    profile = [i for i in items if catalog[i["q"]].kind == "value"]
    person = make_person(catalog, country, demographics, profile)
    person["person_id"] = str(data.get("id", Path(source).stem))
    return person


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
        raise PersonFileError(f"{source}: answers.{code}: expected a number or an option label, got {value!r}")
    if code in NUMERIC_ITEMS:
        if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
            value = float(value)
        if not isinstance(value, int | float):
            raise PersonFileError(f"{source}: answers.{code}: {q.label} is a number, got {value!r}")
        return int(value)
    if isinstance(value, int | float) and float(value).is_integer() and int(value) in options:
        return int(value)
    if isinstance(value, str):
        by_label = {normalize(label): c for c, label in options.items()}
        key = normalize(value)
        if key in by_label:
            return by_label[key]
        if re.fullmatch(r"-?\d+(\.0+)?", key) and int(float(key)) in options:  # "3" and "3.0" are code 3
            return int(float(key))
        for looser in (loose_label, bare_label):
            matches = [c for c, label in options.items() if looser(label) == looser(value)]
            if len(matches) == 1 and looser(value):
                return matches[0]
    listed = "; ".join(f"{c} = {label}" for c, label in list(options.items())[:12])
    raise PersonFileError(f"{source}: answers.{code}: {value!r} is not an option of {code} ({listed})")
