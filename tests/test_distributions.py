"""Every statistical program answers with a probability per option, stored with the run and scored with proper
scoring rules (valuesim.score.metrics: log loss, Brier, RPS, ECE; valuesim.score.stats: their intervals)."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import dspy
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from valuesim.data.benchmark import Benchmark, items
from valuesim.errors import ValueSimError
from valuesim.programs import PROGRAMS, needs_lm
from valuesim.programs import ml as ml_module
from valuesim.programs.settings import check_settings
from valuesim.programs.statistical import SMOOTHING_GRID, Tallies, smoothed
from valuesim.run.predict import BATCH_INPUTS, evaluate_batch, read_stored, row_of
from valuesim.run.store import RunStore
from valuesim.score.metrics import (
    EPSILON,
    PROB_METRICS,
    distribution_scores,
    ece,
    prob_matrix,
    prob_scores,
    reliability,
    summarize,
    uniform_floor,
)
from valuesim.score.results import score
from valuesim.score.stats import ece_ci, item_table, paired_difference

NO_LM = [name for name in PROGRAMS if not needs_lm(name)]


@pytest.fixture(scope="module")
def bench(bench_small: Path) -> Benchmark:
    return Benchmark(bench_small)


def table(probs: list[list[float] | None], gold: list[int], method: str = "model", **columns: object) -> pd.DataFrame:
    """A predictions table: one row per forecast, each person one row unless `person_id` says otherwise; the
    answer is the most probable option (first on ties)."""
    n = len(probs)
    return pd.DataFrame({
        "person_id": columns.get("person_id", [f"p{i}" for i in range(n)]),
        "question": columns.get("question", ["Q1"] * n),
        "country": "AAA",
        "ordinal": columns.get("ordinal", [True] * n),
        "n_options": [len(p) if p is not None else 3 for p in probs],
        "gold_pos": [float(g) for g in gold],
        "pred_pos": [float(np.argmax(p)) if p is not None else np.nan for p in probs],
        "probs_pos": probs,
        "probs_method": columns.get("probs_method", [method if p is not None else None for p in probs]),
    })  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# the programs' distributions


@pytest.mark.parametrize("name", NO_LM)
def test_every_statistical_program_gives_a_distribution_over_exactly_the_options(bench: Benchmark, name: str) -> None:
    program = PROGRAMS[name].from_benchmark(bench)
    selected = items(bench, "values", "dev", 1, 58, 10, 8)
    guesses = program.predict_batch([{k: i[k] for k in BATCH_INPUTS} for i in selected])
    for guess, item in zip(guesses, selected, strict=True):
        assert guess.method == ("model" if name == "ml" and guess.method == "model" else "counts")
        assert list(guess.probs) == list(item["options"])
        assert sum(guess.probs.values()) == pytest.approx(1.0, abs=1e-12)
        assert min(guess.probs.values()) >= 0
        if name != "random":  # the answer is the most probable option, ties to the first (random: drawn)
            best = max(guess.probs.values())
            assert guess.answer == next(c for c, p in guess.probs.items() if p == best)
        if name in ("majority", "country", "cell", "knn"):  # smoothed: every option keeps some mass
            assert min(guess.probs.values()) > 0
    pred = program(**{k: selected[0][k] for k in BATCH_INPUTS})  # the per-item path carries them too
    assert pred.probs == guesses[0].probs and pred.probs_method == guesses[0].method


@given(
    votes=st.lists(st.floats(0, 1e4, allow_nan=False), min_size=2, max_size=12).filter(lambda v: sum(v) > 0),
    a=st.sampled_from(SMOOTHING_GRID),
)
@settings(max_examples=200, deadline=None)
def test_smoothing_sums_to_one_and_keeps_the_answer(votes: list[float], a: float) -> None:
    options = {str(n + 1): "" for n in range(len(votes))}
    guess = smoothed(np.array(votes), options, a)
    assert math.isclose(sum(guess.probs.values()), 1.0, abs_tol=1e-9)
    assert all(p > 0 for p in guess.probs.values())
    assert guess.answer == str(int(np.argmax(votes)) + 1)  # top-1 as without smoothing: the first most voted


def test_top_1_is_the_plain_majority_as_before(bench: Benchmark) -> None:
    """The answer is what the unsmoothed tallies vote (Tallies.vote, the majority of the code before distributions),
    for the country program on every item."""
    program = PROGRAMS["country"].from_benchmark(bench)
    selected = items(bench, "values", "dev", 1, 0, None, None)
    tallies = Tallies(program.train, program.codes, program.train["country"])
    everyone = Tallies(program.train, program.codes)
    guesses = program.predict_batch(selected)
    for guess, i in zip(guesses, selected, strict=True):
        old = tallies.vote(i["question_code"], i["options"], i["country"]) or everyone.vote(
            i["question_code"], i["options"]
        )
        assert guess.answer == old


def test_the_smoothing_constant_is_chosen_on_training_persons_or_set(bench: Benchmark) -> None:
    chosen = PROGRAMS["country"].from_benchmark(bench).smoothing_constant()
    assert chosen in SMOOTHING_GRID
    # dev persons' answers changed: the same constant (only training persons are read)
    altered = bench.respondents()
    dev = altered["split"] == "dev"
    values = [q.code for q in bench.catalog if q.kind == "value" and q.code in altered]
    altered.loc[dev, values] = 1
    program = PROGRAMS["country"](altered[altered["split"] == "train"], bench.catalog)
    assert program.smoothing_constant() == chosen
    fixed = PROGRAMS["knn"].from_benchmark(bench, smoothing=2.5)
    assert fixed.smoothing_constant() == 2.5
    check_settings("knn", {"smoothing": 0.5})
    with pytest.raises(ValueSimError, match="smoothing"):
        check_settings("cell", {"smoothing": -1.0})


def test_ml_learns_in_the_run_protocol_which_is_not_a_user_setting(bench: Benchmark) -> None:
    from valuesim.run.runner import Setup, ready_program

    program, _, _ = ready_program(Setup(program="ml", protocol="reference"), bench)
    rows = bench.rows("reference", "train", 1)
    assert program.rows(1).person_id == rows["person_id"]
    assert program.rows(1).profile.a.tolist() == [i["a"] for r in rows["profile"] for i in r]
    with pytest.raises(ValueSimError, match="--set protocol"):
        check_settings("ml", {"protocol": "values"})


def test_ml_answers_a_person_known_by_country_only_with_the_country_shares(bench: Benchmark) -> None:
    selected = [{**{k: i[k] for k in BATCH_INPUTS}, "known": {}} for i in items(bench, "values", "dev", 1, 0, 6, 4)]
    ml_module._FITS.clear()  # fits are shared per process: start without any
    ml = PROGRAMS["ml"].from_benchmark(bench, smoothing=1.0)
    country = PROGRAMS["country"].from_benchmark(bench, smoothing=1.0)
    assert ml.predict_batch(selected) == country.predict_batch(selected)
    assert not ml.fits  # no model was even fitted: nothing known, nothing to read


# ---------------------------------------------------------------------------------------------------------------
# scoring rules


def test_scores_against_hand_computed_values() -> None:
    s = prob_scores(table([[0.2, 0.5, 0.3]], [1]))
    assert s["log_loss"][0] == pytest.approx(-math.log(0.5))
    assert s["brier"][0] == pytest.approx(0.2**2 + 0.5**2 + 0.3**2)
    # cumulative forecast (0.2, 0.7), outcome (0, 1): ((0.2)^2 + (0.3)^2) / 2
    assert s["rps"][0] == pytest.approx((0.04 + 0.09) / 2)
    assert s["confidence"][0] == pytest.approx(0.5) and s["correct"][0]
    nominal = prob_scores(table([[0.2, 0.5, 0.3]], [2], ordinal=[False]))
    assert np.isnan(nominal["rps"][0]) and nominal["log_loss"][0] == pytest.approx(-math.log(0.3))
    impossible = prob_scores(table([[1.0, 0.0, 0.0]], [2]))
    assert impossible["log_loss"][0] == pytest.approx(-math.log(EPSILON))  # floored, not infinite
    assert impossible["brier"][0] == pytest.approx(2.0) and impossible["rps"][0] == pytest.approx(1.0)


@given(k=st.integers(2, 11), gold=st.integers(0, 10))
@settings(max_examples=60, deadline=None)
def test_uniform_and_perfect_forecasts(k: int, gold: int) -> None:
    gold = gold % k
    uniform = prob_scores(table([[1 / k] * k], [gold]))
    assert uniform["log_loss"][0] == pytest.approx(math.log(k))
    assert uniform["brier"][0] == pytest.approx(1 - 1 / k)
    perfect = prob_scores(table([[float(j == gold) for j in range(k)]], [gold]))
    assert perfect["log_loss"][0] == pytest.approx(0.0, abs=1e-12)
    assert perfect["brier"][0] == pytest.approx(0.0) and perfect["rps"][0] == pytest.approx(0.0)
    floor = uniform_floor(table([[0.9] + [0.1 / (k - 1)] * (k - 1)], [gold]))
    assert floor["uniform_log_loss"] == pytest.approx(math.log(k))
    assert floor["uniform_rps"] == pytest.approx(uniform["rps"][0])


def test_ece_of_a_calibrated_forecaster_is_near_zero_and_of_an_overconfident_one_is_not() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    conf = rng.uniform(0.5, 1.0, n)  # two options: the answer (position 0) has probability conf
    right = rng.uniform(size=n) < conf
    probs = [[c, 1 - c] for c in conf]
    calibrated = table(probs, [0 if r else 1 for r in right], ordinal=[False] * n)
    # the sampling error of each bin's hit rate: sd sqrt(sum conf (1 - conf)) / n_bin; ECE is their weighted mean
    bins = np.minimum((conf * 10).astype(int), 9)
    sd = sum(math.sqrt((conf[bins == b] * (1 - conf[bins == b])).sum()) / n for b in np.unique(bins))
    assert ece(calibrated) < 3 * sd
    overconfident = table([[0.9, 0.1]] * n, [0 if r else 1 for r in rng.uniform(size=n) < 0.6], ordinal=[False] * n)
    assert ece(overconfident) == pytest.approx(0.3, abs=0.02)
    low, high = ece_ci(overconfident, n_resamples=200)
    assert low <= ece(overconfident) <= high


def test_point_masses_are_never_averaged_with_distributions() -> None:
    points = table([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [0, 2], method="point")
    m = distribution_scores(points)
    assert m["log_loss"] is None and m["ece"] is None and "point" in m["probs_note"] and m["prob_point"] == 2
    mixed = table([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3], None], [0, 1, 2], probs_method=["point", "model", None])
    m = distribution_scores(mixed)
    # the point row is left out; the row without an answer is scored as uniform (ln 3)
    assert m["prob_n"] == 2 and m["prob_point"] == 1 and m["prob_missing"] == 1
    assert m["log_loss"] == pytest.approx((-math.log(0.5) + math.log(3)) / 2)


def test_population_from_averaged_probabilities_beside_argmaxes() -> None:
    """60% of a country say 1, 40% say 2, and every person is forecast 0.6/0.4: the argmaxes pile everyone on 1
    (JSD > 0), the averaged probabilities are the population's shares (JSD 0)."""
    probs = [[0.6, 0.4]] * 10
    m = distribution_scores(table(probs, [0] * 6 + [1] * 4, ordinal=[False] * 10))
    assert m["jsd_probs"] == pytest.approx(0.0, abs=1e-12)
    assert score(table(probs, [0] * 6 + [1] * 4, ordinal=[False] * 10), resamples=0)["jsd"] > 0.1


