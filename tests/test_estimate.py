"""valuesim.estimate.runs against what runs really send: the rendered prompts are the prompts a DummyLM receives, call
counts are exact (bounds where outputs feed later prompts), prices are LiteLLM's; the dollars and cached tokens a
run records (an OpenAI-shaped stub server); and, on a real llama.cpp server with SmolLM2, estimated prompt
tokens within 10% of the server's own counts."""

from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dspy
import pytest
from helpers import IMPORTANCE, YES_NO, ScriptedLM, make_ex, use, views_reply
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.estimate.compile import estimate_compile
from valuesim.estimate.runs import Counter, dollars, estimate, price, render
from valuesim.programs.baselines import Backstory, Demographics, FullInfo
from valuesim.programs.valuesim import ValueSim
from valuesim.run.predict import evaluate
from valuesim.run.store import RunStore
from valuesim.score.results import cost_summary

GPT = "openai/gpt-4o-mini"


def persons_examples(persons: int = 2, questions: int = 3) -> list[dspy.Example]:
    profiles = [["Family is very important in your life."], ["You never attend religious services."]]
    return [
        make_ex(f"Q{q + 1}", "1", person_id=f"p{p}", profile=profiles[p % 2], options=IMPORTANCE if q else YES_NO)
        for p in range(persons)
        for q in range(questions)
    ]


def scripted(disagree: bool = True) -> ScriptedLM:
    views = views_reply("1", "2", "1") if disagree else views_reply("1", "1", "1")
    return use(ScriptedLM({"write": {"backstory": "You grew up in Osaka."}, **views, "coordinator": {"answer": "1"},
                           "from_backstory": {"answer": "1"}, "from_profile": {"answer": "1"},
                           "from_demographics": {"answer": "1"}}))  # fmt: skip


def run_for_real(program: dspy.Module, examples: list[dspy.Example], lm: ScriptedLM) -> list[list[dict]]:
    for ex in examples:
        program(**ex.inputs())
    return [messages for _, messages in lm.calls]


@pytest.mark.parametrize("cls", [Demographics, FullInfo], ids=lambda c: c.__name__)
def test_rendered_prompts_are_the_prompts_the_lm_receives(cls) -> None:
    examples = persons_examples()
    sent = run_for_real(cls(), examples, scripted())
    rendered = render(cls(), examples)
    assert [c.messages for c in rendered] == sent  # same text, same order
    assert {c.max_tokens for c in rendered} == {512}  # the LM default build_lm gives every run


@pytest.mark.parametrize(
    ("cls", "calls"),
    [(Demographics, 6), (FullInfo, 6), (Backstory, 2 + 6), (ValueSim, 2 + 6 * 3 + 6)],
    ids=["demographics", "full-info", "backstory", "valuesim"],
)
def test_call_counts_are_those_of_a_run(cls, calls: int) -> None:
    """2 persons x 3 questions: one backstory per person, three views and (views disagreeing) a coordinator."""
    examples = persons_examples()
    lm = scripted(disagree=True)
    run_for_real(cls(), examples, lm)
    rendered = render(cls(), examples)
    assert len(rendered) == len(lm.calls) == calls
    assert [c.module for c in rendered] == [
        {"write": "story.write", "from_backstory": "answer", "from_profile": "answer", "from_demographics": "answer"}
        .get(name, name) for name in lm.names()
    ]  # fmt: skip


def test_agreeing_views_make_fewer_calls_than_the_bound() -> None:
    examples = persons_examples()
    lm = scripted(disagree=False)
    run_for_real(ValueSim(), examples, lm)
    assert len(lm.calls) == 2 + 6 * 3 < len(render(ValueSim(), examples))


