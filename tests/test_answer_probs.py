"""LM answers as distributions over the options (valuesim/lm/logprobs.py, valuesim/programs/distribution.py).

Mechanics, not science: the option codes' probabilities read from OpenAI-shaped `top_logprobs` (a stub
OpenAI-compatible HTTP server, since no real provider is reachable here), the fallback for a server that refuses
the parameter, `--samples K` with distinct rollouts, and on the embedded SmolLM2 the distribution against a
softmax of the model's own logits read by a second llama.cpp instance (`logits_all=True`, `Llama.eval`).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dspy
import pytest
from helpers import IMPORTANCE, SCALE10, make_ex
from test_lm import needs_smollm2

from valuesim.lm import build_lm, engine_of
from valuesim.lm.logprobs import code_probs, read_codes
from valuesim.programs import PROGRAMS
from valuesim.programs.options import OptionsAdapter
from valuesim.testing.logits import reference_llama, reference_probs

# ---------------------------------------------------------------------------------------------------------------
# Reading the codes' probabilities


def entry(token: str, top: dict[str, float], chosen: float | None = None) -> dict:
    """One element of OpenAI's `logprobs.content`: the chosen token and its top alternatives (logprobs)."""
    alternatives = [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in top.items()]
    return {
        "token": token,
        "logprob": top.get(token, chosen),
        "bytes": list(token.encode()),
        "top_logprobs": alternatives,
    }


def content(*steps: dict) -> dict:
    """`{"answer": "<code>"}` written as OpenAI tokens around the given code steps."""
    head = [entry(t, {t: -0.01}) for t in ('{"', "answer", '":', ' "')]
    return {"content": head + list(steps)}


def close(*steps: dict) -> list[dict]:
    return [*steps, entry('"}', {'"}': -0.01})]


