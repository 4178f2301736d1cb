"""Person files (valuesim.data.person) and the `valuesim simulate` command with a saved program and a DummyLM."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dspy
import pytest
from helpers import ScriptedLM, use, user_message
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.data.person import PersonFileError, load_person, parse_person
from valuesim.programs.saved import save_program
from valuesim.programs.valuesim import ValueSim

PERSON = {
    "country": "USA",
    "answers": {
        "Q260": "Female",
        "Q262": 34,
        "Q275": "Bachelor or equivalent",
        "Q1": "Very important",
        "Q164": 8,
        "Q46": 2,
    },
}

# ---------------------------------------------------------------------------------------------------------------
# parse_person


def test_parse_person_codes_and_labels(catalog) -> None:
    person = parse_person(PERSON, catalog, "anna.json")
    # "Bachelor or equivalent" names the option "Bachelor or equivalent (ISCED 6)" (6 in the real codebook)
    bachelor = next(c for c, label in catalog["Q275"].options.items() if label.lower().startswith("bachelor"))
    assert person["country"] == "USA" and person["person_id"] == "anna"
    assert person["known"] == {"Q260": 2, "Q262": 34, "Q275": bachelor, "Q1": 1, "Q164": 8, "Q46": 2}
    assert person["demographics"][0] == "You live in the United States."
    demographics = (("Q260", 2), ("Q262", 34), ("Q275", bachelor))
    assert person["demographics"][1:] == [catalog[q].statement(a) for q, a in demographics]
    assert person["profile"] == [catalog[q].statement(a) for q, a in (("Q1", 1), ("Q164", 8), ("Q46", 2))]


@pytest.mark.parametrize(
    "label",
    [
        "Very important",
        "very important",
        "VERY IMPORTANT",
        " Very  important. ",
        "very important!",
        "Very-important",
        1,
        1.0,
        "1",
    ],
)
def test_parse_person_label_variants(catalog, label) -> None:
    person = parse_person({"country": "usa", "answers": {"Q1": label}}, catalog)
    assert person["known"] == {"Q1": 1} and person["country"] == "USA"


def test_parse_person_numbers_and_ids(catalog) -> None:
    person = parse_person({"id": 7, "country": "JPN", "answers": {"Q262": "61", "Q261": 1962}}, catalog)
    assert person["known"] == {"Q262": 61, "Q261": 1962} and person["person_id"] == "7"
    assert parse_person({"country": "JPN"}, catalog)["known"] == {}  # nothing known is allowed


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"country": "USA", "answers": {"Q999": 1}}, ["answers.Q999", "unknown question code"]),
        ({"country": "USA", "answers": {"Q1": 5}}, ["answers.Q1", "5 is not an option of Q1", "1 = Very important"]),
        ({"country": "USA", "answers": {"Q1": "Extremely important"}}, ["answers.Q1", "'Extremely important'"]),
        ({"country": "USA", "answers": {"Q1": [1]}}, ["answers.Q1", "expected a number or an option label"]),
        ({"country": "USA", "answers": {"Q1": True}}, ["answers.Q1", "expected a number or an option label"]),
        ({"country": "USA", "answers": {"Q1": None}}, ["answers.Q1", "expected a number or an option label"]),
        ({"country": "USA", "answers": {"Q262": "thirty"}}, ["answers.Q262", "number", "'thirty'"]),
        ({"country": "USA", "answers": {"Q1": "important"}}, ["answers.Q1", "is not an option"]),
        ({"answers": {"Q1": 1}}, ["field 'country'", "ISO alpha-3"]),
        ({"country": 840, "answers": {"Q1": 1}}, ["field 'country'"]),
        ({"country": "XYZ", "answers": {"Q1": 1}}, ["field 'country'", "unknown country code 'XYZ'"]),
        ({"country": "USA", "answers": [1]}, ["field 'answers'"]),
        ([{"country": "USA"}], ["expected a JSON object"]),
    ],
    ids=[
        "unknown-code",
        "code-outside-options",
        "label-outside-options",
        "list",
        "bool",
        "null",
        "age-not-a-number",
        "partial-label",
        "no-country",
        "country-not-text",
        "unknown-country",
        "answers-not-object",
        "not-an-object",
    ],
)
def test_parse_person_errors_name_the_field(catalog, data, fragments: list[str]) -> None:
    with pytest.raises(PersonFileError) as err:
        parse_person(data, catalog, "person.json")
    message = str(err.value)
    assert message.startswith("person.json: ")
    for fragment in fragments:
        assert fragment in message


def test_load_person_file_errors(catalog, tmp_path: Path) -> None:
    with pytest.raises(PersonFileError, match="not found"):
        load_person(tmp_path / "nobody.json", catalog)
    broken = tmp_path / "broken.json"
    broken.write_text('{"country": "USA",')
    with pytest.raises(PersonFileError, match=r"broken\.json: not valid JSON"):
        load_person(broken, catalog)
    good = tmp_path / "anna.json"
    good.write_text(json.dumps(PERSON))
    assert load_person(good, catalog)["person_id"] == "anna"


# ---------------------------------------------------------------------------------------------------------------
# valuesim simulate

MARKER = "Remember the stubborn streak in your story."


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def options_in(messages: list[dict]) -> list[str]:
    return list(json.loads(re.search(r"\[\[ ## options ## \]\]\n(\{.*\})", user_message(messages)).group(1)))


@pytest.fixture
def saved_valuesim(tmp_path: Path) -> Path:
    """A saved ValueSim whose cognitive instructions carry MARKER, so a prompt shows the folder was loaded."""
    program = ValueSim(backstory_words=80)
    sig = program.cognitive.signature
    program.cognitive.signature = sig.with_instructions(f"{sig.instructions} {MARKER}")
    return save_program(program, "valuesim", tmp_path / "program", settings={"backstory_words": 80})


@pytest.fixture
def person_file(tmp_path: Path) -> Path:
    path = tmp_path / "anna.json"
    path.write_text(json.dumps(PERSON))
    return path


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> ScriptedLM:
    """`valuesim.run.runner.configure_lm` (what the CLI calls) configures a ScriptedLM: views disagree (first, last,
    first option), the coordinator picks the second option."""

    def view(pick):
        return lambda m: {"analysis": f"picked {pick}", "answer": options_in(m)[pick]}

    lm = ScriptedLM(
        {
            "write": {"backstory": "You grew up in Ohio and keep your faith."},
            "cognitive": view(0),
            "affective": view(-1),
            "behavioral": view(0),
            "coordinator": lambda m: {"answer": options_in(m)[1]},
        }
    )
    requested = []

    def configure_lm(model: str, api_base: str | None = None, *_, **__) -> dict:
        requested.append(model)
        use(lm)
        return {"model": f"dummy/{model}", "engine": "scripted"}

    monkeypatch.setattr("valuesim.run.runner.configure_lm", configure_lm)
    lm.requested = requested
    return lm


def one_line_error(result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.stdout)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    err = result.stderr.strip()
    assert err.startswith("Error:") and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert result.stdout == ""
    return err


def test_simulate_json_with_a_saved_program(bench_small, saved_valuesim, person_file, scripted, catalog) -> None:
    result = invoke(
        "simulate",
        "--person",
        person_file,
        "--question",
        "Q46",
        "--program",
        saved_valuesim,
        "--data",
        bench_small,
        "--lm",
        "tiny",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)  # exactly one JSON object on stdout
    options = {str(c): label for c, label in catalog["Q46"].options.items()}
    assert out["question"] == "Q46" and out["question_text"] == catalog["Q46"].text
    assert out["options"] == options
    assert out["answer"] == "2" and out["answer_label"] == options["2"] and out["valid"] is True
    assert out["coordinated"] is True
    assert (out["cognitive_answer"], out["affective_answer"], out["behavioral_answer"]) == ("1", "4", "1")
    assert out["affective_analysis"] == "picked -1"
    assert out["backstory"] == "You grew up in Ohio and keep your faith."
    assert out["lm"] == "dummy/tiny" and scripted.requested == ["tiny"]
    # the saved folder was loaded: its instructions and settings are in the prompts
    assert scripted.names() == ["write", "cognitive", "affective", "behavioral", "coordinator"]
    cognitive = next(m for name, m in scripted.calls if name == "cognitive")
    assert MARKER in cognitive[0]["content"]
    (write,) = scripted.users("write")
    assert "[[ ## word_budget ## ]]\n80" in write  # the saved settings
    # the person's answers reached the backstory writer as statements
    assert catalog["Q1"].statement(1) in write and catalog["Q260"].statement(2) in write


def test_simulate_text_output(bench_small, saved_valuesim, person_file, scripted, catalog) -> None:
    result = invoke(
        "simulate", "--person", person_file, "--question", "Q46", "--program", saved_valuesim, "--data", bench_small
    )
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    answer = f"Answer: 2 ({catalog['Q46'].options[2]})"  # "Quite happy" in the real codebook
    for fragment in ("Backstory", "You grew up in Ohio", "Cognitive: 1", "Affective: 4", answer):
        assert fragment in text


def test_simulate_program_by_name(bench_small, person_file, catalog) -> None:
    """A program by name is built fresh (not the saved one); --lm dummy answers each view's first option."""
    args = ["--person", person_file, "--question", "Q1", "--program", "valuesim", "--data", bench_small]
    result = invoke("simulate", *args, "--lm", "dummy", "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    first = str(next(iter(catalog["Q1"].options)))
    assert out["valid"] is True and out["answer"] == first and out["lm"] == "dummy"
    assert (out["cognitive_answer"], out["affective_answer"], out["behavioral_answer"]) == (first, first, first)
    assert out["coordinated"] is False  # the views agree, so no coordinator call
    prompts = [str(h["messages"]) for h in dspy.settings.lm.history]
    assert len(prompts) == 4 and not any(MARKER in p for p in prompts)  # writer + 3 views, no saved instructions


def test_simulate_unknown_question(bench_small, person_file) -> None:
    err = one_line_error(
        invoke("simulate", "--person", person_file, "--question", "Q999", "--data", bench_small, "--lm", "dummy")
    )
    assert "unknown question code 'Q999'" in err
    assert dspy.settings.lm is None  # refused before an LM was configured


def test_simulate_open_question(bench_small, person_file) -> None:
    err = one_line_error(
        invoke("simulate", "--person", person_file, "--question", "Q262", "--data", bench_small, "--lm", "dummy")
    )
    assert "Q262" in err and "cannot be asked" in err
    assert dspy.settings.lm is None


def test_simulate_bad_person_file(bench_small, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"country": "USA", "answers": {"Q1": 9}}))
    args = ["--person", bad, "--question", "Q46", "--data", bench_small, "--lm", "dummy", "--json"]
    err = one_line_error(invoke("simulate", *args))
    assert "answers.Q1" in err and "bad.json" in err
    assert dspy.settings.lm is None


