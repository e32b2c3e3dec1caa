"""Peak memory (resident set) of `deid anonymize`, beside its floors.

(a) One large multi-frame file: a native 16-bit XA of 1024x1024 pixels x 1000 frames
    (2 GiB of pixel data, a name burned into a few frames) through
    `--format dicom,png` with the text search on (the default), beside the floors
    "python -c 'import deid.cli'" and the same run on a 4-frame file of the same kind.
    The bound: peak = the 4-frame run + about a dozen decoded frames, whatever the
    number of frames.
(b) Many small files: 100 and 1000 CT slices (`--format dicom,png`: tags and text
    search, `-j 2`), the peak of the parent process and of each worker, and the ratio
    1000/100, which must stay within 1.10.

Peaks are the kernel's high-water mark of each process (VmHWM in /proc, polled while
the run lasts; ru_maxrss for the largest process). Files are generated into a
temporary folder on the same disk as the outputs and removed afterwards. Linux only.
Run: python benchmarks/memory.py [--frames 1000] [--skip-large] [--skip-many]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from throughput import make_corpus

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from conftest import write_long_cine

DEID = Path(sys.executable).with_name("deid")
_MIB = 1024 * 1024


@dataclass
class Peaks:
    """Peak resident set (MiB) of a run's processes, and its wall time."""

    parent: float = 0.0
    workers: dict[int, float] = field(default_factory=dict)
    largest: float = 0.0
    seconds: float = 0.0


def _hwm(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def measure(*args: str | Path) -> Peaks:
    """Run `deid *args` in a fresh interpreter (that interpreter's children only),
    polling the high-water mark of the run and of each of its worker processes."""
    peak_of_children = (
        "import resource, subprocess, sys;"
        "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL);"
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    command = [sys.executable, "-c", peak_of_children, str(DEID), *map(str, args)]
    start = time.perf_counter()
    wrapper = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peaks = Peaks()
    while wrapper.poll() is None:
        for run in _children(wrapper.pid):
            peaks.parent = max(peaks.parent, _hwm(run) or 0.0)
            for worker in _children(run):
                hwm = _hwm(worker)
                if hwm is not None:
                    peaks.workers[worker] = max(peaks.workers.get(worker, 0.0), hwm)
        time.sleep(0.05)
    out = wrapper.stdout.read() if wrapper.stdout else ""
    peaks.seconds = time.perf_counter() - start
    code, largest = out.split()
    if code != "0":
        raise SystemExit(f"deid {' '.join(map(str, args))} exited with {code}")
    peaks.largest = int(largest) / 1024
    return peaks


def import_floor() -> float:
    """Peak RSS (MiB) of `python -c 'import deid.cli'`."""
    code = (
        "import resource, subprocess, sys;"
        "subprocess.call([sys.executable, '-c', 'import deid.cli']);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout) / 1024


def large_file(root: Path, frames: int, size: int) -> None:
    """(a): the large multi-frame file beside its floors."""
    text = {frames // 10: "DOE JOHN", frames // 2: "MRN4471923", frames - 3: "DOE JOHN"}
    small_in, large_in = root / "small", root / "large"
    small_in.mkdir()
    large_in.mkdir()
    write_long_cine(small_in / "cine.dcm", 4, size=size, text={3: "DOE JOHN"})
    made = time.perf_counter()
    file_size = write_long_cine(large_in / "cine.dcm", frames, size=size, text=text)
    made = time.perf_counter() - made
    options = ("--format", "dicom,png", "-j", "1")
    try:
        floor = import_floor()
        small = measure("anonymize", small_in, "--out", root / "small-out", *options)
        large = measure("anonymize", large_in, "--out", root / "large-out", *options)
        (written,) = (root / "large-out").rglob("*.dcm")
        written_size = written.stat().st_size
    finally:
        shutil.rmtree(large_in, ignore_errors=True)
        shutil.rmtree(root / "large-out", ignore_errors=True)
    frame_mib = size * size * 2 / _MIB
    print(f"(a) {frames} frames of {size}x{size} 16-bit: input {file_size / _MIB:.0f} MiB")
    print(f"    (generated in {made:.1f} s); output {written_size / _MIB:.0f} MiB")
    print(f"    floor: python -c 'import deid.cli'       {floor:7.0f} MiB")
    print(f"    floor: same run, 4-frame file            {small.largest:7.0f} MiB")
    print(
        f"    {frames}-frame file (dicom,png, text search) {large.largest:7.0f} MiB"
        f"  in {large.seconds:.1f} s"
    )
    extra = large.largest - small.largest
    print(
        f"    above the 4-frame run: {extra:.0f} MiB = {extra / frame_mib:.1f} decoded frames"
        f" of {frame_mib:.1f} MiB; {large.largest / (file_size / _MIB):.2f} x the input size"
    )


def many_files(root: Path, counts: tuple[int, ...]) -> None:
    """(b): peaks for 100 and 1000 small files, parent and workers."""
    corpus = root / "corpus"
    paths = make_corpus(corpus, max(counts))
    results: dict[int, Peaks] = {}
    for count in counts:
        folder = root / f"in-{count}"
        folder.mkdir()
        for path in paths[:count]:
            os.link(path, folder / path.name)
        out = root / f"out-{count}"
        results[count] = measure(
            "anonymize", folder, "--out", out, "--format", "dicom,png", "-j", "2"
        )
        shutil.rmtree(root / f"out-{count}", ignore_errors=True)
        shutil.rmtree(folder)
    print("(b) CT slices, --format dicom,png (tags, text search), -j 2: peak RSS, MiB")
    for count, peaks in results.items():
        workers = ", ".join(f"{v:.0f}" for v in sorted(peaks.workers.values()))
        print(
            f"    {count:5d} files: parent {peaks.parent:6.0f}  workers [{workers}]"
            f"  largest {peaks.largest:6.0f}  in {peaks.seconds:.1f} s"
        )
    low, high = results[min(counts)], results[max(counts)]
    worker_ratio = max(high.workers.values()) / max(low.workers.values())
    print(
        f"    ratio {max(counts)}/{min(counts)}: parent {high.parent / low.parent:.3f},"
        f" worker {worker_ratio:.3f} (must be within 1.10)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--counts", type=int, nargs=2, default=(100, 1000))
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-many", action="store_true")
    parser.add_argument("--tmp", type=Path, default=None, help="where to generate files")
    options = parser.parse_args()
    need = options.frames * options.size * options.size * 2 * 2.1
    with tempfile.TemporaryDirectory(prefix="deid-memory-", dir=options.tmp) as folder:
        root = Path(folder)
        if not options.skip_large:
            free = shutil.disk_usage(root).free
            if free < need:
                raise SystemExit(
                    f"needs {need / 2**30:.1f} GiB free in {root}, has {free / 2**30:.1f}"
                )
            large_file(root, options.frames, options.size)
        if not options.skip_many:
            many_files(root, tuple(options.counts))


if __name__ == "__main__":
    main()