def test_later_prompts_quote_earlier_outputs_at_their_budget() -> None:
    """The backstory (max_tokens = 2 x words) and analyses stand in at full length, so ValueSim's prompt tokens
    bound those of a run whose outputs are shorter."""
    examples = persons_examples()
    program = ValueSim(backstory_words=50, analysis_tokens=30)
    rendered = render(program, examples)
    count = Counter(GPT)
    story = rendered[0].outputs["backstory"]
    assert count([{"role": "user", "content": story}]) - count([{"role": "user", "content": ""}]) == 100
    assert [c.max_tokens for c in rendered[:5]] == [100, 30, 30, 30, 512]
    cognitive = rendered[1].messages[-1]["content"]
    assert story in cognitive
    coordinator = rendered[4].messages[-1]["content"]
    assert rendered[1].outputs["analysis"] in coordinator and story in coordinator
    sent = run_for_real(ValueSim(backstory_words=50, analysis_tokens=30), examples, scripted(disagree=True))
    assert sum(map(count, sent)) < sum(count(c.messages) for c in rendered)


def test_price_and_dollars_from_litellms_table() -> None:
    import litellm

    p = price(GPT)
    info = litellm.model_cost["gpt-4o-mini"]
    assert p["known"] and p["usd_per_million"]["input"] == pytest.approx(info["input_cost_per_token"] * 1e6)
    # 1,000 prompt tokens of which 768 cached, 10 completion tokens
    expected = (232 * info["input_cost_per_token"] + 768 * info["cache_read_input_token_cost"]
                + 10 * info["output_cost_per_token"])  # fmt: skip
    assert dollars(p, 1000, 10, 768) == pytest.approx(expected)
    assert "not in LiteLLM's price table" in price("openai/smollm2")["reason"]
    assert "in-process" in price("gemma")["reason"] and dollars(price("gemma"), 10, 10) is None


# ---------------------------------------------------------------------------------------------------------------
# What a run records: an OpenAI-shaped server reporting usage with cached prompt tokens


class Stub(BaseHTTPRequestHandler):
    """Answers every chat request with option "1" and usage 1,000 prompt (768 cached) + 10 completion tokens, as
    gpt-4o-mini would report it."""

    requests = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Stub.requests += 1
        body = json.dumps({
            "id": "x", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps({"answer": "1"})}}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 10, "total_tokens": 1010,
                      "prompt_tokens_details": {"cached_tokens": 768}},
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "stub")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/v1"
    httpd.shutdown()


def test_a_run_records_dollars_and_cached_tokens(stub: str, tmp_path: Path) -> None:
    from valuesim.lm import build_lm

    per_call = dollars(price(GPT), 1000, 10, 768)
    use(build_lm(GPT, api_base=stub, cache=True))
    examples = [make_ex("Q1", person_id="a"), make_ex("Q2", person_id="b")]
    result = evaluate(Demographics(), examples, tmp_path / "run", progress=False, resamples=0)
    with sqlite3.connect(tmp_path / "run" / "predictions.sqlite") as db:
        rows = db.execute("SELECT lm_calls, prompt_tokens, cached_tokens, cost_usd FROM predictions").fetchall()
    assert [r[:3] for r in rows] == [(1, 1000, 768)] * 2
    assert [r[3] for r in rows] == [pytest.approx(per_call)] * 2  # DSPy's price of the response = the estimate's
    m = result.metrics
    assert m["usd_total"] == pytest.approx(2 * per_call) and m["cached_tokens_per_pred"] == 768
    assert m["usd_per_1000_preds"] == pytest.approx(1000 * per_call)

    sent = Stub.requests
    again = evaluate(Demographics(), examples, tmp_path / "again", progress=False, resamples=0)
    assert Stub.requests == sent  # DSPy's LM cache answered: nothing billed
    assert again.metrics["usd_total"] == 0 and again.metrics["prompt_tokens_per_pred"] == 0


def test_unpriced_calls_and_older_stores_have_no_dollars(tmp_path: Path) -> None:
    scripted()  # DummyLM responses carry no price
    result = evaluate(FullInfo(), [make_ex("Q1")], tmp_path / "run", progress=False, resamples=0)
    assert result.metrics["usd_total"] is None and result.metrics["lm_calls_per_pred"] == 1

    old = tmp_path / "old"
    old.mkdir()
    with sqlite3.connect(old / "predictions.sqlite") as db:  # a store written before cached_tokens and cost_usd
        db.execute("CREATE TABLE predictions (key TEXT PRIMARY KEY, person_id TEXT, question TEXT, gold TEXT, "
                   "answer TEXT, status TEXT, error TEXT, detail TEXT, lm_calls INTEGER, prompt_tokens INTEGER, "
                   "completion_tokens INTEGER, seconds REAL)")  # fmt: skip
        db.execute("INSERT INTO predictions VALUES ('p|Q1', 'p', 'Q1', '1', '1', 'ok', NULL, '{}', 2, 900, 20, 1.0)")
    store = RunStore(old)
    frame = store.frame()
    store.close()
    assert frame["cost_usd"].isna().all()
    summary = cost_summary(frame)
    assert summary["usd_total"] is None and summary["prompt_tokens_per_pred"] == 900
    assert summary["cached_tokens_per_pred"] == 0


