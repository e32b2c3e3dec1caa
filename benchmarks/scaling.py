"""How `deid anonymize` scales: 1 and 2 local workers, and a Dask LocalCluster of 2.

Each measure runs the command as a user types it (`deid anonymize IN --out OUT ...`),
in a new interpreter, timed from start to exit (start-up, the plan, the manifest and a
Dask cluster's start included), into a new, empty folder. Beside it, the floor: pydicom
reading and writing each file back unchanged, in 1 and in 2 processes, which says how
far this machine itself scales such work. Measures are taken in interleaved rounds and
each figure is the median over the rounds. Peak RSS is the largest resident set of the
parent process, and of any one worker (a pool worker, or a Dask worker or its nanny).

Run: python benchmarks/scaling.py [--files 1000] [--text-files 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from throughput import floor_copy, floor_copy_2, make_corpus

TAGS = ("--format", "dicom", "--no-ocr")
TEXT = ("--format", "dicom")
MEASURES: dict[str, tuple[str, ...]] = {
    "floor, 1 process": ("floor1",),
    "floor, 2 processes": ("floor2",),
    "tags-only, -j 1": (*TAGS, "-j", "1"),
    "tags-only, -j 2": (*TAGS, "-j", "2"),
    "tags-only, --scheduler local:2": (*TAGS, "--scheduler", "local:2"),
    "text search, -j 1": (*TEXT, "-j", "1"),
    "text search, -j 2": (*TEXT, "-j", "2"),
    "text search, --scheduler local:2": (*TEXT, "--scheduler", "local:2"),
}


def child(args: list[str]) -> None:
    """Run one measure in this process; print seconds and peak RSS (parent, workers)."""
    inputs, out, *options = args
    start, start_wall = time.perf_counter(), time.time()
    if options[0] in ("floor1", "floor2"):
        paths = sorted(Path(inputs).iterdir())
        (floor_copy if options[0] == "floor1" else floor_copy_2)(paths, Path(out))
        code = 0
    else:
        from deid.cli import app

        try:
            app(
                ["anonymize", inputs, "--out", out, "-q", "--key", "bench", *options],
                prog_name="deid",
            )
            code = 0
        except SystemExit as stop:
            code = int(stop.code or 0)
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    steady, first = steady_rate(Path(out), start_wall)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "steady": steady,
                "first": first,
                "parent": own,
                "worker": workers,
                "code": code,
            }
        )
    )


def steady_rate(out: Path, start_wall: float) -> tuple[float, float]:
    """Files/s between the first and the last file to end (the manifest's times), and
    seconds from the start to the first file's end (start-up and plan): a cluster's
    start-up counts once per run, so both are shown."""
    manifest = out / "deid-manifest.sqlite"
    if not manifest.is_file():
        return 0.0, 0.0
    with sqlite3.connect(manifest) as db:
        times = [row[0] for row in db.execute("SELECT finished FROM files ORDER BY finished")]
    if len(times) < 2:
        return 0.0, 0.0
    return (len(times) - 1) / (times[-1] - times[0]), times[0] - start_wall


def measure(name: str, inputs: Path, out: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(inputs), str(out), *MEASURES[name]]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        sys.exit(f"{name}: the run failed with exit code {result['code']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--text-files", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tags_in = root / "tags"
        make_corpus(tags_in, args.files)
        text_in = root / "text"
        text_in.mkdir()
        for path in sorted(tags_in.iterdir())[: args.text_files]:
            os.link(path, text_in / path.name)
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in MEASURES}
        for number in range(args.rounds + 1):  # the first round warms up, uncounted
            for name in MEASURES:
                out = root / "out"
                out.mkdir()
                source = text_in if name.startswith("text") else tags_in
                result = measure(name, source, out)
                if number:
                    rounds[name].append(result)
                shutil.rmtree(out)
                os.sync()
        report(rounds, args.files, args.text_files)


def report(rounds: dict[str, list[dict[str, float]]], files: int, text_files: int) -> None:
    def median(name: str, field: str) -> float:
        return statistics.median(r[field] for r in rounds[name])

    def rate(name: str) -> float:
        count = text_files if name.startswith("text") else files
        return count / median(name, "seconds")

    count = len(next(iter(rounds.values())))
    print(f"CT slices 512x512 with full PHI headers: {files} tags-only, {text_files} with the")
    print(f"text search (default settings, --format dicom); medians of {count} rounds.")
    print("files/s: from the command's start to its exit; steady: between the first and")
    print("the last file to end; start: seconds to the first file's end.")
    header = f"{'measure':34} {'files/s':>8} {'steady':>8} {'start':>6}"
    print(f"{header} {'parent MiB':>11} {'worker MiB':>11}")
    for name in rounds:
        worker, steady = median(name, "worker"), median(name, "steady")
        shown = f"{worker:11.0f}" if worker else f"{'-':>11}"
        start = median(name, "first")
        steady_shown = f"{steady:8.1f} {start:6.2f}" if steady else f"{'-':>8} {'-':>6}"
        print(f"{name:34} {rate(name):8.1f} {steady_shown} {median(name, 'parent'):11.0f} {shown}")
    print()
    ratios = [
        ("machine floor: 2 processes / 1", "floor, 2 processes", "floor, 1 process", None),
        ("tags-only: -j 2 / -j 1", "tags-only, -j 2", "tags-only, -j 1", 1.8),
        ("text search: -j 2 / -j 1", "text search, -j 2", "text search, -j 1", 1.7),
        (
            "tags-only: Dask local:2 / -j 2",
            "tags-only, --scheduler local:2",
            "tags-only, -j 2",
            0.85,
        ),
        (
            "text search: Dask local:2 / -j 2",
            "text search, --scheduler local:2",
            "text search, -j 2",
            0.85,
        ),
    ]
    print(f"{'ratio':34} {'files/s':>8} {'steady':>8}")
    for label, top, bottom, goal in ratios:
        wanted = f"  (goal >= {goal})" if goal else ""
        steady = median(top, "steady") / median(bottom, "steady") if median(top, "steady") else 0
        steady_shown = f"{steady:8.2f}" if steady else f"{'-':>8}"
        print(f"{label:34} {rate(top) / rate(bottom):8.2f} {steady_shown}{wanted}")


if __name__ == "__main__":
    main()
