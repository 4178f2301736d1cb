"""The served-LM path on a real OpenAI-compatible server: llama-cpp-python's own server with SmolLM2 on 127.0.0.1,
reached through `--lm openai/<name> --api-base ...` exactly as a user reaches vLLM. No network beyond loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dspy
import pytest
from helpers import IMPORTANCE, SCALE10, make_ex
from test_answer_probs import SATISFIED
from test_lm import _smollm2_available
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.lm import build_lm
from valuesim.lm.logprobs import read_codes
from valuesim.programs import PROGRAMS
from valuesim.programs.options import OptionsAdapter
from valuesim.testing.logits import prompt_tokens, reference_llama, reference_probs, token_ids
from valuesim.testing.servers import free_port, start_server

pytestmark = [
    pytest.mark.llm,
    pytest.mark.skipif(not _smollm2_available(), reason="llama_cpp or the SmolLM2 GGUF is not installed"),
]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = start_server(port)
    yield {"port": port, "api_base": f"http://127.0.0.1:{port}/v1"}
    proc.terminate()
    proc.wait(timeout=30)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"OPENAI_API_KEY": "local"})


@pytest.mark.parametrize("program", ["valuesim", "rag", "full-info"])
def test_evaluate_through_the_server(server, bench_small: Path, tmp_path: Path, program: str) -> None:
    r = invoke(
        "evaluate", "--program", program, "--lm", "openai/smollm2", "--api-base", server["api_base"],
        "--threads", 4, "--timeout", 900, "--data", bench_small, "--persons", 2, "--questions", 1, "--history", 20,
        "--run-dir", tmp_path / "run", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    m = out["metrics"]
    assert m["n"] == 2 and m["failed"] == 0 and m["invalid"] == 0  # the schema reached the server's grammar
    assert m["prompt_tokens_per_pred"] > 0 and m["completion_tokens_per_pred"] > 0 and m["lm_calls_per_pred"] >= 1
    assert out["params"]["lm_engine"] == "litellm" and out["params"]["mlflow_run_id"]


def test_simulate_and_compile_through_the_server(server, bench_small: Path, tmp_path: Path) -> None:
    from valuesim.data.benchmark import Benchmark

    ex = Benchmark(bench_small).examples("values", "dev", 1, 20, 1, 1)[0]
    person = tmp_path / "p.json"
    person.write_text(json.dumps({"country": ex.country, "answers": ex.known}))
    # the server runs one request at a time: queued calls on a busy machine need a generous timeout
    lm = ["--lm", "openai/smollm2", "--api-base", server["api_base"], "--timeout", "900"]
    r = invoke("simulate", "--program", "demographics", *lm, "--data", bench_small, "--person", person,
               "--question", ex.question_code, "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["valid"]
    r = invoke("compile", "--program", "demographics", "--optimizer", "bootstrap", *lm, "--data", bench_small,
               "--train", 2, "--dev", 1, "--questions", 1, "--history", 20, "--run-dir", tmp_path / "c",
               "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["after"]["n"] == 1 and Path(summary["program_dir"], "program.json").exists()


def test_server_killed_mid_run_then_resume(bench_small: Path, tmp_path: Path) -> None:
    """In-flight items fail with the reason, the run ends with a summary; after a restart --resume finishes them
    (failed items are retried) with no duplicates."""
    port = free_port()
    proc = start_server(port)
    args = [sys.executable, "-m", "valuesim.cli", "evaluate", "--program", "demographics", "--lm", "openai/smollm2",
            "--api-base", f"http://127.0.0.1:{port}/v1", "--data", str(bench_small), "--persons", 4,
            "--questions", 3, "--history", 20, "--threads", 2, "--timeout", 20, "--run-dir", str(tmp_path / "run"),
            "--json"]  # fmt: skip
    args = [str(a) for a in args]
    env = {
        **os.environ,
        "OPENAI_API_KEY": "local",
        "VALUESIM_HOME": str(tmp_path),
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    run = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    from test_reliability import stored

    deadline = time.time() + 300
    while stored(tmp_path / "run") < 2 and time.time() < deadline:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    first = json.loads(out)["metrics"]
    assert first["n"] == 12 and 0 < first["failed"] < 12
    assert "predictions failed; most often:" in err

    proc = start_server(port)
    try:
        done = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    finally:
        proc.terminate()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metrics"]["failed"] == 0
    assert stored(tmp_path / "run") == 12


@pytest.mark.parametrize(
    ("options", "question"),
    [(IMPORTANCE, None), (SCALE10, f"{SATISFIED} You are completely satisfied, so your answer is 10.")],
    ids=["4 codes", "10 codes"],
)
def test_served_distribution_is_the_softmax_of_the_servers_logits(
    monkeypatch: pytest.MonkeyPatch, options: dict, question: str | None
) -> None:
    """The server's top_logprobs (20) read into the options' distribution equal a softmax of the same model's
    logits (a second llama.cpp instance decoding the same tokens) where every option is in the top 20; an option
    outside them is at the documented floor and the others keep the logits' ratios.

    A fresh server, one request: a server reuses the previous request's KV cache for the shared prompt prefix, and
    logits computed in other batches differ (BENCHMARKS.md §12), so only a first request is evaluated as the
    reference evaluates it (the prompt in one batch, then token by token)."""
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    port = free_port()
    proc = start_server(port)
    try:
        lm = build_lm("openai/smollm2", api_base=f"http://127.0.0.1:{port}/v1", cache=False, timeout=900)
        dspy.configure(lm=lm, adapter=OptionsAdapter())
        pred = PROGRAMS["demographics"]()(**make_ex(options=options, question=question).inputs())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert pred.probs_method == "logprobs" and set(pred.probs) == set(options)
    assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-12)
    entry = lm.history[-1]
    raw = entry["response"].choices[0].logprobs
    raw = raw.model_dump() if hasattr(raw, "model_dump") else raw
    _, floored = read_codes(raw, list(options), pred.answer)
    pieces = [t["token"] for t in raw["content"]]
    end = next(i for i in range(len(pieces)) if '"}' in "".join(pieces[: i + 1])[-3:]) + 1
    ref = reference_llama()
    prompt = prompt_tokens(ref, entry["messages"])
    expected = reference_probs(ref, prompt, token_ids(ref, pieces[:end]), list(options))
    if not floored:
        assert max(abs(pred.probs[c] - expected[c]) for c in options) < 1e-4, (pred.probs, expected)
    # With options floored, the listed ones keep the logits' ratios. Compared per first token ("1" holds codes 1
    # and 10): how "1" splits between them also needs the closing-quote tokens after it, of which the top 20 list
    # only some (see BENCHMARKS.md), so the split is compared apart, more loosely.
    groups: dict[str, list[str]] = {}
    for code in options:
        groups.setdefault(code[0], []).append(code)
    listed = [g for g, codes in groups.items() if not set(codes) & floored]
    ours = {g: sum(pred.probs[c] for c in groups[g]) for g in listed}
    theirs = {g: sum(expected[c] for c in groups[g]) for g in listed}
    assert max(abs(ours[g] / sum(ours.values()) - theirs[g] / sum(theirs.values())) for g in listed) < 1e-4
    for g in listed:
        for c in groups[g]:
            assert abs(pred.probs[c] / ours[g] - expected[c] / theirs[g]) < 0.01, (c, pred.probs, expected)
    assert pred.answer == max(pred.probs, key=pred.probs.get)


class RateLimited(BaseHTTPRequestHandler):
    """Answers 429 with Retry-After to the first `limit` chat requests, then a fixed valid completion."""

    limit = 2
    seen: list[float] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        RateLimited.seen.append(time.time())
        if len(RateLimited.seen) <= RateLimited.limit:
            body = json.dumps({"error": {"message": "rate limited", "type": "rate_limit"}}).encode()
            self.send_response(429)
            self.send_header("Retry-After", "1")
        else:
            content = json.dumps({"answer": "1"})
            body = json.dumps({
                "id": "x", "object": "chat.completion", "created": 0, "model": "stub",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
            }).encode()  # fmt: skip
            self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_429_with_retry_after_is_retried_after_that_delay(bench_small: Path, tmp_path: Path) -> None:
    RateLimited.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RateLimited)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        r = invoke("evaluate", "--program", "demographics", "--lm", "openai/stub", "--api-base",
                   f"http://127.0.0.1:{httpd.server_port}/v1", "--data", bench_small, "--persons", 1,
                   "--questions", 1, "--run-dir", tmp_path / "run", "--json")  # fmt: skip
    finally:
        httpd.shutdown()
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["metrics"]["failed"] == 0
    gaps = [b - a for a, b in zip(RateLimited.seen, RateLimited.seen[1:], strict=False)][:2]
    assert len(RateLimited.seen) >= 3 and all(g >= 0.9 for g in gaps), gaps  # waited for Retry-After
