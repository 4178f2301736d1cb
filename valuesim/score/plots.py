"""Reliability diagrams: how often the answer is right against the probability the program gave it."""

from __future__ import annotations

import io

import pandas as pd

from valuesim.score.metrics import reliability


def reliability_png(items: dict[tuple[int, str], pd.DataFrame]) -> bytes:
    """A PNG of reliability diagrams: one panel per history size, one line per program with scored distributions
    (keys (history, program) -> item table, valuesim.score.stats.item_table); a point per bin of the answer's
    probability with rows, at (mean probability, accuracy). On the diagonal: calibrated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    histories = sorted({h for h, _ in items})
    fig, axes = plt.subplots(1, len(histories), figsize=(3.6 * len(histories) + 0.6, 3.8), squeeze=False)
    for ax, history in zip(axes[0], histories, strict=True):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        for (h, program), table in items.items():
            if h != history:
                continue
            r = reliability(table)
            r = r[r["n"] > 0]
            if len(r):
                ax.plot(r["confidence"], r["accuracy"], marker="o", markersize=3, label=program)
        ax.set_title(f"history {history}")
        ax.set_xlabel("probability of the answer")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share of answers right")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Reliability (10 equal-width bins of the answer's probability)", fontsize=10)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    return png.getvalue()
