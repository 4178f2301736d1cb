"""The LM programs (valuesim, backstory, full-info, demographics) on a scripted DummyLM: what each module receives,
when the coordinator runs, the backstory cache, answers narrowed to the options, the rendered prompts; and the
statistical programs through valuesim.run.predict (metrics, store, resume)."""

from __future__ import annotations

import sqlite3
import typing
from pathlib import Path

import dspy
import pandas as pd
import pytest
from dspy.utils.callback import BaseCallback
from dspy.utils.exceptions import AdapterParseError
from helpers import (
    DEMOGRAPHICS,
    IMPORTANCE,
    PROFILE,
    SCALE10,
    YES_NO,
    ScriptedLM,
    make_ex,
    use,
    user_message,
    views_reply,
)

from valuesim.data.catalog import Catalog, Question
from valuesim.programs import PROGRAMS
from valuesim.programs.baselines import Backstory, Demographics, FullInfo
from valuesim.programs.knn import KNN
from valuesim.programs.options import OptionsAdapter, with_options
from valuesim.programs.statistical import CountryMajority, DemographicCell, GlobalMajority
from valuesim.programs.valuesim import ValueSim
from valuesim.run.predict import evaluate
from valuesim.signatures import (
    Affective,
    AnswerFromBackstory,
    AnswerFromDemographics,
    AnswerFromProfile,
    Behavioral,
    Cognitive,
    Coordinate,
    WriteBackstory,
)

OTHER = ["You never attend religious services."]


def story_of(messages: list[dict]) -> dict:
    """WriteBackstory reply that tells persons apart: STORY-A for the default PROFILE, STORY-B for OTHER."""
    user = user_message(messages)
    return {"backstory": "STORY-A" if PROFILE[0] in user else "STORY-B" if OTHER[0] in user else "STORY-?"}


def valuesim_lm(cognitive="1", affective="1", behavioral="1", coordinator="3") -> ScriptedLM:
    return use(
        ScriptedLM(
            {"write": story_of, **views_reply(cognitive, affective, behavioral), "coordinator": {"answer": coordinator}}
        )
    )


# ---------------------------------------------------------------------------------------------------------------
# ValueSim


def test_valuesim_agreeing_views_skip_the_coordinator() -> None:
    lm = valuesim_lm("2", "2", "2")
    ex = make_ex("Q1", "2")
    pred = ValueSim()(**ex.inputs())
    assert lm.names() == ["write", "cognitive", "affective", "behavioral"]
    assert pred.answer == "2" and pred.answer in ex.options
    assert pred.coordinated is False
    assert (pred.cognitive_answer, pred.affective_answer, pred.behavioral_answer) == ("2", "2", "2")
    assert pred.cognitive_analysis == "cognitive analysis" and pred.behavioral_analysis == "behavioral analysis"


def test_valuesim_disagreeing_views_call_the_coordinator_once_and_it_decides() -> None:
    lm = valuesim_lm("1", "2", "1", coordinator="4")
    ex = make_ex("Q1", "4")
    pred = ValueSim()(**ex.inputs())
    assert lm.count("coordinator") == 1 and lm.names()[-1] == "coordinator"
    assert pred.coordinated is True
    assert pred.answer == "4"  # neither the majority of the views ("1") nor any view's answer: the coordinator's
    # the coordinator sees every view's answer and analysis in its own field, plus the backstory and the question
    (user,) = lm.users("coordinator")
    for view, answer in (("cognitive", "1"), ("affective", "2"), ("behavioral", "1")):
        assert f"[[ ## {view}_answer ## ]]\n{answer}\n" in user, view
        assert f"[[ ## {view}_analysis ## ]]\n{view} analysis\n" in user, view
    assert pred.backstory in user and ex.question in user


