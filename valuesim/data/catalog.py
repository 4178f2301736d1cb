"""The question catalog: wording, ordered options, category, scale type and statements for Q1-Q290.

Built from the WVS files the user gives (`codebook.json`, `questions.json`, `question_metadata.json`) and saved
next to the built benchmark, so programs and `simulate` need no WVS files at run time. Every answer's statement
(valuesim/data/statements.py) is rendered once here, at `valuesim data build`, and saved with the catalog.

Answer codes are the codebook's numeric codes (the ones the official cross-national CSV uses), so a labelled
export and the CSV map to the same codes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from valuesim import files
from valuesim.data import statements
from valuesim.errors import NotFoundError, UnknownKeyError, ValueSimError

VALUE_RANGE = range(1, 260)  # Q1-Q259 are value questions; Q260-Q290 demographics
# Items without a closed option list (or with hundreds of country-specific codes): shown in profiles, never asked.
OPEN_ITEMS = {"Q261", "Q262", "Q266", "Q267", "Q268", "Q270", "Q272", "Q274"}
NUMERIC_ITEMS = {"Q261", "Q262", "Q270", "Q274"}
# Options that are per country: codes are <country numeric code> * 1000 + n, plus a few shared codes < 1000.
COUNTRY_SPECIFIC = {"Q223", "Q290"}
# The codebook cuts option labels at this many characters (country prefix included): 30 party and ethnic-group
# labels of Q1-Q290 are exactly this long, and a country file may carry the whole label (labels.py matches it).
LABEL_CUT = 60

# question_metadata.json lacks these items; categories follow the WVS-7 questionnaire sections.
SECTIONS = [
    (1, 45, "Social Values, Norms, Stereotypes"),
    (46, 56, "Happiness and Wellbeing"),
    (57, 105, "Social Capital, Trust and Organizational Membership"),
    (106, 111, "Economic Values"),
    (112, 120, "Perceptions of Corruption"),
    (121, 130, "Perceptions of Migration"),
    (131, 151, "Perceptions of Security"),
    (152, 157, "Postmaterialist Index"),
    (158, 163, "Perceptions about Science and Technology"),
    (164, 175, "Religious Values"),
    (176, 198, "Ethical Values"),
    (199, 234, "Political Interest and Political Participation"),
    (235, 259, "Political Culture and Political Regimes"),
    (260, 290, "Demographic and Socioeconomic Variables"),
]
# Scale type for items question_metadata.json lacks: knowledge quizzes, first/second choices and
# party/attitude lists have no order.
NOMINAL_EXTRA = {"Q42", "Q91", "Q92", "Q93", "Q152", "Q153", "Q154", "Q155", "Q156", "Q157", "Q223"}

# questions.json puts the wording of Q94-Q105 in another order than the variables (the codebook, which the data
# follows, says Q95 is sport or recreation while questions.json asks about labor unions): the catalog uses
# statements.toml's [membership], in the codebook's order.


@dataclass(frozen=True)
class Question:
    code: str
    label: str  # short label from the codebook
    text: str  # questionnaire wording
    options: dict[int, str]  # canonical code -> label, in scale order; empty for free numbers (age, year)
    category: str
    ordinal: bool
    kind: str  # "value" or "demographic"
    open: bool = False  # free number / huge code list: profile-only
    country_options: dict[str, dict[int, str]] = field(default_factory=dict)  # for COUNTRY_SPECIFIC items
    missing: dict[int, str] = field(default_factory=dict)  # negative codebook codes: Don't know, No answer, ...
    # answer code -> second-person sentence, rendered at build: every option (per-country ones included) or, for
    # a free number, every plausible value
    statements: dict[int, str] = field(default_factory=dict)
    # codes whose codebook label is exactly LABEL_CUT long, so possibly the start of a longer label
    cut: list[int] = field(default_factory=list)

    @property
    def number(self) -> int:
        return int(self.code[1:])

    def options_for(self, country: str | None = None) -> dict[int, str]:
        """The options a respondent from `country` (ISO alpha-3) could choose."""
        if self.code in COUNTRY_SPECIFIC and country:
            return self.country_options.get(country, self.options)
        return self.options

    def statement(self, answer: int) -> str:
        """The answer as a second-person sentence ("Family is very important in your life.").

        Raises ValueError if `answer` is not one of the question's answer codes (or, for a free number such as the
        year of birth, not a plausible value)."""
        try:  # data frames hand over 5.0 or numpy integers; the sentence must say "5"
            code = int(answer)
        except (TypeError, ValueError):
            raise ValueError(f"{self.code}: {answer!r} is not an answer code") from None
        if code != answer:
            raise ValueError(f"{self.code}: {answer!r} is not an answer code")
        if code in self.statements:
            return self.statements[code]
        if self.code in NUMERIC_ITEMS and self.statements:
            low, high = min(self.statements), max(self.statements)
            raise ValueError(f"{self.code}: {code} is not a plausible answer ({self.label}: {low}-{high})")
        raise ValueError(f"{self.code}: {code!r} is not an answer code of this question ({self.label})")

    def position(self, answer: int, country: str | None = None) -> int | None:
        """0-based rank of an answer on the scale (for MAE and distributions)."""
        codes = list(self.options_for(country))
        return codes.index(answer) if answer in codes else None


def clean_label(label: str) -> str:
    """Strip codebook artefacts: "25.- 7 or more children" -> "7 or more children", double spaces."""
    label = re.sub(r"^\d+\.-\s*", "", label)
    return re.sub(r"\s+", " ", label).strip()


class Catalog:
    """All questions by code, in questionnaire order."""

    def __init__(
        self,
        questions: list[Question],
        countries: dict[str, str] | None = None,
        country_phrases: dict[str, str] | None = None,
    ):
        self.questions = {q.code: q for q in questions}
        self.countries = countries or {}  # ISO alpha-3 -> name
        if country_phrases is None:  # a new catalog (or one saved without them): rendered from the names
            country_phrases = {a3: statements.country_phrase(name) for a3, name in self.countries.items()}
        self.country_phrases = country_phrases  # ISO alpha-3 -> the name as it reads in a sentence

    def country_name(self, alpha3: str) -> str:
        return self.countries.get(alpha3, alpha3)

    def country_phrase(self, alpha3: str) -> str:
        """The country as it reads in a sentence ("the United States")."""
        return self.country_phrases.get(alpha3, alpha3)

    def __getitem__(self, code: str) -> Question:
        try:
            return self.questions[code]
        except KeyError:
            raise UnknownKeyError(f"unknown question code {code!r} (expected Q1-Q290)") from None

    def __contains__(self, code: str) -> bool:
        return code in self.questions

    def __iter__(self) -> Iterator[Question]:
        return iter(self.questions.values())

    def __len__(self) -> int:
        return len(self.questions)

    @property
    def codes(self) -> list[str]:
        return list(self.questions)

    @classmethod
    def from_wvs(cls, wvs_dir: str | Path) -> Catalog:
        """Build from the WVS-7 folder (codebook.json, questions.json, question_metadata.json)."""
        wvs_dir = Path(wvs_dir)
        codebook = _read_json(wvs_dir / "codebook.json")
        wording = _read_json(wvs_dir / "questions.json")
        meta = _read_json(wvs_dir / "question_metadata.json")
        countries = codebook.get("B_COUNTRY", {}).get("choices", {})
        alpha = codebook.get("B_COUNTRY_ALPHA", {}).get("choices", {})
        numeric_by_alpha = _numeric_country_codes(countries, alpha)
        alpha = {a3: alpha.get(a3) or countries[str(num)] for a3, num in numeric_by_alpha.items()} | alpha
        questions = []
        for n in range(1, 291):
            code = f"Q{n}"
            if code not in codebook:
                raise ValueSimError(f"{wvs_dir / 'codebook.json'}: no entry for {code}")
            entry = codebook[code]
            choices = {int(c): clean_label(lab) for c, lab in entry["choices"].items() if int(c) >= 0}
            options = dict(sorted(choices.items()))
            country_options: dict[str, dict[int, str]] = {}
            if code in COUNTRY_SPECIFIC:
                shared = {c: lab for c, lab in options.items() if c < 1000}
                for a3, num in numeric_by_alpha.items():
                    own = {c: re.sub(r"^[A-Z]{2,4}:\s*", "", lab) for c, lab in options.items() if c // 1000 == num}
                    if own:
                        country_options[a3] = {**own, **shared}
                options = shared
            m = meta.get(code, {})
            text = wording.get(code, {}).get("question_text") or entry["question"]
            if code in statements.MEMBERSHIP:
                org = statements.MEMBERSHIP[code]
                text = f"Are you an active member, an inactive member, or not a member of {org}?"
            question = Question(
                code=code,
                label=clean_label(entry["question"]),
                text=clean_label(text),
                options=options,  # open items keep their code labels (country names, languages) for statements
                category=m.get("category") or _section(n),
                ordinal=(m.get("answer_data_type") == "ordinal") if m else code not in NOMINAL_EXTRA,
                kind="value" if n in VALUE_RANGE else "demographic",
                open=code in OPEN_ITEMS,
                country_options=country_options,
                missing={int(c): lab for c, lab in entry["choices"].items() if int(c) < 0},
                # measured on the codebook's own label: the prefix and spacing are gone from the catalog's
                cut=sorted(int(c) for c, lab in entry["choices"].items() if int(c) >= 0 and len(lab) == LABEL_CUT),
            )
            questions.append(with_statements(question, wvs_dir / "codebook.json"))
        return cls(questions, countries=dict(alpha))

    def save(self, path: str | Path) -> None:
        data = {
            "countries": self.countries,
            "country_phrases": self.country_phrases,
            "questions": [asdict(q) for q in self],
        }
        Path(path).write_text(files.strict_json(data, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        data = _read_json(Path(path))
        questions = []
        for r in data["questions"]:
            r["options"] = {int(k): v for k, v in r["options"].items()}
            r["country_options"] = {c: {int(k): v for k, v in o.items()} for c, o in r["country_options"].items()}
            r["missing"] = {int(k): v for k, v in r["missing"].items()}
            if "statements" not in r:  # saved by an older valuesim: render them now (rebuilding stores them)
                questions.append(with_statements(Question(**r), Path(path)))
                continue
            r["statements"] = {int(k): v for k, v in r["statements"].items()}
            questions.append(Question(**r))
        return cls(questions, countries=data["countries"], country_phrases=data.get("country_phrases"))


def with_statements(question: Question, source: Path) -> Question:
    """The question with every answer's statement rendered; a label no statement table knows is an error naming
    `source` (the codebook it came from)."""
    options = dict(question.options)
    for country_options in question.country_options.values():
        options.update(country_options)  # per-country codes (<country> * 1000 + n) are unique
    try:
        rendered = statements.statements_for(question.code, options, question.text)
    except ValueError as e:
        raise ValueSimError(f"{source}: {e}") from None
    return replace(question, statements=rendered)


def _section(n: int) -> str:
    return next(name for lo, hi, name in SECTIONS if lo <= n <= hi)


def _numeric_country_codes(numeric: dict[str, str], alpha: dict[str, str]) -> dict[str, int]:
    """Codebook alpha-3 -> the numeric code its per-country options carry (<numeric> * 1000 + n).

    ISO 3166 first (pycountry: "RUS" is 643 whatever the codebook calls Russia), then the codebook's own names for
    the codes ISO does not know (WVS writes Morocco "MOR" and has Northern Ireland "NIR" = 909).
    """
    import pycountry

    known = {int(code) for code in numeric if code.lstrip("-").isdigit() and int(code) > 0}
    by_name = {name: int(code) for code, name in numeric.items() if code.lstrip("-").isdigit() and int(code) > 0}
    out = {}
    for a3, name in alpha.items():
        iso = pycountry.countries.get(alpha_3=a3)
        if iso is not None and int(iso.numeric) in known:
            out[a3] = int(iso.numeric)
        elif name in by_name:
            out[a3] = by_name[name]
    # Countries the numeric list has and the alpha list lacks (Hong Kong 344, Sweden 752 in WVS-7 v6.0)
    for code in known - set(out.values()):
        iso = pycountry.countries.get(numeric=f"{code:03d}")
        if iso is not None and iso.alpha_3 not in out:
            out[iso.alpha_3] = code
    return out


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise NotFoundError(f"{path}: not found (is this a WVS-7 folder? see README 'Data')")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueSimError(f"{path}: not valid JSON ({e})") from None
