"""Compiling without a real model: bootstrap on hand-made examples with a scripted DummyLM, demo hygiene, save and
load, and the MLflow path of `run_compile` (params, metrics, artifacts, `load("runs:/<id>")`); the metrics."""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import dspy
import pytest
from helpers import IMPORTANCE, PROFILE, YES_NO, ScriptedLM, make_ex, use, user_message, views_reply

from valuesim import load
from valuesim.errors import ProgramLoadError
from valuesim.optimize.compile import compile_program, drop_long_demos
from valuesim.optimize.metric import answer_metric, closeness, feedback_metric
from valuesim.programs.baselines import FullInfo
from valuesim.programs.saved import load_program, save_program
from valuesim.programs.valuesim import ValueSim


def options_in(messages: list[dict]) -> dict[str, str]:
    user = user_message(messages)
    return json.loads(re.search(r"\[\[ ## options ## \]\]\n(\{.*\})", user).group(1))


def question_in(messages: list[dict]) -> str:
    return re.search(r"\[\[ ## question ## \]\]\n(.*)", user_message(messages)).group(1)


def with_demos(messages: list[dict]) -> bool:
    """Few-shot demos are user/assistant pairs before the call's own user message."""
    return len(messages) > 2


def wrong(options: dict, gold: str) -> str:
    return next(code for code in options if code != gold)


# ---------------------------------------------------------------------------------------------------------------
# compile_program on hand-made examples

TRAIN = [
    make_ex("Q1", "1", person_id="anna"),
    make_ex("Q2", "2", person_id="anna"),
    make_ex("Q3", "1", person_id="bo", profile=["You never attend religious services."], options=YES_NO),
    make_ex("Q4", "3", person_id="bo", profile=["You never attend religious services."]),
]
GOLD = {ex.question: ex.answer for ex in TRAIN}


def knows(questions: set[str]):
    """A view that answers the gold for the listed questions and a wrong option for the others."""

    def reply(messages):
        q, options = question_in(messages), options_in(messages)
        code = q.split()[-1].rstrip("?")
        return {"analysis": f"about {code}", "answer": GOLD[q] if code in questions else wrong(options, GOLD[q])}

    return reply


def test_bootstrap_compiles_demos_from_correct_traces(caplog: pytest.LogCaptureFixture) -> None:
    view = knows({"Q1", "Q3"})
    lm = use(
        ScriptedLM(
            {
                "write": lambda m: {"backstory": "STORY-A" if PROFILE[0] in user_message(m) else "STORY-B"},
                "cognitive": view,
                "affective": view,
                "behavioral": view,
                "coordinator": {"answer": "1"},
            }
        )
    )
    with caplog.at_level(logging.WARNING):
        compiled = compile_program(ValueSim(), "bootstrap", TRAIN)
    # the optimizer's copies are real deep copies (DSPy used to fall back to sharing the backstory cache)
    assert not [r for r in caplog.records if "deep copy" in r.getMessage()]
    assert lm.calls, "the optimizer ran the program"
    demos = {name: p.demos for name, p in compiled.named_predictors()}
    for view_name in ("cognitive", "affective", "behavioral"):
        assert [(d["question"], d["answer"], d["backstory"]) for d in demos[view_name]] == [
            ("Question text of Q1?", "1", "STORY-A"),
            ("Question text of Q3?", "1", "STORY-B"),
        ]
        assert all(d.get("augmented") for d in demos[view_name])
    # both correct traces wrote a backstory, so the writer has a demo per person
    assert sorted(d["backstory"] for d in demos["story.write"]) == ["STORY-A", "STORY-B"]
    # the coordinator never ran in a correct trace: it gets labeled demos, training examples whose `question` is
    # the wording its signature reads
    assert len(demos["coordinator"]) == 2
    for d in demos["coordinator"]:
        assert not d.get("augmented")
        assert d["question"] == f"Question text of {d['question_code']}?" and d["answer"] == GOLD[d["question"]]


