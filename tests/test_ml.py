"""The baselines a user would pick instead of kNN: `random` (its exact floor) and `ml` (a trained model per held-out
question): trained on training respondents only, never reading a held-out answer, respecting the history size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from valuesim.data.benchmark import Benchmark, items
from valuesim.programs import PROGRAMS, ml
from valuesim.programs.ml import TrainedModel
from valuesim.run.predict import BATCH_INPUTS, evaluate_batch
from valuesim.score.metrics import random_floor


@pytest.fixture(scope="module")
def bench(bench_small: Path) -> Benchmark:
    return Benchmark(bench_small)


def inputs(selected: list[dict]) -> list[dict]:
    return [{k: i[k] for k in BATCH_INPUTS} for i in selected]


def test_random_floor_is_the_mean_of_one_over_options(bench: Benchmark, tmp_path: Path) -> None:
    selected = items(bench, "values", "dev", 1, 58, 20, None)
    result = evaluate_batch(PROGRAMS["random"].from_benchmark(bench), selected, tmp_path, resamples=0)
    scored = [i for i in selected if i["answer"] in i["options"]]  # gold answers on the scale
    expected = np.mean([1 / len(i["options"]) for i in scored])
    assert result.metrics["random_accuracy"] == pytest.approx(expected, rel=1e-12)
    assert random_floor(result.predictions)["random_accuracy"] == pytest.approx(expected, rel=1e-12)
    # the program draws a seeded uniform option per item: its accuracy is near the floor, and reproducible
    assert abs(result.metrics["accuracy"] - expected) < 0.1
    again = PROGRAMS["random"].from_benchmark(bench).predict_batch(inputs(selected))
    assert list(result.predictions.sort_values("key")["answer"]) == [
        g.answer
        for _, g in sorted(zip([f"{i['person_id']}|{i['question_code']}" for i in selected], again, strict=True))
    ]
    assert all(
        g.probs == dict.fromkeys(i["options"], 1 / len(i["options"])) for g, i in zip(again, selected, strict=True)
    )


class DevAltered(Benchmark):
    """The same benchmark, with every dev respondent's answers (respondents table and fold rows) changed."""

    def respondents(self, split: str | None = None):
        df = super().respondents(split)
        values = [q.code for q in self.catalog if q.kind == "value" and q.code in df]
        dev = df["split"] == "dev"
        df.loc[dev, values] = df.loc[dev, values].where(df.loc[dev, values].isna(), 1)
        return df

    def rows(self, protocol: str, split: str, fold: int):
        ds = super().rows(protocol, split, fold)
        if split != "dev":
            return ds
        return ds.map(lambda r: {"heldout": [{"q": i["q"], "a": 1} for i in r["heldout"]]})


def test_ml_never_reads_held_out_answers(bench: Benchmark, bench_small: Path) -> None:
    """Changing the held-out answers of the predicted persons (and every dev answer) changes no prediction: the
    model is trained on training respondents only, and predicting reads only the inputs (not the gold answer)."""
    selected = items(bench, "values", "dev", 1, 58, 12, 6)  # 6 questions: 6 fits per program
    original = TrainedModel.from_benchmark(bench).predict_batch(inputs(selected))
    ml._FITS.clear()  # the altered benchmark has the same fingerprint: fit again, do not reuse
    altered = TrainedModel.from_benchmark(DevAltered(bench_small))
    assert altered.predict_batch(inputs(selected)) == original
    wrong_gold = [{**i, "answer": "1"} for i in selected]  # extra keys, as an item with its gold would carry
    assert altered.predict_batch(wrong_gold) == original
    train_ids = set(altered.rows(1).person_id)
    assert train_ids and not train_ids & {i["person_id"] for i in selected}
    ml._FITS.clear()


def test_ml_at_history_0_sees_only_demographics_and_country(bench: Benchmark) -> None:
    """At history 0 a person is their demographics and country: renaming them changes nothing, and two persons
    with the same demographics and country get the same answers."""
    program = TrainedModel.from_benchmark(bench)
    selected = items(bench, "values", "dev", 1, 0, None, 6)
    demographics = {q.code for q in bench.catalog if q.kind == "demographic"}
    assert all(set(i["known"]) <= demographics for i in selected)
    answers = program.predict_batch(inputs(selected))
    renamed = [{**i, "person_id": f"someone-{n}"} for n, i in enumerate(inputs(selected))]
    assert program.predict_batch(renamed) == answers
    twin = [{**i, "person_id": "twin", "known": dict(i["known"])} for i in inputs(selected)]
    assert program.predict_batch(twin) == answers


def test_ml_uses_the_history_it_is_given(bench: Benchmark) -> None:
    """Known answers change predictions (the model reads them), answers outside `known` cannot: at history 58 the
    items hold only the first 58 profile answers, and the same inputs give the same answers in any batch."""
    program = TrainedModel.from_benchmark(bench)
    h0 = program.predict_batch(inputs(items(bench, "values", "dev", 1, 0, None, 6)))
    h232 = program.predict_batch(inputs(items(bench, "values", "dev", 1, 232, None, 6)))
    assert len(h0) == len(h232) and sum(a != b for a, b in zip(h0, h232, strict=True)) > 0
    selected = items(bench, "values", "dev", 1, 58, 6, None)
    assert all(
        len(set(i["known"]) - {q.code for q in bench.catalog if q.kind == "demographic"}) <= 58 for i in selected
    )


