"""`python -m valuesim.testing OUT [--full]`: write a synthetic WVS-7 folder (see synthetic.py, synthetic_full.py)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from valuesim.testing.synthetic import write_synthetic_wvs
from valuesim.testing.synthetic_full import SHAPE, write_full


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m valuesim.testing",
        description="Write a synthetic WVS-7 folder (the real layout, made-up respondents) for tests and scale "
        "benchmarks. --full: the whole WVS-7 as the official cross-national CSV (97,220 respondents in 66 "
        "countries, ~600 columns, realistic missing answers and per-country options; valuesim.testing.synthetic_full).",
    )
    ap.add_argument("out", type=Path, help="folder to write (created if needed)")
    ap.add_argument(
        "--countries", type=int, default=None,
        help="number of countries: USA, JPN, COL, BGD, then ISO order (default 4); with --full the WVS-7 list (66)",
    )  # fmt: skip
    ap.add_argument("--per-country", type=int, default=100, help="respondents per country (default 100)")
    ap.add_argument(
        "--layout", choices=("xlsx", "csv", "both"), default="xlsx",
        help="labelled countries/*.xlsx (default), the numeric cross-national CSV, or half the countries each",
    )  # fmt: skip
    ap.add_argument("--full", action="store_true", help="the whole WVS-7 as the cross-national file (see above)")
    ap.add_argument(
        "--format", choices=("csv", "sav", "dta", "rds"), default="csv", help="with --full: the file's format"
    )
    ap.add_argument("--respondents", type=int, default=None, help="with --full: respondents in all (default 97,220)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.full:
        countries, n = args.countries or 66, args.respondents or SHAPE["respondents"]
        path = write_full(args.out, countries, n, args.seed, args.format)
    else:
        countries, n = args.countries or 4, (args.countries or 4) * args.per_country
        path = write_synthetic_wvs(
            args.out, countries, args.per_country, args.seed, args.layout != "csv", args.layout != "xlsx"
        )
    print(f"wrote {path}: {n:,} respondents in {countries} countries ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