def test_valuesim_backstory_reaches_all_three_views() -> None:
    lm = valuesim_lm()
    ex = make_ex("Q7", "1", question="How important is work in your life?")
    pred = ValueSim()(**ex.inputs())
    assert pred.backstory == "STORY-A"
    (write,) = lm.users("write")
    assert all(s in write for s in [*DEMOGRAPHICS, *PROFILE])  # the writer gets every fact
    for view in ("cognitive", "affective", "behavioral"):
        (user,) = lm.users(view)
        assert pred.backstory in user, view
        assert ex.question in user and "Q7" not in user, view  # the question text, not its code
        assert '"4": "Not at all important"' in user, view
        # the views read the story, not the raw statements
        assert not any(s in user for s in PROFILE), view
        assert user.index(pred.backstory) < user.index(ex.question), view


def test_valuesim_sets_token_budgets() -> None:
    lm = valuesim_lm()
    ValueSim(backstory_words=100, analysis_tokens=77)(**make_ex().inputs())
    budgets = {name: h["kwargs"].get("max_tokens") for (name, _), h in zip(lm.calls, lm.history, strict=True)}
    assert budgets == {"write": 200, "cognitive": 77, "affective": 77, "behavioral": 77}
    (write,) = lm.users("write")
    assert "[[ ## word_budget ## ]]\n100" in write


def test_backstory_written_once_per_person() -> None:
    lm = valuesim_lm()
    program = ValueSim()
    anna = dict(person_id="anna")
    bo = dict(person_id="bo", profile=OTHER)
    asked = [("Q1", anna), ("Q2", anna), ("Q3", bo), ("Q4", anna), ("Q5", bo)]
    stories = [program(**make_ex(q, **who).inputs()).backstory for q, who in asked]
    assert lm.count("write") == 2
    assert stories == ["STORY-A"] * 2 + ["STORY-B"] + stories[:1] + stories[2:3]
    # each view call received its own person's story
    for view in ("cognitive", "affective", "behavioral"):
        got = lm.users(view)
        assert len(got) == 5
        assert all(story in user for story, user in zip(stories, got, strict=True)), view


def test_backstory_cache_is_not_shared_by_copies() -> None:
    """Optimizers compile a deep copy; it must write its own backstories (with its own, compiled writer)."""
    lm = valuesim_lm()
    program = ValueSim()
    program(**make_ex("Q1").inputs())
    copy = program.deepcopy()
    copy(**make_ex("Q2").inputs())
    program(**make_ex("Q3").inputs())
    assert lm.count("write") == 2  # the original once, the copy once, the original's cache still warm


def test_valuesim_parallel_views_give_the_same_answers() -> None:
    lm = valuesim_lm("1", "2", "1", coordinator="4")
    pred = ValueSim(parallel=True)(**make_ex().inputs())
    assert sorted(lm.names()) == sorted(["write", "cognitive", "affective", "behavioral", "coordinator"])
    assert pred.answer == "4" and pred.affective_answer == "2"


# ---------------------------------------------------------------------------------------------------------------
# Baselines


def test_backstory_baseline_answers_from_the_story_once_per_person() -> None:
    lm = use(ScriptedLM({"write": story_of, "from_backstory": {"answer": "3"}}))
    program = Backstory()
    preds = [program(**make_ex(q).inputs()) for q in ("Q1", "Q2")]
    assert [p.answer for p in preds] == ["3", "3"]
    assert lm.names() == ["write", "from_backstory", "from_backstory"]
    for user in lm.users("from_backstory"):
        assert "STORY-A" in user
        assert not any(s in user for s in PROFILE)


def test_full_info_receives_every_statement() -> None:
    lm = use(ScriptedLM({"from_profile": {"answer": "2"}}))
    ex = make_ex("Q1", "2")
    pred = FullInfo()(**ex.inputs())
    assert pred.answer == "2" and lm.names() == ["from_profile"]
    (user,) = lm.users("from_profile")
    assert all(s in user for s in [*DEMOGRAPHICS, *PROFILE])
    assert user.index(PROFILE[-1]) < user.index(ex.question)