def test_labeled_demos_show_the_question_text_not_its_code() -> None:
    lm = use(ScriptedLM({"from_profile": lambda m: {"answer": wrong(options_in(m), GOLD.get(question_in(m), "1"))}}))
    compiled = compile_program(FullInfo(), "bootstrap", TRAIN)  # every trace wrong: only labeled demos
    demos = compiled.answer.demos
    assert len(demos) == 2
    for d in demos:
        assert re.fullmatch(r"Question text of Q\d\?", d["question"]) and re.fullmatch(r"Q\d", d["question_code"])
    lm.calls.clear()
    compiled(**make_ex("Q9", "1").inputs())
    (name, messages), *_ = lm.calls
    demo_users = [m["content"] for m in messages[1:-1] if m["role"] == "user"]
    assert len(demo_users) == 2
    for content in demo_users:
        assert re.search(r"\[\[ ## question ## \]\]\nQuestion text of Q\d\?", content), content
        assert not re.search(r"\[\[ ## question ## \]\]\nQ\d+\n", content), content
        assert "## question_code ##" not in content and "## person_id ##" not in content  # only its own fields


def test_labeled_demos_render_only_signature_fields() -> None:
    """Labeled demos are training examples as they are (no rewrite): each predictor shows only its own fields, and
    the backstory writer, whose output a training example lacks, shows none."""
    raw = make_ex("Q2", "2", person_id="anna-7")
    program = ValueSim()
    program.story.write.demos = [raw]
    program.cognitive.demos = [raw]
    lm = use(ScriptedLM({"write": {"backstory": "STORY"}, **views_reply("1", "1", "1")}))
    program(**make_ex("Q5", "1").inputs())
    calls = dict(lm.calls)
    assert [m["role"] for m in calls["write"]] == ["system", "user"]  # no demo
    assert [m["role"] for m in calls["cognitive"]] == ["system", "user", "assistant", "user"]
    demo = calls["cognitive"][1]["content"]
    assert "[[ ## question ## ]]\nQuestion text of Q2?" in demo and '"answer": "2"' in calls["cognitive"][2]["content"]
    assert "anna-7" not in demo and "Q260" not in demo and PROFILE[0] not in demo  # person_id, known, profile


def test_drop_long_demos() -> None:
    program = FullInfo()
    short = make_ex("Q1", "1")
    long = make_ex("Q2", "2", profile=[f"Statement number {i} about your values." for i in range(200)])
    program.answer.demos = [short, long]
    size = len(str([long.get(f) for f in program.answer.signature.fields]))
    drop_long_demos(program, max_chars=size)
    assert program.answer.demos == [short, long]  # at the limit: kept
    drop_long_demos(program, max_chars=size - 1)
    assert program.answer.demos == [short]
    drop_long_demos(program, max_chars=10)
    assert program.answer.demos == []


def test_compile_program_applies_the_demo_size_limit() -> None:
    use(ScriptedLM({"from_profile": lambda m: {"answer": GOLD[question_in(m)]}}))
    assert len(compile_program(FullInfo(), "bootstrap", TRAIN).answer.demos) == 2
    assert compile_program(FullInfo(), "bootstrap", TRAIN, max_demo_chars=50).answer.demos == []


def test_unknown_optimizer() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        compile_program(FullInfo(), "adam", TRAIN)


# ---------------------------------------------------------------------------------------------------------------
# Saving and loading


def compiled_valuesim() -> ValueSim:
    program = ValueSim(backstory_words=120)
    program.cognitive.signature = program.cognitive.signature.with_instructions(
        program.cognitive.signature.instructions + " Trust your convictions."
    )
    program.cognitive.demos = [
        dspy.Example(
            augmented=True, backstory="S", question="Question text of Q1?", options=IMPORTANCE, analysis="a", answer="1"
        )
    ]
    program.coordinator.demos = [dspy.Example(question="Question text of Q2?", options=YES_NO, answer="2")]
    return program


def scripted_views() -> ScriptedLM:
    """Views answering the first option unless they see a demo, then the last: demos change the answer."""

    def view(messages):
        options = list(options_in(messages))
        return {"analysis": "a", "answer": options[-1] if with_demos(messages) else options[0]}

    return ScriptedLM(
        {
            "write": {"backstory": "STORY"},
            "cognitive": view,
            "affective": view,
            "behavioral": view,
            "coordinator": lambda m: {"answer": list(options_in(m))[1]},
        }
    )


def run_and_record(program, inputs: dict) -> tuple[dspy.Prediction, list]:
    lm = use(scripted_views())
    return program(**inputs), lm.calls