def test_ml_settings(bench: Benchmark) -> None:
    with pytest.raises(ValueError, match="model must be one of"):
        TrainedModel.from_benchmark(bench, model="svm")
    logreg = TrainedModel.from_benchmark(bench, model="logreg", max_iter=50)
    selected = items(bench, "values", "dev", 1, 58, 6, 5)
    answers = logreg.predict_batch(inputs(selected))
    assert all(a.answer in i["options"] for a, i in zip(answers, selected, strict=True))
    assert [a.answer for a in answers] == [logreg(**i).answer for i in inputs(selected)]
    assert [a.probs for a in answers] == [logreg(**i).probs for i in inputs(selected)]


def test_an_item_with_more_codes_than_hgb_takes_keeps_the_most_frequent() -> None:
    """The whole WVS-7's per-country items (Q223 parties, Q290 ethnic groups) have ~500 codes over 66 countries;
    HistGradientBoosting takes at most 255 categories per feature (it failed on the synthetic whole WVS-7)."""
    column = np.concatenate([np.arange(600.0), np.repeat([7.0, 500.0], 3), [np.nan]])
    kept = ml.Features.categories(column)
    assert len(kept) == ml.MAX_CATEGORIES and np.all(np.diff(kept) > 0)
    assert {7.0, 500.0} <= set(kept)  # the frequent codes stay; of the single ones, the lowest (stable order)
    assert np.array_equal(ml.Features.categories(np.array([3.0, 1.0, np.nan, 3.0])), [1.0, 3.0])


def test_hgb_fits_features_of_an_item_with_hundreds_of_codes(bench: Benchmark) -> None:
    """What the fit does, on 1,200 training rows whose nominal item has 400 codes: before the cap, sklearn refused
    the feature ('expected to have a cardinality <= 255')."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    train = bench.respondents("train").sample(1200, replace=True, random_state=0).reset_index(drop=True)
    code = next(q.code for q in bench.catalog if not q.open and not q.ordinal and q.code in train)
    train[code] = np.arange(len(train)) % 400 + 1000
    features = ml.Features(train, bench.catalog)
    persons = [
        (row["country"], {c: row[c] for c in features.codes if not np.isnan(row[c])}) for _, row in train.iterrows()
    ]
    x = features.encoded(persons, "hgb")
    assert np.nanmax(x[:, features.column[code]]) == ml.MAX_CATEGORIES - 1
    target = np.arange(len(train)) % 3
    model = HistGradientBoostingClassifier(max_iter=2, categorical_features=features.hgb_categorical).fit(x, target)
    assert model.predict(x).shape == (len(train),)


def test_training_copies_from_fold_arrays_equal_the_persons_they_stand_for(bench: Benchmark) -> None:
    """The training inputs are built from the fold's rows as arrays (the whole WVS-7's 17 million answers as dicts
    took 4.7 GB): copy j of row r knows the demographics and the first history_of(r, j) profile answers, exactly
    the `known` dict a dev person of that history size has, and each question's targets are the copies that
    answered it, in order."""
    program = TrainedModel.from_benchmark(bench, copies=3)
    rows = list(bench.rows("values", "train", 1))
    copies = [
        (
            r["country"],
            {i["q"]: i["a"] for i in [*r["demographics"], *r["profile"][: program.history_of(r["person_id"], c)]]},
        )
        for r in rows
        for c in range(3)
    ]
    x, targets, _ = program.training(1)
    assert np.array_equal(x, program.features.encoded(copies, "hgb"), equal_nan=True)
    assert len({program.history_of(r["person_id"], c) for r in rows for c in range(3)}) > 1  # sizes differ
    expected: dict[str, list[tuple[int, int]]] = {}
    for n, r in enumerate(rows):
        for c in range(3):
            for i in r["heldout"]:
                expected.setdefault(i["q"], []).append((3 * n + c, i["a"]))
    assert {q: list(zip(lines.tolist(), a.tolist(), strict=True)) for q, (lines, a) in targets.items()} == expected
    logreg = TrainedModel.from_benchmark(bench, model="logreg", copies=3)
    assert (logreg.training(1)[0] != logreg.features.encoded(copies, "logreg")).nnz == 0


def test_items_ranked_by_their_mutual_information_with_each_held_out_question(bench: Benchmark) -> None:
    """hgb reads each question's `top` items by mutual information with its answer, computed for all pairs at once
    from sparse counts: the ranking follows scikit-learn's mutual_info_score over the persons who gave both, and
    leaves out only items that tell nothing about the question."""
    from sklearn.metrics import mutual_info_score

    program = TrainedModel.from_benchmark(bench)
    rows = program.rows(1)
    x = rows.raw(program.features, np.full((len(rows), 1), np.nan))
    ranked = program.ranked_items(x, rows)
    h = rows.heldout
    assert set(ranked) == {h.codes[q] for q in np.unique(h.q)}
    for n, code in enumerate(sorted(ranked)):
        if n % 5:  # every fifth question: the check is slow in Python
            continue
        answered = h.q == h.codes.index(code)
        gold = np.full(len(rows), np.nan)
        gold[h.row[answered]] = h.a[answered]
        mi = []
        for item, universe in enumerate(program.features.universe):
            both = ~np.isnan(gold) & np.isin(x[:, item], universe)
            mi.append(mutual_info_score(x[both, item], gold[both]) if both.any() else 0.0)
        mi = np.array(mi)
        got = ranked[code]
        assert np.all(np.diff(mi[got]) <= 1e-9), code  # most informative first
        assert set(np.flatnonzero(mi > 1e-9)) <= set(got.tolist()), code  # every informative item ranked
        assert len(got) > 0
