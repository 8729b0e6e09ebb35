"""What DATA adds to `train`'s start-up: the seconds of its start-up check (dataset.startup.check_once, the only
start-up step that reads DATA), with no earlier check to reuse, for each DATA folder given.

    python benchmarks/train_startup.py DATA DATA_WITH_30_MORE_PAIRS --json

Each folder is checked three times, each time as a first start on the machine (a fresh check cache), and the
median is printed with the folder's pair counts; with two folders, the difference of their medians too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from magicanimate_cli.dataset.reader import DataFolder
from magicanimate_cli.dataset.startup import check_once


def cold_check_s(data: Path, repeats: int = 3) -> tuple[float, int, int]:
    """(median seconds, videos, of which ready) of a first start's check."""
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            started = time.perf_counter()
            contents = check_once(DataFolder(data), cache=Path(cache))
            times.append(time.perf_counter() - started)
    return statistics.median(times), len(contents.videos), len(contents.ready)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [{"data": str(d), **dict(zip(("check_s", "videos", "ready"), cold_check_s(d)))} for d in args.data]
    record = {"folders": rows}
    if len(rows) == 2:
        record["delta_s"] = round(rows[1]["check_s"] - rows[0]["check_s"], 3)
    print(json.dumps(record) if args.json else "\n".join(map(str, rows + [record.get("delta_s")])))


if __name__ == "__main__":
    main()