def test_save_and_load_a_folder(tmp_path: Path) -> None:
    program = compiled_valuesim()
    folder = save_program(program, "valuesim", tmp_path / "prog", settings={"backstory_words": 120}, lm={"model": "m"})
    meta = json.loads((folder / "valuesim.json").read_text())
    assert meta["program"] == "valuesim" and meta["settings"] == {"backstory_words": 120} and meta["lm"]["model"] == "m"

    loaded = load(str(folder))
    assert isinstance(loaded, ValueSim) and loaded.story.words == 120
    assert loaded.dump_state() == program.dump_state()
    assert loaded.cognitive.signature.instructions.endswith("Trust your convictions.")

    inputs = make_ex("Q5", "1").inputs()
    (want, want_calls), (got, got_calls) = run_and_record(program, inputs), run_and_record(loaded, inputs)
    assert got.toDict() == want.toDict()
    assert got.coordinated and got.cognitive_answer == "4" and got.affective_answer == "1"  # the demo counts
    assert [m for _, m in got_calls] == [m for _, m in want_calls]  # the same prompts, demos included


def old_coordinator_state(path: Path) -> None:
    """The coordinator as saved before its views became typed fields (backstory, question, options, views, answer)."""
    state = json.loads(path.read_text())
    fields = state["coordinator"]["signature"]["fields"]
    views = {"prefix": "Views:", "description": "each view's answer and analysis"}
    state["coordinator"]["signature"]["fields"] = [*fields[:3], views, fields[-1]]
    path.write_text(json.dumps(state))


@pytest.mark.parametrize(
    ("damage", "file", "fragment"),
    [
        (lambda f: (f / "program.json").write_text("{not json"), "program.json", "cannot be loaded into valuesim"),
        (lambda f: (f / "program.json").unlink(), "program.json", "missing program.json"),
        (lambda f: (f / "valuesim.json").write_text("[1, 2"), "valuesim.json", "corrupt"),
        (lambda f: (f / "valuesim.json").write_text('{"settings": {}}'), "valuesim.json", "corrupt"),
        (lambda f: (f / "valuesim.json").write_text('{"program": "nope"}'), "valuesim.json", "unknown program 'nope'"),
        (lambda f: old_coordinator_state(f / "program.json"), "program.json", "'coordinator' was saved with 5 fields"),
    ],
    ids=["corrupt-state", "missing-state", "corrupt-meta", "meta-without-program", "unknown-program", "old-fields"],
)
def test_damaged_program_folder(tmp_path: Path, damage, file: str, fragment: str) -> None:
    folder = save_program(compiled_valuesim(), "valuesim", tmp_path / "prog")
    damage(folder)
    with pytest.raises(ProgramLoadError) as err:
        load(str(folder))
    assert file in str(err.value) and fragment in str(err.value)
    assert str(folder) in str(err.value)


def test_missing_program_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-program"
    with pytest.raises(ProgramLoadError, match="no such program") as err:
        load(str(missing))
    assert str(missing) in str(err.value)
    with pytest.raises(ProgramLoadError, match="missing valuesim.json"):
        load_program(tmp_path)  # a folder that exists but is not a saved program


# ---------------------------------------------------------------------------------------------------------------
# run_compile: compile -> log -> load, through MLflow


def compile_lm(bench, train_persons: int, dev_persons: int, questions: int) -> ScriptedLM:
    """Knows every selected person's answers but gives them only when the prompt has demos: an uncompiled program
    scores 0, a compiled one (or the teacher, which has labeled demos) 1."""
    from valuesim.run.runner import Setup

    setup = Setup()
    stories, gold = {}, {}
    for split, n in (("train", train_persons), ("dev", dev_persons)):
        for ex in bench.examples(setup.protocol, split, setup.fold, 20, n, questions):
            story = f"STORY of {ex.person_id}"
            stories[json.dumps(ex.profile, ensure_ascii=False)] = story
            gold[(story, ex.question)] = ex.answer

    def write(messages):
        profile = re.search(r"\[\[ ## profile ## \]\]\n(\[.*\])", user_message(messages)).group(1)
        return {"backstory": stories[json.dumps(json.loads(profile), ensure_ascii=False)]}

    def view(messages):
        user = user_message(messages)
        story = re.search(r"\[\[ ## backstory ## \]\]\n(.*)", user).group(1)
        answer = gold[(story, question_in(messages))]
        return {"analysis": story, "answer": answer if with_demos(messages) else wrong(options_in(messages), answer)}

    return ScriptedLM({"write": write, "cognitive": view, "affective": view, "behavioral": view, "coordinator": view})


