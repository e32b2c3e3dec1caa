"""Time and peak memory to refuse each bomb, beside floors measured in the same run.

The bombs are those of the test suite (`tests/bombs.py`): a 2 KB JPEG whose frame header
claims 65500 x 65500 pixels, an RLE image claiming 65535 x 65535, deflated datasets that
inflate far past their header, a 2 MB deflated file whose header truthfully declares 1024
frames of 1024 x 1024 16-bit pixels (2 GiB of zeros), valid headers followed by tens of
megabytes of zeros.

(a) As a user meets them: `deid anonymize BOMB --out DIR --format dicom,png` (text search
    on, the default) in a new process, its wall time and peak resident memory (the
    kernel's high-water mark of the run and of every process it waited for), beside the
    floors "python -c 'import deid.cli'" and the same command on one valid CT slice.
(b) The refusal alone: `pipeline.process` of each bomb in one process, after a valid
    file, its seconds and how far the process's peak memory grew (the target: under a
    second and under 200 MB each).

Medians of --repeats runs. Linux only. Run: python benchmarks/limits.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from bombs import BOMBS, ct, refusals

CLI = [sys.executable, "-c", "from deid.cli import main; main()"]


def timed_run(command: list[str]) -> tuple[int, float, float]:
    """Exit code, wall seconds and peak MiB of `command` and the processes it waited for."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, seconds, usage.ru_maxrss / 1024


def median_run(
    command: Callable[[Path], list[str]], repeats: int, folder: Path
) -> tuple[int, float, float]:
    """`timed_run` `repeats` times, each writing into a new folder under `folder`."""
    runs = [timed_run(command(folder / f"out{i}")) for i in range(repeats)]
    codes = {code for code, _, _ in runs}
    return (
        codes.pop() if len(codes) == 1 else -1,
        statistics.median(s for _, s, _ in runs),
        statistics.median(m for _, _, m in runs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        valid = root / "in" / "valid-ct"
        ct().save_as(valid, enforce_file_format=True)
        paths = {}
        for name, (make, _, _) in BOMBS.items():
            paths[name] = root / "in" / name
            paths[name].write_bytes(make())

        def anonymize(path: Path) -> Callable[[Path], list[str]]:
            return lambda out: [*CLI, "anonymize", str(path), "--out", str(out), "-f", "dicom,png"]

        run = 0

        def fresh() -> Path:
            nonlocal run
            run += 1
            return root / f"run{run}"

        print(f"(a) deid anonymize FILE --format dicom,png, medians of {args.repeats}")
        print(f"{'':46} {'exit':>4} {'seconds':>8} {'peak MiB':>9} {'MiB over':>9}")
        _, import_s, import_mib = median_run(
            lambda _: [sys.executable, "-c", "import deid.cli"], args.repeats, fresh()
        )
        print(f"{'floor: import deid.cli':46} {'':>4} {import_s:8.2f} {import_mib:9.0f}")
        code, floor_s, floor_mib = median_run(anonymize(valid), args.repeats, fresh())
        print(f"{'floor: one valid CT slice':46} {code:4} {floor_s:8.2f} {floor_mib:9.0f}")
        worst = (-float("inf"), -float("inf"))
        for name, path in paths.items():
            code, seconds, mib = median_run(anonymize(path), args.repeats, fresh())
            size = path.stat().st_size
            shown = f"{size / 1024:.0f} KiB" if size < 1 << 20 else f"{size / (1 << 20):.0f} MiB"
            label = f"{name} ({shown})"
            print(f"{label:46} {code:4} {seconds:8.2f} {mib:9.0f} {mib - floor_mib:9.0f}")
            worst = (max(worst[0], seconds - floor_s), max(worst[1], mib - floor_mib))
        print(
            f"worst above the valid slice's run: {worst[0]:+.2f} s, {worst[1]:+.0f} MiB"
            "  (the slice is decoded, searched and written; a bomb is refused unread)"
        )

        print("\n(b) the refusal alone, in one process after a valid file")
        results = refusals(fresh(), valid, list(paths.values()), text=True)
        print(f"{'':38} {'kind':>11} {'ms':>8} {'MiB grown':>9}")
        for r in results:
            print(f"{r['name']:38} {r['kind']:>11} {r['seconds'] * 1000:8.1f} {r['grown_mb']:9.1f}")
        met = all(r["seconds"] < 1.0 and r["grown_mb"] < 200 for r in results)
        print(f"every bomb under 1 s and 200 MB: {'yes' if met else 'NO'}")


if __name__ == "__main__":
    main()