def test_paired_log_loss_difference_and_intervals() -> None:
    persons = [f"p{i // 2}" for i in range(40)]
    gold = [0, 1] * 20
    sharp = table([[0.8, 0.2] if g == 0 else [0.3, 0.7] for g in gold], gold, person_id=persons,
                  question=["Q1", "Q2"] * 20, ordinal=[False] * 40)  # fmt: skip
    flat = table([[0.5, 0.5]] * 40, gold, person_id=persons, question=["Q1", "Q2"] * 20, ordinal=[False] * 40)
    d = paired_difference(item_table(sharp), item_table(flat), "log_loss", n_resamples=200)
    expected = (-math.log(0.8) - math.log(0.7)) / 2 - math.log(2)
    assert d["difference"] == pytest.approx(expected) and d["n_items"] == 40
    m = score(sharp, resamples=200)
    assert m["log_loss_ci_low"] <= m["log_loss"] <= m["log_loss_ci_high"]


@given(st.lists(st.one_of(st.none(), st.just([]), st.lists(st.floats(0, 1), min_size=1, max_size=7)), min_size=1,
                max_size=30))  # fmt: skip
def test_the_probability_matrix_puts_each_row_at_its_positions(rows: list) -> None:
    preds = pd.DataFrame({"n_options": [max(len(r or []), 1) for r in rows], "probs_pos": rows})
    m = prob_matrix(preds)
    for row, got in zip(rows, m, strict=True):
        if row:
            assert got[: len(row)].tolist() == row and not got[len(row) :].any()
        else:
            assert np.isnan(got).all()