@pytest.fixture(scope="module")
def compile_run(bench_small: Path, tmp_path_factory: pytest.TempPathFactory):
    """One `run_compile` of ValueSim with bootstrap on the small benchmark, in its own VALUESIM_HOME."""
    import mlflow.dspy.save

    from valuesim.data.benchmark import Benchmark
    from valuesim.run import runner

    home = tmp_path_factory.mktemp("compile-home")
    bench = Benchmark(bench_small)
    lm = compile_lm(bench, train_persons=3, dev_persons=2, questions=3)

    def configure_lm(model: str, api_base: str | None = None, *_, **__) -> dict:
        use(lm)
        return {"model": "dummy", "engine": "scripted"}

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VALUESIM_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setattr(runner, "configure_lm", configure_lm)
        # MLflow infers the dspy flavor's pip requirements in a subprocess (7 s); its fallback is the same list
        mp.setattr(mlflow.dspy.save, "infer_pip_requirements", lambda path, flavor, fallback=None, **_: fallback)
        setup = runner.Setup(program="valuesim", lm="dummy-lm", history=20, questions=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = runner.run_compile(setup, bench, "bootstrap", 3, 2, progress=False)
    return {"home": home, "summary": summary, "bench": bench, "lm": lm}


@pytest.fixture
def in_compile_home(compile_run, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("VALUESIM_HOME", str(compile_run["home"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return compile_run


def test_run_compile_improves_and_summarizes(compile_run) -> None:
    s = compile_run["summary"]
    assert s["before"]["accuracy"] == 0.0 and s["before"]["n"] == 6 and s["before"]["invalid"] == 0
    assert s["after"]["accuracy"] == 1.0 and s["after"]["n"] == 6  # the bootstrapped demos reach the prompts
    # the compiled copy writes its own backstories: one writer call per dev person, before and after
    assert s["before"]["lm_calls_per_pred"] == s["after"]["lm_calls_per_pred"] == pytest.approx((2 + 6 * 3) / 6)
    assert s["program_uri"] == f"runs:/{s['mlflow_run_id']}"
    assert s["model_uri"] and s["model_uri"].startswith("models:/")  # the dspy flavor could pickle the program
    assert (Path(s["program_dir"]) / "program.json").exists()
    saved = json.loads((Path(s["params"]["run_dir"]) / "compile.json").read_text())
    assert saved["mlflow_run_id"] == s["mlflow_run_id"] and saved["after"]["accuracy"] == 1.0


def test_compile_persons_are_disjoint_and_gain_is_paired(compile_run) -> None:
    """The optimizer trains and selects on training persons; before/after are measured on dev persons it never
    saw; the gain is after - before on the same dev items, with its interval."""
    s = compile_run["summary"]
    train, val, dev = (set(s["persons"][k]) for k in ("train", "val", "dev"))
    assert train and val and dev and not (train & val or train & dev or val & dev)
    assert len(train | val) == 3 and len(dev) == 2
    g = s["gain"]
    assert g["difference"] == 1.0 and g["n_items"] == 6 and g["n_persons"] == 2
    assert g["ci_low"] == g["ci_high"] == 1.0  # every item went from wrong to right


def test_run_compile_logs_params_metrics_and_artifacts(in_compile_home) -> None:
    import mlflow

    from valuesim.tracking import setup_tracking

    s = in_compile_home["summary"]
    setup_tracking()
    client = mlflow.MlflowClient()
    run = client.get_run(s["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["program"] == "valuesim" and params["optimizer"] == "bootstrap"
    assert params["lm"] == "dummy-lm" and params["lm_model"] == "dummy"
    assert params["fold"] == "1" and params["history"] == "20"
    assert params["dataset"] == in_compile_home["bench"].fingerprint
    assert params["train_examples"] == "6" and params["val_examples"] == "3" and params["dev_examples"] == "6"
    metrics = run.data.metrics
    assert metrics["before_accuracy"] == 0.0 and metrics["after_accuracy"] == 1.0
    assert "compile_seconds" in metrics
    assert "dspy_flavor_error" not in run.data.tags

    def listing(path=None) -> set[str]:
        found = set()
        for a in client.list_artifacts(run.info.run_id, path):
            found |= listing(a.path) if a.is_dir else {a.path}
        return found

    artifacts = listing()
    assert {"program/program.json", "program/valuesim.json"} <= artifacts
    prompts = {p for p in artifacts if p.startswith("prompts/")}
    assert prompts == {
        f"prompts/{n}.txt" for n in ("story.write", "cognitive", "affective", "behavioral", "coordinator")
    }
    assert {"before_predictions.json", "after_predictions.json"} <= artifacts

    local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="prompts/cognitive.txt"))
    text = local.read_text()
    assert "--- system ---" in text and "Answer the survey question through how you think" in text
    assert text.count("--- user ---") == 3  # two bootstrapped demos and the question
    table = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="after_predictions.json")
        ).read_text()
    )
    columns = table["columns"]
    rows = [dict(zip(columns, r, strict=True)) for r in table["data"]]
    assert len(rows) == 6 and all(r["answer"] == r["gold"] for r in rows)


def test_unknown_mlflow_run(in_compile_home) -> None:
    with pytest.raises(ProgramLoadError, match="runs:/0123456789abcdef: cannot be downloaded"):
        load("runs:/0123456789abcdef")
    run_id = in_compile_home["summary"]["mlflow_run_id"]
    with pytest.raises(ProgramLoadError, match="cannot be downloaded"):
        load(f"runs:/{run_id}/no-such-folder")


def test_load_from_mlflow_run_matches_the_saved_program(in_compile_home) -> None:
    s = in_compile_home["summary"]
    from_run = load(s["program_uri"])
    from_folder, meta = load_program(s["program_dir"])
    assert meta["program"] == "valuesim" and meta["lm"]["model"] == "dummy"
    assert isinstance(from_run, ValueSim)
    assert from_run.dump_state() == from_folder.dump_state()
    demos = {name: len(p.demos) for name, p in from_run.named_predictors()}
    assert demos["cognitive"] == demos["affective"] == demos["behavioral"] == 2

    bench = in_compile_home["bench"]
    lm = in_compile_home["lm"]
    use(lm)
    for ex in bench.examples("values", "dev", 1, 20, 2, 3):
        lm.calls.clear()
        a = from_run(**ex.inputs())
        first = [m for _, m in lm.calls]
        lm.calls.clear()
        b = from_folder(**ex.inputs())
        assert a.toDict() == b.toDict()
        assert a.answer == ex.answer  # compiled: the demos make the scripted views answer the gold
        assert [m for _, m in lm.calls] == first


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def test_answer_metric() -> None:
    ex = make_ex("Q1", "2", options=IMPORTANCE)  # 4-point ordinal scale
    pred = lambda a: dspy.Prediction(answer=a)  # noqa: E731
    assert answer_metric(ex, pred("2")) == 1.0
    assert answer_metric(ex, pred("1")) == pytest.approx(0.5 * (1 - 1 / 3))
    assert answer_metric(ex, pred("4")) == pytest.approx(0.5 * (1 - 2 / 3))
    assert answer_metric(ex, pred("9")) == 0.0
    assert answer_metric(ex, pred(None)) == 0.0
    assert answer_metric(ex, dspy.Prediction()) == 0.0
    assert answer_metric(ex, pred(2)) == 1.0  # an int code counts as its string
    # while bootstrapping, only an exact match
    assert answer_metric(ex, pred("2"), trace=[]) is True
    assert answer_metric(ex, pred("1"), trace=[]) is False
    # nominal questions: no partial credit
    nominal = make_ex("Q2", "1", options=YES_NO, ordinal=False)
    assert answer_metric(nominal, pred("2")) == 0.0
    assert closeness(ex, "3") == pytest.approx(2 / 3) and closeness(ex, "2") == 1.0


def test_feedback_metric() -> None:
    ex = make_ex("Q1", "2", options=IMPORTANCE, question="How important is family?")
    views = {f"{v}_answer": "1" for v in ("cognitive", "affective", "behavioral")}
    views |= {f"{v}_analysis": f"{v} reasons" for v in ("cognitive", "affective", "behavioral")}
    wrong_pred = dspy.Prediction(answer="1", **views)
    fb = feedback_metric(ex, wrong_pred)
    assert fb.score == pytest.approx(0.5 * (1 - 1 / 3))
    assert "the person actually answered 2 (Rather important)" in fb.feedback
    assert "Question Q1: How important is family?" in fb.feedback
    assert "final answer 1 (Very important)" in fb.feedback
    assert "affective view answered 1: affective reasons" in fb.feedback
    right = feedback_metric(ex, dspy.Prediction(answer="2"))
    assert right.score == 1.0 and "correct." in right.feedback and "actually answered" not in right.feedback
    invalid = feedback_metric(ex, dspy.Prediction(answer="7"))
    assert invalid.score == 0.0 and "final answer 7 (not an option)" in invalid.feedback