def test_estimate_then_evaluate_on_the_command_line(stub: str, bench_small: Path, tmp_path: Path) -> None:
    """The README's commands: estimate, evaluate, compare. The estimate's calls are the run's calls and its price
    is the one DSPy put on the run's responses."""
    sel = ["--program", "demographics", "--data", bench_small, "--persons", 2, "--questions", 2, "--history", 20]
    runner = CliRunner()
    r = runner.invoke(app, [str(a) for a in ["estimate", *sel, "--lm", GPT, "--api-base", stub, "--json"]])
    assert r.exit_code == 0, r.output
    est = json.loads(r.stdout)
    assert est["price"]["known"] and est["total"]["lm_calls"] == 4 and est["total"]["prompt_tokens"] > 0
    r = runner.invoke(app, [str(a) for a in ["evaluate", *sel, "--lm", GPT, "--api-base", stub,
                                             "--run-dir", tmp_path / "run", "--resamples", 0, "--json"]])  # fmt: skip
    assert r.exit_code == 0, r.output
    ran = json.loads(r.stdout)
    m = ran["metrics"]
    assert m["lm_calls_per_pred"] * m["n"] == est["total"]["lm_calls"]
    assert m["usd_total"] == pytest.approx(4 * dollars(est["price"], 1000, 10, 768))

    # the evaluate command line itself, with `estimate` in place of `evaluate`: run flags are taken and ignored
    run_line = [*sel, "--lm", GPT, "--api-base", stub, "--run-dir", tmp_path / "run", "--resamples", 0, "--threads",
                2, "--timeout=5", "--no-cache", "--resume", "--json"]  # fmt: skip
    r = runner.invoke(app, [str(a) for a in ["estimate", *run_line]])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["total"] == est["total"]
    r = runner.invoke(app, [str(a) for a in ["estimate", *sel, "--thread", 2]])
    assert r.exit_code == 1 and "No such option for estimate: --thread" in r.output

    r = runner.invoke(app, [str(a) for a in ["estimate", *sel, "--lm", GPT, "--actual", tmp_path / "run", "--json"]])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["programs"][0]
    assert row["actual"] == {"predictions": 4, "lm_calls": 4, "prompt_tokens": 4000, "cached_tokens": 3072,
                             "completion_tokens": 40, "usd": pytest.approx(m["usd_total"])}  # fmt: skip
    r = runner.invoke(app, [str(a) for a in ["estimate", *sel, "--history", 58, "--lm", GPT, "--actual",
                                             tmp_path / "run"]])  # fmt: skip
    assert r.exit_code == 1 and "no run of these programs" in r.output

    import mlflow

    from valuesim.tracking import setup_tracking

    setup_tracking()
    logged = mlflow.get_run(ran["params"]["mlflow_run_id"]).data.metrics
    assert logged["usd_total"] == pytest.approx(m["usd_total"]) and logged["cached_tokens_per_pred"] == 768


