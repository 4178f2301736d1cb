"""Cost of `valuesim compile` before any LM call: the program on dev before and after, and the optimizer's runs on
the training and validation persons, from prompts rendered as valuesim.estimate.runs renders an evaluate's.

How many times each optimizer runs the program is read from how valuesim.optimize.compile configures it (DSPy's own
sizing for MIPROv2 and GEPA); candidates with demos are priced like the compiled program, whose demos are the
program's own rendered training calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dspy
from dspy.utils.dummies import DummyLM

from valuesim.errors import ValueSimError
from valuesim.estimate.runs import Counter, RenderedCall, dollars, estimate_program, price, render, tally

if TYPE_CHECKING:
    from valuesim.data.benchmark import Benchmark


def with_demos(program: dspy.Module, train_calls: list[RenderedCall], demos: int, max_chars: int) -> dspy.Module:
    """A copy of `program` carrying, per module, `demos` demos made of its own rendered training calls (bounded
    outputs), as bootstrapped demos look; demos longer than `max_chars` are dropped as compile_program drops them."""
    from valuesim.optimize.compile import drop_long_demos

    copy = program.deepcopy()
    for name, predictor in copy.named_predictors():
        fields = predictor.signature.fields
        predictor.demos = [
            dspy.Example(**{k: v for k, v in {**c.inputs, **c.outputs}.items() if k in fields}, augmented=True)
            for c in train_calls
            if c.module == name
        ]
    drop_long_demos(copy, max_chars)  # keeps the ones that fit, in order
    for _, predictor in copy.named_predictors():
        predictor.demos = predictor.demos[:demos]
    return copy


def scaled(t: dict, runs: float, per: int) -> dict:
    """A tally of `per` program runs scaled to `runs` runs."""
    f = runs / max(per, 1)
    return {k: round(t[k] * f) for k in ("lm_calls", "prompt_tokens", "completion_tokens_max")}


def add(*tallies: dict) -> dict:
    return {k: sum(t[k] for t in tallies) for k in ("lm_calls", "prompt_tokens", "completion_tokens_max")}


def optimizer_runs(optimizer: str, program: dspy.Module, n_train: int, valset: list, seed: int, demos: int,
                   candidates: int) -> dict:  # fmt: skip
    """How many times each optimizer runs the program, as valuesim.optimize.compile configures it: `bootstrap`
    traces (on training examples, no demos), `eval_plain` / `eval_demos` (validation examples, by candidates
    without / with demos), and `proposer_calls` (MIPROv2's and GEPA's instruction writer; prompts not rendered).
    Upper bounds: bootstrapping stops once it has `demos` good traces, GEPA once its budget is spent."""
    n_val = len(valset)
    if optimizer == "bootstrap":  # BootstrapFewShot, one round
        return {"bootstrap": n_train, "eval_plain": 0, "eval_demos": 0, "proposer_calls": 0}
    if optimizer == "random-search":  # seeds -3 (zero-shot), -2 (labeled), -1 (bootstrap) and `candidates` more
        return {"bootstrap": (candidates + 1) * n_train, "eval_plain": n_val, "eval_demos": (candidates + 2) * n_val,
                "proposer_calls": 0}  # fmt: skip
    if optimizer == "mipro":  # MIPROv2 auto="light": DSPy's own sizing and call estimate (_estimate_lm_calls)
        from dspy.teleprompt.mipro_optimizer_v2 import MIPROv2

        from valuesim.optimize.metric import answer_metric

        idle = DummyLM([])  # sizing only: no model is called
        mipro = MIPROv2(metric=answer_metric, auto="light", max_bootstrapped_demos=demos, max_labeled_demos=demos,
                        prompt_model=idle, task_model=idle)  # fmt: skip
        # private: MIPROv2 exposes no public sizing for auto runs, and these are the numbers compile() would use
        # (pinned by tests/test_private_apis.py)
        mipro._set_random_seeds(seed)
        trials, val, minibatch, n_instr, n_fewshot = mipro._set_hyperparams_from_run_mode(
            program, None, True, False, valset, None, None
        )
        evals = 35 * trials + len(val) * (trials // 5 + 1) if minibatch else len(val) * trials
        n_pred = len(program.predictors())
        return {"bootstrap": n_fewshot * n_train, "eval_plain": len(val), "eval_demos": evals,
                "proposer_calls": 10 + n_instr * n_pred + n_pred + 1}  # fmt: skip
    if optimizer == "gepa":  # GEPA auto="light": its metric-call budget; one reflection per 2 x 3-example minibatches
        from dspy.teleprompt.gepa.gepa import AUTO_RUN_SETTINGS, GEPA

        # auto_budget reads nothing from the instance (building one needs a reflection LM)
        budget = GEPA.auto_budget(None, len(program.predictors()), AUTO_RUN_SETTINGS["light"]["n"], n_val)
        return {"bootstrap": 0, "eval_plain": budget, "eval_demos": 0, "proposer_calls": budget // 6}
    raise ValueSimError(f"unknown optimizer {optimizer!r}")


def estimate_compile(
    bench: Benchmark,
    program: str,
    optimizer: str,
    train_persons: int,
    dev_persons: int,
    model: str,
    protocol: str = "values",
    fold: int = 1,
    history: int = 232,
    questions: int | None = None,
    seed: int = 0,
    settings: dict | None = None,
    tokenize_url: str | None = None,
    demos: int = 2,
    candidates: int = 4,
    max_demo_chars: int = 4000,
) -> dict:
    """What `valuesim compile` would cost: the program on dev before, the optimizer's runs on the training and
    validation persons (as `run_compile` splits them), and on dev after, with demos rendered from the program's
    own training calls. Candidates with demos are priced like the compiled program."""
    from valuesim.run.runner import build_program, split_by_person

    base, name, _ = build_program(program, bench, settings or {})
    examples = bench.examples(protocol, "train", fold, history, train_persons, questions, seed)
    trainset, valset = split_by_person(examples, val_share=0.25, seed=seed)
    devset = bench.examples(protocol, "dev", fold, history, dev_persons, questions, seed)
    if not trainset or not valset or not devset:
        raise ValueSimError(f"compile needs train, validation and dev examples; selected {len(trainset)}, "
                            f"{len(valset)}, {len(devset)}")  # fmt: skip
    count, p = Counter(model, tokenize_url), price(model)
    train_calls = render(base.deepcopy(), trainset)
    compiled = with_demos(base, train_calls, demos, max_demo_chars)
    train = tally(train_calls, count)
    val_plain = tally(render(base.deepcopy(), valset), count)
    val_demos = tally(render(compiled.deepcopy(), valset), count)
    runs = optimizer_runs(optimizer, base, len(trainset), valset, seed, demos, candidates)
    opt = add(
        scaled(train, runs["bootstrap"], len(trainset)),
        scaled(val_plain, runs["eval_plain"], len(valset)),
        scaled(val_demos, runs["eval_demos"], len(valset)),
    )
    before = estimate_program(base.deepcopy(), devset, count, p)
    after = estimate_program(compiled, devset, count, p)
    opt |= {"program_runs": {k: v for k, v in runs.items() if k != "proposer_calls"},
            "proposer_calls": runs["proposer_calls"],
            "usd_max": dollars(p, opt["prompt_tokens"], opt["completion_tokens_max"])}  # fmt: skip
    total = add(before, opt, after)
    total["usd_max"] = dollars(p, total["prompt_tokens"], total["completion_tokens_max"])
    return {
        "lm": model,
        "tokenizer": count.describe(),
        "price": p,
        "program": name,
        "optimizer": optimizer,
        "examples": {"train": len(trainset), "val": len(valset), "dev": len(devset)},
        "before": before,
        "optimizer_calls": opt,
        "after": after,
        "total": total,
    }
