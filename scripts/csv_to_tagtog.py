"""Turn a labelled CSV into a tagtog project export folder that the emulator can --load.

    python -m scripts.csv_to_tagtog ../shared/data/sms_spam/sms_spam.csv out/sms --label-name isSpam \
        --positive spam --labelled 0

Documents are named ``row<N>.txt`` (N = CSV row), so a simulated annotator can look the truth up.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from emulator.export import write_export

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m scripts.csv_to_tagtog", description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", type=Path, help="input CSV")
    ap.add_argument("out", type=Path, help="export folder to write (created)")
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--label-col", default="label")
    ap.add_argument("--label-name", default="label", help="tagtog document label name (e.g. isSpam)")
    ap.add_argument("--positive", default=None,
                    help="make the label boolean: true for this CSV value (e.g. spam), false otherwise")
    ap.add_argument("--labelled", type=int, default=0, help="how many first rows carry a confirmed label")
    ap.add_argument("--limit", type=int, default=0, help="only the first N rows (0 = all)")
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(message)s")
    df = pd.read_csv(args.csv, keep_default_na=False)
    if args.limit:
        df = df.head(args.limit)
    def label(i: int, v: str) -> object:
        if i >= args.labelled:
            return None
        return (v == args.positive) if args.positive is not None else v
    rows = ((f"row{i}.txt", t, label(i, v)) for i, (t, v) in enumerate(zip(df[args.text_col], df[args.label_col])))
    ids = write_export(args.out, rows, args.label_name)
    logger.info("wrote %d documents (%d labelled) to %s", len(ids), min(args.labelled, len(ids)), args.out)


if __name__ == "__main__":
    main()