def test_demographics_never_receives_the_profile() -> None:
    lm = use(ScriptedLM({"from_demographics": {"answer": "1"}}))
    ex = make_ex("Q1", "1")
    pred = Demographics()(**ex.inputs())
    assert pred.answer == "1" and lm.names() == ["from_demographics"]
    (user,) = lm.users("from_demographics")
    assert all(s in user for s in DEMOGRAPHICS)
    assert not any(s in user for s in PROFILE)
    assert "profile" not in user
    assert user.index(DEMOGRAPHICS[-1]) < user.index(ex.question)


# ---------------------------------------------------------------------------------------------------------------
# Answers narrowed to the question's options

LM_PROGRAMS = {
    "valuesim": lambda answer: {"write": story_of, **views_reply(answer, answer, answer)},
    "backstory": lambda answer: {"write": story_of, "from_backstory": {"answer": answer}},
    "full-info": lambda answer: {"from_profile": {"answer": answer}},
    "demographics": lambda answer: {"from_demographics": {"answer": answer}},
}


@pytest.mark.parametrize("name", sorted(LM_PROGRAMS))
@pytest.mark.parametrize("options", [YES_NO, SCALE10], ids=["yes-no", "scale10"])
def test_every_lm_program_answers_with_an_option(name: str, options: dict) -> None:
    code = list(options)[-1]
    use(ScriptedLM(LM_PROGRAMS[name](code)))
    ex = make_ex("Q5", code, options=options)
    pred = PROGRAMS[name].from_benchmark(None)(**ex.inputs())
    assert pred.answer == code and pred.answer in ex.options


@pytest.mark.parametrize("name", sorted(LM_PROGRAMS))
def test_an_answer_outside_the_options_is_rejected(name: str) -> None:
    use(ScriptedLM(LM_PROGRAMS[name]("7")))  # "7" is a code of many WVS scales, not of this yes/no question
    with pytest.raises(AdapterParseError, match="answer"):
        PROGRAMS[name].from_benchmark(None)(**make_ex("Q5", "1", options=YES_NO).inputs())


def test_every_answering_predictor_gets_the_narrowed_signature() -> None:
    """Spy on each predictor call (a DSPy callback): the signature passed has answer: Literal[<the codes>]."""

    class Spy(BaseCallback):
        def __init__(self):
            self.calls: list[tuple[dspy.Module, dict]] = []

        def on_module_start(self, call_id, instance, inputs):
            self.calls.append((instance, inputs.get("kwargs", inputs)))  # Predict.__call__(**kwargs)

    valuesim_lm("2", "1", "2", coordinator="2")
    spy = Spy()
    dspy.configure(callbacks=[spy])
    program = ValueSim()
    program(**make_ex("Q1", options=IMPORTANCE).inputs())
    names = {id(p): name for name, p in program.named_predictors()}
    seen = {names[id(m)]: inputs.get("signature", m.signature) for m, inputs in spy.calls if id(m) in names}
    assert set(seen) == {"story.write", "cognitive", "affective", "behavioral", "coordinator"}
    for name in ("cognitive", "affective", "behavioral", "coordinator"):
        answer = seen[name].output_fields["answer"].annotation
        assert typing.get_origin(answer) is typing.Literal, name
        assert typing.get_args(answer) == ("1", "2", "3", "4"), name
    assert seen["story.write"].output_fields["backstory"].annotation is str
    # narrowing works on a copy: the predictors' own signatures keep `answer: str`
    assert program.cognitive.signature.output_fields["answer"].annotation is str


# ---------------------------------------------------------------------------------------------------------------
# Rendered prompts: stable parts and the prefix-cache property

PERSON_INPUTS = {
    WriteBackstory: {"demographics": DEMOGRAPHICS, "profile": PROFILE, "word_budget": 250},
    Cognitive: {"backstory": "You grew up in Osaka."},
    Affective: {"backstory": "You grew up in Osaka."},
    Behavioral: {"backstory": "You grew up in Osaka."},
    Coordinate: {
        "backstory": "You grew up in Osaka.",
        **{f"{v}_answer": "1" for v in ("cognitive", "affective", "behavioral")},
        **{f"{v}_analysis": f"{v} analysis" for v in ("cognitive", "affective", "behavioral")},
    },
    AnswerFromBackstory: {"backstory": "You grew up in Osaka."},
    AnswerFromProfile: {"demographics": DEMOGRAPHICS, "profile": PROFILE},
    AnswerFromDemographics: {"demographics": DEMOGRAPHICS},
}
QUESTIONS = [
    ("How important is family in your life?", IMPORTANCE),
    ("How satisfied are you with your life?", SCALE10),
]