def test_a_missing_api_key_is_named_as_such(bench_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not 'not reachable': a local OpenAI-compatible server still needs the variable set (to any value)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    args = ["evaluate", "--program", "demographics", "--data", bench_small, "--persons", 1, "--questions", 1,
            "--lm", "openai/local", "--api-base", "http://127.0.0.1:9/v1", "--run-dir", tmp_path / "run"]  # fmt: skip
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 1
    assert "needs an API key: set OPENAI_API_KEY" in r.output and "export OPENAI_API_KEY=none" in r.output


# ---------------------------------------------------------------------------------------------------------------
# Compile: the optimizer's calls


@pytest.mark.parametrize("optimizer", ["bootstrap", "random-search"])
def test_compile_estimate_bounds_the_optimizers_calls(optimizer: str, bench_small: Path) -> None:
    """The calls DSPy's optimizer really makes (DummyLM, no cache) stay within the estimate's optimizer calls."""
    from valuesim.data.benchmark import Benchmark
    from valuesim.optimize.compile import compile_program
    from valuesim.run.runner import split_by_person

    bench = Benchmark(bench_small)
    est = estimate_compile(bench, "demographics", optimizer, 4, 2, GPT, history=20, questions=2)
    examples = bench.examples("values", "train", 1, 20, 4, 2, seed=0)
    trainset, valset = split_by_person(examples, val_share=0.25, seed=0)
    assert est["examples"] == {"train": len(trainset), "val": len(valset), "dev": est["before"]["examples"]}
    runs = est["optimizer_calls"]["program_runs"]
    if optimizer == "bootstrap":
        assert runs == {"bootstrap": len(trainset), "eval_plain": 0, "eval_demos": 0}
    else:  # zero-shot, labeled, unshuffled bootstrap and 4 shuffled candidates, each on the validation set
        assert runs == {"bootstrap": 5 * len(trainset), "eval_plain": len(valset), "eval_demos": 6 * len(valset)}
    lm = use(ScriptedLM({"from_demographics": lambda messages: {"answer": first_option(messages)}}))
    compile_program(Demographics(), optimizer, trainset, valset)
    assert 0 < len(lm.calls) <= est["optimizer_calls"]["lm_calls"]
    assert est["after"]["prompt_tokens"] > est["before"]["prompt_tokens"]  # the compiled program carries demos


def first_option(messages: list[dict]) -> str:
    """The first option code of the question in the last user message (options render as a JSON object)."""
    user = messages[-1]["content"]
    options = json.loads(user[user.index("{", user.index("[[ ## options ## ]]")) :].split("\n\n")[0])
    return next(iter(options))


# ---------------------------------------------------------------------------------------------------------------
# The real thing: llama-cpp-python's server with SmolLM2


@pytest.mark.llm
def test_estimated_prompt_tokens_within_10_percent_of_the_servers(
    bench_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_lm import _smollm2_available

    if not _smollm2_available():
        pytest.skip("llama_cpp or the SmolLM2 GGUF is not installed")
    from test_served import free_port, start_server

    from valuesim.data.benchmark import Benchmark
    from valuesim.run.runner import Setup, run_evaluate

    monkeypatch.setenv("OPENAI_API_KEY", "local")
    port = free_port()
    proc = start_server(port)
    try:
        bench = Benchmark(bench_small)
        base = f"http://127.0.0.1:{port}"
        sel = {"persons": 2, "questions": 1, "histories": [20]}
        for program in ("demographics", "full-info"):
            tiktoken = estimate(bench, [program], "openai/smollm2", **sel)["total"]
            url = f"{base}/extras/tokenize/count"
            served = estimate(bench, [program], "openai/smollm2", tokenize_url=url, **sel)["total"]
            setup = Setup(program=program, lm="openai/smollm2", api_base=f"{base}/v1", persons=2, questions=1,
                          history=20, cache=False, resamples=0, timeout=900)  # fmt: skip
            result, _ = run_evaluate(setup, bench, run_dir=tmp_path / program, progress=False)
            m = result.metrics
            actual = m["prompt_tokens_per_pred"] * m["n"]
            assert m["failed"] == 0 and m["lm_calls_per_pred"] * m["n"] == tiktoken["lm_calls"] == 2
            assert abs(tiktoken["prompt_tokens"] - actual) <= 0.10 * actual, (program, tiktoken, actual)
            assert abs(served["prompt_tokens"] - actual) <= 0.02 * actual, (program, served, actual)
            assert m["completion_tokens_per_pred"] * m["n"] <= tiktoken["completion_tokens_max"]
            assert m["usd_total"] is None  # a self-hosted model has no price
    finally:
        proc.terminate()
        proc.wait(timeout=30)