def test_an_item_table_compares_and_draws_as_its_predictions_table() -> None:
    """What a bench keeps of a finished cell (item_table) gives the paired differences of the predictions tables'
    metrics and the reliability diagram of their ECE, point masses, missing answers and invalid rows included."""
    rng = np.random.default_rng(3)
    n, persons = 600, [f"p{i // 6}" for i in range(600)]
    questions = [f"Q{i % 6}" for i in range(n)]
    gold = rng.integers(0, 3, n).tolist()

    def forecasts(sharpness: float) -> pd.DataFrame:
        probs = [rng.dirichlet([sharpness] * 3).tolist() if rng.random() > 0.1 else None for _ in range(n)]
        t = table(probs, gold, person_id=persons, question=questions, ordinal=(np.arange(n) % 2 == 0).tolist())
        t.loc[::50, "probs_method"] = "point"
        return t

    a, b = forecasts(0.5), forecasts(3.0)
    ia, ib = item_table(a), item_table(b)
    for metric in ("accuracy", "within_one", "nmae", "macro_accuracy"):  # the same items count in both tables
        d = paired_difference(ia, ib, metric, n_resamples=100)
        assert d["difference"] == pytest.approx(summarize(a)[metric] - summarize(b)[metric], abs=1e-12)
    for metric in PROB_METRICS:  # the items both scored
        both = ia[metric].notna() & ib[metric].notna()
        d = paired_difference(ia, ib, metric, n_resamples=100)
        assert d["n_items"] == both.sum() < n
        assert d["difference"] == pytest.approx((ia[metric] - ib[metric])[both].mean(), abs=1e-12)
    r = reliability(ia)
    assert r["n"].sum() == distribution_scores(a)["prob_n"]
    used = r["n"] > 0
    gap = (r.loc[used, "n"] * (r.loc[used, "accuracy"] - r.loc[used, "confidence"]).abs()).sum() / r["n"].sum()
    assert gap == pytest.approx(ece(a), abs=1e-12)
    with pytest.raises(ValueError, match="table a is not an item table"):
        paired_difference(a, ib)