def test_simulate_missing_program(bench_small, person_file, tmp_path: Path) -> None:
    args = ["--person", person_file, "--question", "Q46", "--data", bench_small, "--program", tmp_path / "nowhere"]
    err = one_line_error(invoke("simulate", *args, "--lm", "dummy"))
    assert "nowhere" in err and "no such program" in err
    assert dspy.settings.lm is None


def test_simulate_without_benchmark(person_file, tmp_path: Path) -> None:
    args = ["--person", person_file, "--question", "Q46", "--data", tmp_path, "--lm", "dummy"]
    err = one_line_error(invoke("simulate", *args))
    assert "no built benchmark" in err


def test_simulate_invalid_lm_answer_is_a_clean_error(bench_small, person_file, saved_valuesim, scripted) -> None:
    scripted.replies.update({v: {"analysis": "a", "answer": "9"} for v in ("cognitive", "affective", "behavioral")})
    result = invoke(
        "simulate",
        "--person",
        person_file,
        "--question",
        "Q46",
        "--program",
        saved_valuesim,
        "--data",
        bench_small,
        "--json",
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    one_line_error(result)


def test_simulate_statistical_program_needs_no_lm(bench_small, person_file) -> None:
    args = ["--person", person_file, "--question", "Q46", "--program", "country", "--data", bench_small]
    result = invoke("simulate", *args, "--lm", "dummy", "--json")
    assert result.exit_code == 0, repr(result.exception)
    out = json.loads(result.stdout)
    assert out["valid"] is True and out["lm"] is None
    assert dspy.settings.lm is None  # --lm was not even configured


def test_simulate_prints_and_returns_the_answer_distribution(
    bench_small, saved_valuesim, person_file, scripted
) -> None:
    """The scripted LM gives no logprobs: the distribution is a point mass, recorded as such, drawn as bars."""
    args = ["--person", person_file, "--question", "Q46", "--program", saved_valuesim, "--data", bench_small]
    out = json.loads(invoke("simulate", *args, "--json").stdout)
    assert out["probs_method"] == "point" and out["probs"] == {c: float(c == "2") for c in out["options"]}
    text = invoke("simulate", *args).stdout
    assert "Answer distribution (point)" in text
    rows = [
        line for line in text.splitlines() if line.strip()[:1].isdigit() and line.rstrip().endswith(("0.000", "1.000"))
    ]
    assert [line.split()[0] for line in rows] == list(out["options"])  # one bar per option, in option order
    assert [line.split()[-1] for line in rows] == ["1.000" if c == "2" else "0.000" for c in out["options"]]


def test_simulate_samples_without_logprobs(bench_small, person_file, catalog) -> None:
    """--lm dummy gives no logprobs; --samples 3 draws three more answers (all its first option) and uses their
    shares."""
    args = ["--person", person_file, "--question", "Q1", "--program", "demographics", "--data", bench_small]
    out = json.loads(invoke("simulate", *args, "--lm", "dummy", "--samples", 3, "--json").stdout)
    first = str(next(iter(catalog["Q1"].options)))
    assert out["probs_method"] == "samples" and out["probs"] == {c: float(c == first) for c in out["options"]}
    assert dspy.settings.lm.engine.calls == 1 + 1 + 3  # the preflight ping, the answer, 3 rollouts