def renormalized(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


def test_single_token_codes_are_renormalized_over_the_options_only() -> None:
    top = {"2": -0.5, "Very": -1.0, "1": -1.5, "4": -2.0, "3": -2.5}  # "Very" is no option: dropped
    probs = code_probs(content(*close(entry("2", top))), list(IMPORTANCE), "2")
    expected = renormalized({c: math.exp(top[c]) for c in IMPORTANCE})
    assert probs == pytest.approx(expected, abs=1e-12)
    assert sum(probs.values()) == pytest.approx(1.0)


def test_an_option_missing_from_the_top_k_gets_the_smallest_listed_probability() -> None:
    top = {"2": -0.5, "Very": -1.0, "1": -1.5, "4": -3.0}  # "3" not listed
    probs, floored = read_codes(content(*close(entry("2", top))), list(IMPORTANCE), "2")
    floor = math.exp(-3.0)  # the smallest listed: an upper bound for anything unlisted
    expected = renormalized({"1": math.exp(-1.5), "2": math.exp(-0.5), "3": floor, "4": math.exp(-3.0)})
    assert probs == pytest.approx(expected, abs=1e-12) and floored == {"3"}


def test_a_code_split_over_two_tokens_multiplies_them_and_ends_at_its_closing_quote() -> None:
    # SmolLM2 writes 10 as "1" + "0"; after "1" the model chooses between the quote (code 1) and "0" (code 10)
    first = {"1": -0.7, "2": -1.2, "3": -2.0, "The": -0.9}
    second = {"0": -0.4, ".": -1.0, '"': -1.6, '"}': -2.5, '",': -3.0}  # "." is no continuation of a code
    probs, floored = read_codes(content(entry("1", first), *close(entry("0", second))), list(SCALE10), "10")
    floor1 = math.exp(min(first.values()))  # codes 4..9: not listed at the first step
    weights = {"2": math.exp(-1.2), "3": math.exp(-2.0), **{str(c): floor1 for c in range(4, 10)}}
    p1 = math.exp(-0.7)
    ends = {"10": math.exp(-0.4), "1": math.exp(-1.6) + math.exp(-2.5) + math.exp(-3.0)}
    weights |= {code: p1 * p / sum(ends.values()) for code, p in ends.items()}
    assert probs == pytest.approx(renormalized(weights), abs=1e-12)
    assert floored == {str(c) for c in range(4, 10)}
    assert max(probs, key=probs.get) == "10"


def test_a_shared_prefix_the_model_did_not_write_is_split_equally() -> None:
    # the model wrote "3": how "1" splits between codes 1 and 10 was never computed
    top = {"3": -0.3, "1": -1.0, "2": -2.0, **{str(d): -4.0 for d in range(4, 10)}}
    probs = code_probs(content(*close(entry("3", top))), list(SCALE10), "3")
    weights = {c: math.exp(top[c]) for c in "23456789"} | {"1": math.exp(-1.0) / 2, "10": math.exp(-1.0) / 2}
    assert probs == pytest.approx(renormalized(weights), abs=1e-12)


def test_tokens_carrying_the_quote_or_the_closing_brace_count_for_their_code() -> None:
    # OpenAI-style merges: the opening quote inside the code's token, the closing one with the brace
    head = [entry(t, {t: -0.01}) for t in ('{"', "answer", '":')]
    top = {' "2': -0.4, ' "1': -1.1, ' "': -2.0, ' "{': -2.2, ' "3"}': -2.4, ' "4': -3.0}
    probs = code_probs({"content": [*head, *close(entry(' "2', top))]}, list(IMPORTANCE), "2")
    expected = renormalized({"1": math.exp(-1.1), "2": math.exp(-0.4), "3": math.exp(-2.4), "4": math.exp(-3.0)})
    assert probs == pytest.approx(expected, abs=1e-12)


def test_no_logprobs_or_no_answer_in_them_gives_none() -> None:
    assert code_probs(None, list(IMPORTANCE), "1") is None
    assert code_probs({"content": []}, list(IMPORTANCE), "1") is None
    prose = {"content": [entry("I", {"I": -0.1}), entry(" think", {" think": -0.1})]}
    assert code_probs(prose, list(IMPORTANCE), "1") is None


# ---------------------------------------------------------------------------------------------------------------
# A stub OpenAI-compatible server


class Stub:
    """A chat-completions endpoint on 127.0.0.1 answering with `reply(request body) -> (status, body)`; keeps the
    request bodies it received."""

    def __init__(self, reply: Callable[[dict], tuple[int, dict]]):
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                status, payload = reply(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def completion(text: str, logprobs: dict | None = None) -> dict:
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return {
        "id": "stub", "object": "chat.completion", "created": 0, "model": "stub", "choices": [choice],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }  # fmt: skip


@pytest.fixture
def stub_lm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[Stub, dspy.LM]]]:
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    stubs: list[Stub] = []

    def make(reply: Callable[[dict], tuple[int, dict]], cache: bool = False) -> tuple[Stub, dspy.LM]:
        stub = Stub(reply)
        stubs.append(stub)
        lm = build_lm("openai/stub", api_base=stub.api_base, cache=cache, num_retries=0)
        dspy.configure(lm=lm, adapter=OptionsAdapter())
        return stub, lm

    yield make
    for stub in stubs:
        stub.close()


def test_openai_shaped_logprobs_from_a_server_become_the_distribution(stub_lm) -> None:
    first = {"1": -0.7, "2": -1.2, "3": -2.0, "The": -0.9}
    second = {"0": -0.4, ".": -1.0, '"': -1.6, '"}': -2.5}
    logprobs = content(entry("1", first), *close(entry("0", second)))
    stub, _ = stub_lm(lambda body: (200, completion('{"answer": "10"}', logprobs)))
    pred = PROGRAMS["demographics"]()(**make_ex(options=SCALE10).inputs())
    assert stub.requests[-1]["logprobs"] is True and stub.requests[-1]["top_logprobs"] == 20
    assert pred.probs_method == "logprobs" and pred.answer == "10"
    assert pred.probs == pytest.approx(code_probs(logprobs, list(SCALE10), "10"), abs=1e-12)
    assert sum(pred.probs.values()) == pytest.approx(1.0) and set(pred.probs) == set(SCALE10)
    assert "logprobs" not in pred  # the raw token list is read, not kept


def test_a_server_refusing_logprobs_is_asked_again_without_them(stub_lm) -> None:
    def reply(body: dict) -> tuple[int, dict]:
        if body.get("logprobs"):
            return 400, {"error": {"message": "logprobs are not supported", "type": "invalid_request_error"}}
        return 200, completion('{"answer": "3"}')

    stub, _ = stub_lm(reply)
    program = PROGRAMS["demographics"]()
    for _ in range(2):
        pred = program(**make_ex(options=IMPORTANCE).inputs())
        assert pred.answer == "3" and pred.probs_method == "point"
        assert pred.probs == {"1": 0.0, "2": 0.0, "3": 1.0, "4": 0.0}
    # the first item asked with logprobs, then without; the second item no longer asks
    assert [bool(r.get("logprobs")) for r in stub.requests] == [True, False, False]