def person_texts(signature) -> list[str]:
    """The person's context in PERSON_INPUTS: the backstory or the statements."""
    values = [v for k, v in PERSON_INPUTS[signature].items() if k in ("backstory", "demographics", "profile")]
    return [t for v in values for t in ([v] if isinstance(v, str) else v)]


def render(signature, question: str, options: dict, adapter=None) -> list[dict]:
    inputs = dict(PERSON_INPUTS[signature])
    if "question" in signature.input_fields:
        inputs |= {"question": question, "options": options}
        signature = with_options(signature, options)
    return (adapter or OptionsAdapter()).format(signature, demos=[], inputs=inputs)


@pytest.mark.parametrize("signature", list(PERSON_INPUTS), ids=lambda s: s.__name__)
def test_rendered_prompt(signature) -> None:
    first, second = (render(signature, q, o) for q, o in QUESTIONS)
    assert [m["role"] for m in first] == ["system", "user"]
    system, user = first[0]["content"], first[1]["content"]
    # the instructions, every field and the JSON output format are in the system message
    for line in signature.instructions.strip().splitlines():
        assert line.strip() in system
    for name in signature.fields:
        assert f"`{name}`" in system, name
    assert "Outputs will be a JSON object" in system
    # the person comes before the question in the user message
    person = person_texts(signature)
    assert person and all(text in user for text in person)
    if "question" in signature.input_fields:
        question = QUESTIONS[0][0]
        assert question in user and '"1": "Very important"' in user
        assert max(user.index(t) for t in person) < user.index(question)
    # prefix cache: the system message does not depend on the question or its options
    assert first[0] == second[0]
    assert first[1] != second[1] or "question" not in signature.input_fields


@pytest.mark.parametrize("signature", [Cognitive, Coordinate, AnswerFromProfile], ids=lambda s: s.__name__)
def test_plain_json_adapter_would_break_the_prefix_cache(signature) -> None:
    """What OptionsAdapter guards against: a narrowed signature rendered as is names its codes in the system."""
    first, second = (render(signature, q, o, adapter=dspy.JSONAdapter()) for q, o in QUESTIONS)
    assert first[0] != second[0]
    assert "Literal" in first[0]["content"] or "'10'" in second[0]["content"]


# ---------------------------------------------------------------------------------------------------------------
# Statistical programs through valuesim.run.predict


def tiny_catalog() -> Catalog:
    def question(code, options, ordinal=True, kind="value"):
        return Question(
            code=code,
            label=code,
            text=f"Question text of {code}?",
            options=options,
            category="Demographic and Socioeconomic Variables" if kind == "demographic" else "Social Values",
            ordinal=ordinal,
            kind=kind,
            open=code == "Q262",
        )

    return Catalog(
        [
            question("Q1", {1: "Very important", 2: "Rather important", 3: "Not very", 4: "Not at all"}),
            question("Q2", {1: "Yes", 2: "No"}, ordinal=False),
            question("Q260", {1: "Male", 2: "Female"}, ordinal=False, kind="demographic"),
            question("Q262", {}, kind="demographic"),
            question("Q275", {i: str(i) for i in range(9)}, kind="demographic"),
        ],
        countries={"JPN": "Japan", "USA": "United States"},
    )


