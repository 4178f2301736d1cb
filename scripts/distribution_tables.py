"""The BENCHMARKS.md tables of a bench's distribution scores, from its report/results.csv.

    .venv/bin/python scripts/distribution_tables.py runs/sweep-values [--programs knn,ml]

Prints, as markdown: per score (log loss, Brier, RPS, ECE) a table program x history of "value [95% CI]" cells with
the floors (uniform, country shares) under it; the population metrics (JSD, 1-Wasserstein, Kendall tau) from the
answers and from the averaged probabilities; accuracy "value [95% CI]" and each program minus the bench's
reference in accuracy and log loss (paired bootstrap CI, sign-flip p-value).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SCORES = {"log_loss": "log loss", "brier": "Brier", "rps": "RPS", "ece": "ECE", "accuracy": "accuracy"}


def cell(row: pd.Series, metric: str, digits: int = 3) -> str:
    lo, hi = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    if pd.isna(lo) or pd.isna(hi):
        return f"{row[metric]:.{digits}f}"
    return f"{row[metric]:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def p_text(p: float) -> str:
    return "" if pd.isna(p) else "p<0.001" if p < 0.001 else f"p={p:.3f}"


def by_history(results: pd.DataFrame, metric: str) -> str:
    rows = []
    for program, g in results.groupby("program", sort=False):
        rows.append({"program": program} | {str(r["history"]): cell(r, metric) for _, r in g.iterrows()})
    return pd.DataFrame(rows).to_markdown(index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", help="a bench folder (valuesim bench --out)")
    parser.add_argument("--programs", default="knn,ml", help="programs of the population and paired tables")
    args = parser.parse_args()
    results = pd.read_csv(Path(args.bench) / "report" / "results.csv")
    for metric, name in SCORES.items():
        print(f"\n{name} [95% CI]:\n")
        print(by_history(results, metric))
    floors = results.groupby("history")[["uniform_log_loss", "country_log_loss", "uniform_brier", "country_brier",
                                          "uniform_rps", "country_rps"]].first()  # fmt: skip
    print("\nfloors (the same items):\n")
    print(floors.round(3).reset_index().to_markdown(index=False))
    chosen = results[results["program"].isin(args.programs.split(","))]
    population = chosen[["program", "history", "jsd", "jsd_probs", "wasserstein", "wasserstein_probs",
                         "kendall_tau", "kendall_tau_probs"]].round(3)  # fmt: skip
    print("\npopulation, from answers against from averaged probabilities:\n")
    print(population.to_markdown(index=False))
    paired = []
    for _, r in results[results["vs_reference"].notna()].iterrows():
        paired.append({
            "program": r["program"],
            "history": r["history"],
            "accuracy minus reference": f"{cell(r, 'vs_reference')}, {p_text(r['p_value'])}",
            "log loss minus reference": f"{cell(r, 'vs_reference_log_loss')}, {p_text(r['p_value_log_loss'])}",
        })  # fmt: skip
    print("\npaired differences to the reference:\n")
    print(pd.DataFrame(paired).to_markdown(index=False))


if __name__ == "__main__":
    main()