# ---------------------------------------------------------------------------------------------------------------
# store: round trip, resume, rows of LM programs


def test_store_round_trip_and_resume_with_probs(bench: Benchmark, tmp_path: Path) -> None:
    program = PROGRAMS["knn"].from_benchmark(bench)
    selected = items(bench, "values", "dev", 1, 58, 4, 5)
    first = evaluate_batch(program, selected[:10], tmp_path, resamples=0)
    store = RunStore(tmp_path)
    stored = store.frame().set_index("key")
    store.close()
    guesses = program.predict_batch([{k: i[k] for k in BATCH_INPUTS} for i in selected[:10]])
    for item, guess in zip(selected[:10], guesses, strict=True):
        row = stored.loc[f"{item['person_id']}|{item['question_code']}"]
        assert row["probs"] == guess.probs and row["probs_method"] == "counts"
    again = evaluate_batch(program, selected, tmp_path, resamples=0)  # resumes: predicts the other 10
    assert again.metrics["prob_n"] == len(selected) and first.metrics["prob_n"] == 10
    assert read_stored(selected, tmp_path, True, 0, 0).metrics["log_loss"] == pytest.approx(again.metrics["log_loss"])


def test_a_store_from_before_distributions_resumes(bench: Benchmark, tmp_path: Path) -> None:
    """The old schema (no probs columns): its rows read as point masses; a batch program predicts them again
    (cheap, same answers) and the run then scores real distributions."""
    program = PROGRAMS["country"].from_benchmark(bench)
    selected = items(bench, "values", "dev", 1, 0, 3, 3)
    new = evaluate_batch(program, selected, tmp_path / "new", resamples=0)
    with sqlite3.connect(tmp_path / "new" / "predictions.sqlite") as db:
        rows = db.execute("SELECT key, person_id, question, gold, answer, status, error, detail, lm_calls, "
                          "prompt_tokens, completion_tokens, seconds FROM predictions").fetchall()  # fmt: skip
    (tmp_path / "old").mkdir()
    with sqlite3.connect(tmp_path / "old" / "predictions.sqlite") as db:
        db.execute("CREATE TABLE predictions (key TEXT PRIMARY KEY, person_id TEXT, question TEXT, gold TEXT, "
                   "answer TEXT, status TEXT, error TEXT, detail TEXT, lm_calls INTEGER, prompt_tokens INTEGER, "
                   "completion_tokens INTEGER, seconds REAL)")  # fmt: skip
        db.executemany(f"INSERT INTO predictions VALUES ({', '.join('?' * 12)})", rows)
    store = RunStore(tmp_path / "old")
    frame = store.frame()
    assert set(frame["probs_method"]) == {"point"} and all(sum(p.values()) == 1.0 for p in frame["probs"])
    assert store.done() == set(frame["key"]) and not store.done(need_probs=True)
    store.close()
    assert read_stored(selected, tmp_path / "old", True, 0, 0) is None  # a bench re-predicts the cell
    resumed = evaluate_batch(program, selected, tmp_path / "old", resamples=0)
    assert resumed.metrics["accuracy"] == new.metrics["accuracy"]
    assert resumed.metrics["log_loss"] == pytest.approx(new.metrics["log_loss"])


def test_rows_of_lm_programs_carry_their_distribution_or_a_point_mass() -> None:
    example = dspy.Example(person_id="p", question_code="Q1", answer="2", options={"1": "a", "2": "b", "3": "c"})
    given_probs = dspy.Prediction(answer="2", probs={"1": 0.1, "2": 0.6, "3": 0.3}, probs_method="logprobs")
    row = row_of(example, given_probs)
    assert row["probs"] == {"1": 0.1, "2": 0.6, "3": 0.3} and row["probs_method"] == "logprobs"
    assert "probs" not in row["detail"]
    point = row_of(example, dspy.Prediction(answer="3"))
    assert point["probs"] == {"1": 0.0, "2": 0.0, "3": 1.0} and point["probs_method"] == "point"
    invalid = row_of(example, dspy.Prediction(answer="9"))
    assert invalid["probs"] is None and invalid["probs_method"] is None and invalid["status"] == "invalid"
    broken = row_of(example, dspy.Prediction(answer="2", probs={"1": -1.0, "2": 2.0}, probs_method="logprobs"))
    assert broken["status"] == "failed" and "not a probability distribution" in broken["error"]