def test_a_server_error_is_not_taken_for_a_refusal_of_logprobs(stub_lm) -> None:
    stub, _ = stub_lm(lambda body: (500, {"error": {"message": "out of memory", "type": "server_error"}}))
    with pytest.raises(Exception, match="out of memory"):
        PROGRAMS["demographics"]()(**make_ex(options=IMPORTANCE).inputs())
    assert [bool(r.get("logprobs")) for r in stub.requests] == [True]  # raised as is, not retried without


def test_samples_draw_k_distinct_rollouts_when_there_are_no_logprobs(stub_lm) -> None:
    codes = list(IMPORTANCE)

    def reply(body: dict) -> tuple[int, dict]:  # no logprobs; a sampled answer follows the request's seed
        code = codes[body.get("seed", 0) % 3] if body.get("temperature", 0) > 0 else "4"
        return 200, completion(json.dumps({"answer": code}))

    stub, lm = stub_lm(reply, cache=True)
    program = PROGRAMS["demographics"]()
    program.samples = 5
    pred = program(**make_ex(options=IMPORTANCE).inputs())
    sampled = [r for r in stub.requests if r.get("temperature", 0) > 0]
    assert len(sampled) == 5 and sorted(r["seed"] for r in sampled) == [1, 2, 3, 4, 5]
    assert pred.probs_method == "samples"
    assert pred.probs == {"1": 0.2, "2": 0.4, "3": 0.4, "4": 0.0}  # seeds 1..5 -> codes 2, 3, 1, 2, 3
    assert pred.answer == "2"  # a tie between 2 and 3, neither the greedy answer (4): the first in option order
    n = len(stub.requests)
    again = program(**make_ex(options=IMPORTANCE).inputs())  # DSPy's cache keeps each rollout apart
    assert len(stub.requests) == n and again.probs == pred.probs
    # a program carrying its own LM (valuesim.load sets it on the predictors) samples the same way
    own = PROGRAMS["demographics"]()
    own.set_lm(lm)
    own.samples = 5
    with dspy.context(lm=build_lm("dummy")):
        assert own(**make_ex(options=IMPORTANCE).inputs()).probs == pred.probs


def test_samples_are_not_drawn_when_logprobs_are_given(stub_lm) -> None:
    logprobs = content(*close(entry("2", {"2": -0.2, "1": -2.0, "3": -2.5, "4": -3.0})))
    stub, _ = stub_lm(lambda body: (200, completion('{"answer": "2"}', logprobs)))
    program = PROGRAMS["rag"](embedder=lambda texts: [[1.0, 0.0] for _ in texts])
    program.samples = 3
    pred = program(**make_ex(options=IMPORTANCE).inputs())
    assert pred.probs_method == "logprobs" and len(stub.requests) == 1


# ---------------------------------------------------------------------------------------------------------------
# ValueSim's combination


def views(answers: dict[str, str], probs: dict[str, dict[str, float]]) -> Callable[[dict], tuple[int, dict]]:
    """Stub replies for ValueSim: each view (and the coordinator) answers with the given code and logprobs."""

    def reply(body: dict) -> tuple[int, dict]:
        system = body["messages"][0]["content"]
        role = next((r for phrase, r in ROLES.items() if phrase in system), "story")
        if role == "story":
            return 200, completion(json.dumps({"backstory": "You live in Japan."}))
        code = answers[role]
        top = {c: math.log(p) for c, p in probs[role].items()}
        text = json.dumps({"analysis": "because", "answer": code}) if role != "coordinator" else None
        text = text or json.dumps({"answer": code})
        head = [entry(t, {t: -0.01}) for t in text[: text.index(f'"{code}"}}') + 1]]  # one char per token
        return 200, completion(text, {"content": [*head, *close(entry(code, top))]})

    return reply


ROLES = {  # a phrase of each signature's instructions -> the module
    "Three views of the same person disagree": "coordinator",
    "through how you think": "cognitive",
    "through what you feel and value": "affective",
    "through what you do and where you live": "behavioral",
}
UNEVEN = {
    "cognitive": {"1": 0.5, "2": 0.3, "3": 0.1, "4": 0.1},
    "affective": {"1": 0.6, "2": 0.1, "3": 0.2, "4": 0.1},
    "behavioral": {"1": 0.4, "2": 0.4, "3": 0.1, "4": 0.1},
    "coordinator": {"1": 0.1, "2": 0.2, "3": 0.6, "4": 0.1},
}


