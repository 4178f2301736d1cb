"""Every WVS-7 answer renders to a natural second-person sentence (valuesim/data/statements.py and .toml), and the
catalog stores the sentences, rendered once when it is built.

The catalog is conftest's: the real codebook when it is there, else the synthetic one (whose options come from these
same tables). Sentences of the real codebook's own labels and parties are marked `real_data`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from valuesim.data import statements
from valuesim.data.benchmark import make_person
from valuesim.data.catalog import Catalog, Question
from valuesim.errors import ValueSimError

YEARS = [1925, 1971, 2004]
AGES = [18, 46, 97]
real_data = pytest.mark.real_data


def all_answers(question: Question) -> dict[int, str]:
    """Every answer code with its label: shared and per-country options, or sample numbers for free items."""
    if question.code == "Q261":
        return {y: str(y) for y in YEARS}
    if question.code == "Q262":
        return {a: str(a) for a in AGES}
    options = dict(question.options)
    for country_options in question.country_options.values():
        options.update(country_options)
    return options


@pytest.fixture(scope="module")
def rendered(catalog: Catalog, monkeypatch_module) -> dict[str, dict[int, str]]:
    """All statements rendered again, with the generic fallback made to fail: no question may need it."""

    def no_fallback(code: str, text: str, label: str) -> str:
        raise AssertionError(f"{code} ({label!r}) fell back to the generic sentence")

    monkeypatch_module.setattr(statements, "_fallback", no_fallback)
    return {q.code: statements.statements_for(q.code, all_answers(q), q.text) for q in catalog}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_every_question_and_option_renders(catalog: Catalog, rendered: dict[str, dict[int, str]]) -> None:
    assert len(rendered) == 290
    assert all(rendered[q.code] for q in catalog)  # every question has answers, all rendered without the fallback
    assert all(q.statements == rendered[q.code] for q in catalog)  # what the catalog stored at build
    for code in ("Q223", "Q290"):  # per-country lists included
        assert set(rendered[code]) >= {c for options in catalog[code].country_options.values() for c in options}


@real_data  # the real codebook's size
def test_real_codebook_renders_every_option(rendered: dict[str, dict[int, str]]) -> None:
    assert sum(len(v) for v in rendered.values()) > 3000
    assert len(rendered["Q223"]) > 800 and len(rendered["Q290"]) > 300


def test_statements_are_well_formed(rendered: dict[str, dict[int, str]]) -> None:
    problems = []
    for code, by_answer in rendered.items():
        for answer, s in by_answer.items():
            checks = {
                "empty": bool(s.strip()),
                "capitalized": s[:1].isupper(),
                "ends with a period": s.endswith("."),
                "second person": re.search(r"\byour?\b", s, re.IGNORECASE) is not None,
                "no template leftovers": "{" not in s and "}" not in s,
                "no codebook artefacts": not re.search(r"\(for example|ISCED|\bstep\b|NIRL:|\[|\]|--|´|\s{2}", s),
                "no double period": ".." not in s,
            }
            problems += [f"{code}={answer}: {name}: {s!r}" for name, ok in checks.items() if not ok]
    assert not problems, "\n".join(problems[:30])


def test_options_of_a_question_give_different_statements(catalog: Catalog, rendered: dict[str, dict[int, str]]) -> None:
    # What one respondent chooses from must read differently: a question's options, or for the party and
    # ethnic-group items one country's list (plus the shared codes). Serbia's list has the same party twice,
    # once misspelt "Serbi", under two codes.
    allowed = {"Democratic Party of Serbi", "Democratic Party of Serbia"}
    for q in catalog:
        choice_lists = [q.options_for(c) for c in q.country_options] or [all_answers(q)]
        for options in choice_lists:
            labels_by_statement: dict[str, set[str]] = {}
            for answer, label in options.items():
                labels_by_statement.setdefault(rendered[q.code][answer], set()).add(label)
            merged = [labels for labels in labels_by_statement.values() if len(labels) > 1]
            assert all(labels == allowed for labels in merged), f"{q.code}: {merged}"


def test_every_question_has_exactly_one_table(catalog: Catalog) -> None:
    tables = {
        "groups": set(statements.FORMS),
        "sentences": set(statements.SENTENCES),
        "templates": set(statements.TEMPLATES),
        "special": set(statements.SPECIAL),
        "numbers": set(statements.NUMBERS) - set(statements.SENTENCES),  # counts use SENTENCES for codes 0-7
    }
    for q in catalog:
        owners = [name for name, codes in tables.items() if q.code in codes]
        assert len(owners) == 1, f"{q.code}: covered by {owners or 'no table'}"
    sentence_codes = {code: set(answers) for code, answers in statements.SENTENCES.items()}
    for code, answers in sentence_codes.items():
        assert answers == set(catalog[code].options), f"{code}: SENTENCES codes differ from the catalog's"


@pytest.mark.parametrize(
    ("code", "answer", "expected"),
    [
        ("Q1", 1, "Family is very important in your life."),
        ("Q2", 4, "Friends are not at all important in your life."),
        ("Q7", 1, "You consider good manners an important quality for children to learn."),
        ("Q7", 2, "You do not name good manners as an especially important quality for children to learn."),
        ("Q18", 1, "You would not like to have drug addicts as neighbors."),
        ("Q18", 2, "You would not mind having drug addicts as neighbors."),
        ("Q28", 1, "You strongly agree that when a mother works for pay, the children suffer."),
        (
            "Q106",
            4,
            "On a scale from 1 (incomes should be made more equal) to 10 (there should be greater incentives for"
            " individual effort), you place yourself at 4.",
        ),
        (
            "Q164",
            10,
            "On a scale from 1 (not at all important) to 10 (very important), you rate the importance of God in"
            " your life at 10.",
        ),
        (
            "Q164",
            5,
            "On a scale from 1 (not at all important) to 10 (very important), you rate the importance of God in"
            " your life at 5.",
        ),
        ("Q260", 1, "You are male."),
        ("Q260", 2, "You are female."),
        ("Q261", 1971, "You were born in 1971."),
        ("Q262", 46, "You are 46 years old."),
        pytest.param(
            "Q275", 6, "Your highest level of education is a bachelor's degree or equivalent.", marks=real_data
        ),
        ("Q289", 0, "You belong to no religious denomination."),
        (
            "Q288",
            8,
            "On a scale from 1 (the lowest income group in your country) to 10 (the highest income group), you"
            " place your household's income at 8.",
        ),
        pytest.param(
            "Q223",
            840002,
            "You would vote for the Democratic Party if there were a national election tomorrow.",
            marks=real_data,
        ),
        ("Q223", 2, "You would not vote if there were a national election tomorrow."),
        pytest.param("Q290", 840001, "You are a white, non-Hispanic person.", marks=real_data),
        ("Q266", 840, "You were born in the United States."),
        ("Q274", 2, "You have two children."),
    ],
)
def test_expected_sentences(catalog: Catalog, code: str, answer: int, expected: str) -> None:
    assert catalog[code].statement(answer) == expected


@real_data  # the real codebook's labels
def test_codebook_artefacts_are_cleaned(catalog: Catalog) -> None:
    occupation = catalog["Q281"].statement(1)
    assert "(for example" not in occupation and "doctor" in occupation
    assert "NIRL" not in catalog["Q223"].statement(909004)  # "NIRL: Green Party"
    kenya = catalog["Q223"].statement(404001)  # "Amani National Congress ANC Amani National Congress"
    assert kenya.count("Amani") == 1


@pytest.mark.parametrize(("code", "answer"), [("Q1", 7), ("Q1", -1), ("Q223", 999999), ("Q290", 5), ("Q274", 99)])
def test_unknown_answer_raises(catalog: Catalog, code: str, answer: int) -> None:
    with pytest.raises(ValueError, match=rf"{code}\b.*{answer}"):
        catalog[code].statement(answer)


def test_integral_floats_read_as_codes(catalog: Catalog) -> None:
    assert catalog["Q164"].statement(5.0) == catalog["Q164"].statement(5)
    with pytest.raises(ValueError, match="Q164"):
        catalog["Q164"].statement(5.5)
    with pytest.raises(ValueError, match="Q164"):
        catalog["Q164"].statement(None)


@pytest.mark.parametrize(("code", "answer"), [("Q261", 46), ("Q261", -1), ("Q262", 1971), ("Q262", -2)])
def test_implausible_numbers_raise(catalog: Catalog, code: str, answer: int) -> None:
    with pytest.raises(ValueError, match=rf"{code}: {answer} is not a plausible answer \(.*: \d+-\d+\)"):
        catalog[code].statement(answer)


def test_saved_catalog_holds_the_statements(catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog.save(tmp_path / "catalog.json")

    def no_rendering(*args, **kwargs):
        raise AssertionError("a saved catalog was rendered again")

    monkeypatch.setattr(statements, "statements_for", no_rendering)
    monkeypatch.setattr(statements, "country_phrase", no_rendering)
    loaded = Catalog.load(tmp_path / "catalog.json")
    assert all(loaded[q.code].statements == q.statements for q in catalog)
    assert loaded.country_phrases == catalog.country_phrases and loaded.country_phrase("USA") == "the United States"
    for code, answer in [("Q1", 1), ("Q223", 840002), ("Q290", 840001), ("Q106", 4), ("Q261", 1971)]:
        assert loaded[code].statement(answer) == catalog[code].statement(answer)


def test_catalog_saved_without_statements_renders_them_on_load(catalog: Catalog, tmp_path: Path) -> None:
    """A benchmark built before the catalog stored statements keeps working until it is rebuilt."""
    catalog.save(tmp_path / "catalog.json")
    data = json.loads((tmp_path / "catalog.json").read_text())
    del data["country_phrases"]
    for q in data["questions"]:
        del q["statements"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = Catalog.load(tmp_path / "old.json")
    assert all(old[q.code].statements == q.statements for q in catalog)
    assert old.country_phrases == catalog.country_phrases


def test_a_label_without_a_sentence_stops_the_build(synthetic_wvs: Path, tmp_path: Path) -> None:
    for name in ("codebook.json", "questions.json", "question_metadata.json"):
        shutil.copy(synthetic_wvs / name, tmp_path / name)
    codebook = json.loads((tmp_path / "codebook.json").read_text())
    codebook["Q1"]["choices"]["1"] = "Extremely important"
    (tmp_path / "codebook.json").write_text(json.dumps(codebook))
    with pytest.raises(ValueSimError, match=r"codebook.json: Q1: no sentence for the option 'Extremely important'"):
        Catalog.from_wvs(tmp_path)


def test_statements_module_does_not_import_the_catalog() -> None:
    """The renderer knows question codes and labels, not the catalog: catalog.py -> statements.py, one way."""
    code = "import sys, valuesim.data.statements; print('valuesim.data.catalog' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# Snapshot of the rendered text, one or more answers per table kind (group forms, per-answer sentences, templates
# with reworded options, free numbers, name lists), taken from the renderer's output before the tables moved to
# statements.toml: the statements are prompt text, so a change here changes every prompt.
SNAPSHOT = [
    ("Q8", 1, "You consider independence an important quality for children to learn."),
    ("Q27", 2, "You agree that one of your main goals in life has been to make your parents proud."),
    ("Q43", 3, "You think it would be a bad thing if less importance were placed on work in people's lives."),
    ("Q51", 2, "In the last 12 months, you or your family have sometimes gone without enough food to eat."),
    ("Q58", 4, "You do not trust your family at all."),
    ("Q64", 4, "You have no confidence at all in the churches."),
    ("Q105", 0, "You are not a member of any other organization."),
    ("Q113", 1, "You believe that no state authorities are involved in corruption."),
    ("Q132", 3, "Robberies are not frequent in your neighborhood."),
    ("Q139", 2, "You have not avoided carrying much money for reasons of security."),
    ("Q142", 2, "You worry a good deal about losing your job or not finding a job."),
    ("Q165", 2, "You do not believe in God."),
    (
        "Q158",
        3,
        'On a scale from 1 (completely disagree) to 10 (completely agree), you rate the statement "science and'
        ' technology are making our lives healthier, easier, and more comfortable" at 3.',
    ),
    (
        "Q177",
        1,
        "On a scale from 1 (never justifiable) to 10 (always justifiable), you rate claiming government benefits to"
        " which you are not entitled at 1.",
    ),
    (
        "Q196",
        4,
        "You think the government definitely should not have the right to keep people under video surveillance in"
        " public areas.",
    ),
    ("Q201", 5, "You never get information from a daily newspaper."),
    ("Q209", 2, "You have not signed a petition, but you might."),
    ("Q221", 4, "You are not allowed to vote in local elections."),
    ("Q224", 3, "In your view, it is not often the case that votes are counted fairly in your country's elections."),
    (
        "Q241",
        7,
        "On a scale from 1 (not an essential characteristic of democracy) to 10 (an essential characteristic of"
        ' democracy), you rate "governments tax the rich and subsidize the poor" at 7.',
    ),
    ("Q255", 4, "You do not feel close at all to your village, town or city."),
    ("Q280", 3, "Your spouse is self-employed."),
    ("Q279", 5, "You are a homemaker, not otherwise employed."),
    (
        "Q48",
        7,
        "On a scale from 1 (no choice at all) to 10 (a great deal of choice), you rate the freedom of choice and"
        " control you have over the way your life turns out at 7.",
    ),
    ("Q56", 3, "Your standard of living is about the same as your parents' was at your age."),
    ("Q111", 3, "Asked whether the environment or economic growth should have priority, you give some other answer."),
    ("Q286", 3, "During the past year, your family spent some of its savings."),
    (
        "Q42",
        1,
        "You believe that the entire way society is organized must be radically changed by revolutionary action.",
    ),
    ("Q121", 1, "You think the impact of immigrants on the development of your country is very bad."),
    (
        "Q152",
        2,
        "You think the most important goal for your country over the next ten years should be strong defence forces.",
    ),
    (
        "Q153",
        3,
        "You think the second most important goal for your country over the next ten years should be seeing that"
        " people have more say about how things are done at their jobs and in their communities.",
    ),
    ("Q173", 2, "You describe yourself as a person who is not religious."),
    ("Q284", 1, "You work (or worked) for a government or public institution."),
    ("Q93", 3, "You believe that Amnesty International deals with the destruction of historic monuments."),
    ("Q171", 7, "Apart from weddings and funerals, you never or practically never attend religious services."),
    ("Q289", 3, "You are an Orthodox Christian (Russian, Greek or another Orthodox church)."),
    ("Q254", 5, "You do not have the nationality of the country you live in."),
    ("Q266", 392, "You were born in Japan."),
    ("Q267", 170, "Your mother was born in Colombia."),
    ("Q268", 840, "Your father was born in the United States."),
    ("Q270", 1, "You live alone."),
    ("Q270", 3, "Your household has three members, including yourself."),
    ("Q270", 12, "Your household has 12 members, including yourself."),
    ("Q274", 12, "You have 12 children."),
    ("Q262", 0, "You are 0 years old."),
    ("Q261", 1850, "You were born in 1850."),
    ("Q261", 2100, "You were born in 2100."),
    ("Q223", 7, "You would cast a null (spoiled) vote if there were a national election tomorrow."),
]
REAL_SNAPSHOT = [
    ("Q94", 2, "You are an active member of a church or religious organization."),
    ("Q275", 0, "Your highest level of education is early childhood education or none at all."),
    ("Q276", 0, "Your spouse's highest level of education is early childhood education or none at all."),
    (
        "Q283",
        1,
        "When you were 14 years old, your father worked in a professional or technical occupation, for example as a"
        " doctor, teacher, engineer, artist, accountant or nurse.",
    ),
    (
        "Q235",
        4,
        "You think having a strong leader who does not have to bother with parliament and elections would be a very"
        " bad way of governing your country.",
    ),
    ("Q241", 0, "You think it is against democracy that governments tax the rich and subsidize the poor."),
    ("Q91", 1, "You believe that France is not a permanent member of the United Nations Security Council."),
    ("Q92", 2, "You believe that the headquarters of the International Monetary Fund (IMF) are in London."),
    ("Q46", 1, "Taking all things together, you are very happy."),
    (
        "Q118",
        1,
        "You think that ordinary people like you never have to pay a bribe, give a gift or do a favor to local"
        " officials and service providers in order to get the services they need.",
    ),
    ("Q266", 203, "You were born in the Czech Republic."),
    ("Q266", 278, "You were born in the former German Democratic Republic (East Germany)."),
    ("Q266", 44, "You were born in the Bahamas."),
    ("Q272", 2870, "At home, you normally speak Mandarin Chinese."),
    ("Q272", 3490, "At home, you normally speak Persian (Farsi or Dari)."),
    ("Q290", 124001, "You are a white (Caucasian) person."),
    ("Q290", 398033, "You are an Uzbek person."),
    (
        "Q223",
        404001,
        "You would vote for the Amani National Congress (ANC) if there were a national election tomorrow.",
    ),
    ("Q223", 100018, 'You would vote for "Attack" if there were a national election tomorrow.'),
    ("Q223", 32009, 'You would vote for "Together for Change" (Macri) if there were a national election tomorrow.'),
    (
        "Q223",
        807018,
        "You would vote for the Internal Macedonian Revolutionary Organization - Democratic Party for Macedonian"
        " National Unity (VMRO-DPMNE) if there were a national election tomorrow.",
    ),
]


@pytest.mark.parametrize(("code", "answer", "expected"), SNAPSHOT)
def test_snapshot(catalog: Catalog, code: str, answer: int, expected: str) -> None:
    assert catalog[code].statement(answer) == expected


@real_data  # the real codebook's own labels
@pytest.mark.parametrize(("code", "answer", "expected"), REAL_SNAPSHOT)
def test_real_snapshot(catalog: Catalog, code: str, answer: int, expected: str) -> None:
    assert catalog[code].statement(answer) == expected


def test_country_of_residence(catalog: Catalog) -> None:
    assert make_person(catalog, "USA", [], [])["demographics"] == ["You live in the United States."]
    assert make_person(catalog, "JPN", [], [])["demographics"] == ["You live in Japan."]


@real_data
@pytest.mark.parametrize(("country", "expected"), [("NLD", "the Netherlands"), ("PHL", "the Philippines")])
def test_real_country_of_residence(catalog: Catalog, country: str, expected: str) -> None:
    assert make_person(catalog, country, [], [])["demographics"] == [f"You live in {expected}."]


def test_statement_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "statements.toml"
    bad.write_text('[membership]\nQ94 = "a church\n')
    with pytest.raises(ValueSimError, match=rf"{re.escape(str(bad))}: not valid TOML"):
        statements.load(bad)
    bad.write_text('[membership]\nQ94 = "a church"\n')
    with pytest.raises(ValueSimError, match=r"statements.toml: missing tables \['groups'"):
        statements.load(bad)
    with pytest.raises(ValueSimError, match="not found"):
        statements.load(tmp_path / "absent.toml")
