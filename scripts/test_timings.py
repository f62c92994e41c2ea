#!/usr/bin/env python3
"""Writes tests/timings.json from NUBO_TEST_TIMINGS output ("<seconds> <test id>" lines): each
test's wall time, set-up to teardown, which tests/conftest.py uses to start the longest work
first under `make test`. With several files (runs), a test's time is its mean.

    NUBO_TEST_TIMINGS=/tmp/t.txt make test
    .venv/bin/python scripts/test_timings.py /tmp/t.txt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "timings.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path, help="NUBO_TEST_TIMINGS output")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    seen: dict[str, list[float]] = {}
    for path in args.files:
        for line in path.read_text().splitlines():
            seconds, _, test = line.partition(" ")
            if test:
                seen.setdefault(test, []).append(float(seconds))
    timings = {t: round(sum(v) / len(v), 1) for t, v in sorted(seen.items())}
    args.out.write_text(json.dumps(timings, indent=0, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(timings)} tests, {sum(timings.values()):.0f} s")


if __name__ == "__main__":
    main()