def tiny_train() -> pd.DataFrame:
    rows = [
        # Japan mostly answers Q1=1 and Q2=2; the US mostly Q1=3 and Q2=1
        *[{"country": "JPN", "Q1": 1, "Q2": 2, "Q260": 2, "Q262": 40, "Q275": 3}] * 6,
        *[{"country": "JPN", "Q1": 2, "Q2": 1, "Q260": 1, "Q262": 25, "Q275": 7}] * 2,
        *[{"country": "USA", "Q1": 3, "Q2": 1, "Q260": 1, "Q262": 60, "Q275": 1}] * 10,
    ]
    table = pd.DataFrame(rows)
    table.insert(0, "person_id", [f"p{i}" for i in range(len(table))])
    table["split"] = "train"
    return table.astype({c: "float64" for c in ("Q1", "Q2", "Q260", "Q262", "Q275")})


def tiny_examples() -> list[dspy.Example]:
    people = [
        ("jp", "JPN", {"Q260": 2, "Q262": 40, "Q275": 3}),
        ("us", "USA", {"Q260": 1, "Q262": 60, "Q275": 1}),
    ]
    exs = []
    for pid, country, known in people:
        exs.append(make_ex("Q1", "1", person_id=pid, country=country, known=known, options=IMPORTANCE))
        exs.append(make_ex("Q2", "2", person_id=pid, country=country, known=known, options=YES_NO, ordinal=False))
    return exs


class Counting(dspy.Module):
    def __init__(self, program):
        super().__init__()
        self.program = program
        self.calls = 0

    def forward(self, **inputs):
        self.calls += 1
        return self.program(**inputs)


@pytest.mark.parametrize("cls", [GlobalMajority, CountryMajority, DemographicCell, KNN], ids=lambda c: c.__name__)
def test_statistical_program_through_evaluate(cls, tmp_path: Path) -> None:
    catalog = tiny_catalog()
    settings = {"min_cell": 1} if cls is DemographicCell else {"k": 3} if cls is KNN else {}
    program = Counting(cls(tiny_train(), catalog, **settings))
    examples = tiny_examples()
    run_dir = tmp_path / "run"

    result = evaluate(program, examples, run_dir, progress=False)
    assert program.calls == len(examples)
    m = result.metrics
    assert m["n"] == 4 and m["persons"] == 2 and m["questions"] == 2 and m["failed"] == 0 and m["invalid"] == 0
    assert m["lm_calls_per_pred"] == 0
    answers = dict(zip(result.predictions["key"], result.predictions["answer"], strict=True))
    if cls is GlobalMajority:  # 10 US "3" beat 6 Japanese "1"; Q2: 12 "1" vs 6 "2"
        assert answers == {"jp|Q1": "3", "jp|Q2": "1", "us|Q1": "3", "us|Q2": "1"}
        assert m["accuracy"] == 0.0
    else:  # country, cell and neighbours all tell the two countries apart
        assert answers == {"jp|Q1": "1", "jp|Q2": "2", "us|Q1": "3", "us|Q2": "1"}
        assert m["accuracy"] == 0.5
    assert set(result.by_country["country"]) == {"JPN", "USA"}

    with sqlite3.connect(run_dir / "predictions.sqlite") as db:
        rows = db.execute("SELECT key, status, gold FROM predictions ORDER BY key").fetchall()
    assert [r[0] for r in rows] == ["jp|Q1", "jp|Q2", "us|Q1", "us|Q2"]
    assert {r[1] for r in rows} == {"ok"}

    again = evaluate(program, examples, run_dir, progress=False)
    assert program.calls == len(examples)  # resumed: nothing predicted twice
    assert again.metrics == m

    more = [*examples, make_ex("Q1", "1", person_id="jp2", country="JPN", known={"Q260": 2}, options=IMPORTANCE)]
    evaluate(program, more, run_dir, progress=False)
    assert program.calls == len(examples) + 1  # only the new example


def test_evaluate_records_an_invalid_lm_answer_as_failed(tmp_path: Path) -> None:
    use(ScriptedLM({"from_profile": {"answer": "9"}}))
    examples = [make_ex("Q1", "1", person_id="x")]
    result = evaluate(FullInfo(), examples, tmp_path / "run", progress=False)
    row = result.predictions.iloc[0]
    assert row["status"] == "failed" and row["answer"] is None and "AdapterParseError" in row["error"]
    assert result.metrics["accuracy"] == 0.0 and result.metrics["failed"] == 1