def test_valuesim_agreeing_views_give_their_mean_distribution(stub_lm) -> None:
    stub_lm(views({"cognitive": "1", "affective": "1", "behavioral": "1"}, UNEVEN))
    pred = PROGRAMS["valuesim"]()(**make_ex(options=IMPORTANCE).inputs())
    assert not pred.coordinated and pred.probs_method == "logprobs" and pred.answer == "1"
    mean = {c: sum(UNEVEN[v][c] for v in ("cognitive", "affective", "behavioral")) / 3 for c in IMPORTANCE}
    assert pred.probs == pytest.approx(mean, abs=1e-9)


def test_valuesim_coordinated_answer_gives_the_coordinators_distribution(stub_lm) -> None:
    stub_lm(views({"cognitive": "1", "affective": "1", "behavioral": "2", "coordinator": "3"}, UNEVEN))
    pred = PROGRAMS["valuesim"]()(**make_ex(options=IMPORTANCE).inputs())
    assert pred.coordinated and pred.probs_method == "logprobs" and pred.answer == "3"
    assert pred.probs == pytest.approx(UNEVEN["coordinator"], abs=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# The embedded engine against its own logits


SATISFIED = "All things considered, how satisfied are you with your life as a whole these days?"


@pytest.fixture(scope="module")
def reference() -> Any:
    return reference_llama()


@pytest.mark.llm
@needs_smollm2
@pytest.mark.parametrize(
    ("options", "question", "written"),
    [
        (IMPORTANCE, None, None),
        (SCALE10, "Pick 10.", "2"),  # SmolLM2 writes 2: codes 1 and 10 share the token 1 equally
        (SCALE10, f"{SATISFIED} You are completely satisfied, so your answer is 10.", "10"),  # "1" then "0"
    ],
    ids=["4 codes", "10 codes, 1 not written", "10 codes, 10 written"],
)
def test_embedded_distribution_is_the_softmax_of_the_models_logits(
    reference: Any, options: dict, question: str | None, written: str | None
) -> None:
    lm = build_lm("smollm2", cache=False, prefix_cache="off", n_ctx=4096)  # the whole prompt in one batch
    dspy.configure(lm=lm, adapter=OptionsAdapter())
    engine = engine_of(lm)
    pred = PROGRAMS["demographics"]()(**make_ex(options=options, question=question).inputs())
    if written is not None:  # the path the case is about (what this model writes, not a claim about people)
        assert pred.answer == written
    llm = engine.loaded.llm
    tokens = [int(t) for t in llm.input_ids[: llm.n_tokens]]
    usage = lm.history[-1]["usage"]
    prompt, generated = tokens[: usage["prompt_tokens"]], tokens[usage["prompt_tokens"] :]
    assert pred.probs_method == "logprobs" and set(pred.probs) == set(options)
    assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-12)
    expected = reference_probs(reference, prompt, generated, list(options))
    assert max(abs(pred.probs[c] - expected[c]) for c in options) < 1e-4, (pred.probs, expected)
    assert pred.answer == max(pred.probs, key=pred.probs.get)


@pytest.mark.llm
@needs_smollm2
def test_valuesim_on_the_embedded_model_gives_a_logprobs_distribution_per_prediction(bench_small) -> None:
    """What `valuesim evaluate --program valuesim --lm smollm2 --persons 2 --questions 3` predicts, read from the
    program's predictions (the store's columns for them are another change's)."""
    from valuesim.data.benchmark import Benchmark

    lm = build_lm("smollm2", cache=False)
    dspy.configure(lm=lm, adapter=OptionsAdapter())
    examples = Benchmark(bench_small).examples("values", "dev", 1, 20, 2, 3)
    assert len(examples) == 6
    program = PROGRAMS["valuesim"]()
    for ex in examples:
        pred = program(**ex.inputs())
        assert pred.probs_method == "logprobs", pred
        assert set(pred.probs) == {str(c) for c in ex.options}
        assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-9)
        assert pred.answer == max(pred.probs, key=pred.probs.get) and pred.answer in pred.probs
