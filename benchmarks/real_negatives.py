"""Real scans with no text: boxes the text search puts on them, and what it costs.

Images: `../shared/real-negatives/` (real MR, CT and PET slices with no burned-in
text; skipped when absent) and every image pydicom ships in its own package. On these
a correct text search covers nothing: the target is 0 boxes on every image.

Per image it runs the path `deid anonymize` takes by default (`pipeline.inspect` with
the safe-harbor profile: decode, render, text search with its second look) and prints
the boxes and the share of pixels they cover. Then it times `deid anonymize` as a user
runs it on the real MR series (copied to fill `--files` inputs), text search on
(default) against `--no-ocr`, with 1 and 2 workers, in interleaved rounds, and prints
medians and ratios (targets: on/off >= 0.2 with one worker, 2 workers >= 1.7x one),
and how far the floor itself scales to 2 workers on this machine.

Run: python benchmarks/real_negatives.py [--files 96] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pydicom
import pydicom.data
from pydicom.uid import generate_uid

from deid import pipeline, profiles
from deid import settings as settings_mod
from deid.errors import DeidError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "real-negatives"
# pydicom's ultrasound examples carry burned-in text (a clinic, times, settings), and
# GDCMJ2K_TextGBR the words red, green and blue: positives, not negatives, left out here.
WITH_TEXT = ("examples_", "GDCMJ2K_TextGBR")


def real_images() -> list[Path]:
    """Every file of the shared real negatives, then pydicom's bundled test files."""
    found = sorted(p for p in SHARED.rglob("*") if p.is_file() and p.suffix != ".md")
    bundled = Path(pydicom.data.__file__).parent / "test_files"
    found += sorted(
        p for p in bundled.glob("*.dcm") if p.is_file() and not p.name.startswith(WITH_TEXT)
    )
    return found


def boxes_on(paths: list[Path]) -> tuple[int, int, int]:
    """Images searched, images with a box, and prints one line per image with boxes."""
    settings = settings_mod.Settings.for_profile(
        profiles.load("safe-harbor"), os.urandom(32), Path(tempfile.gettempdir())
    )
    searched = with_boxes = 0
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = pipeline.inspect(path, settings, preview=True)
        except DeidError:
            continue  # not an image pydicom can decode here: not a negative to judge
        if found.preview is None:
            continue
        searched += 1
        covers = [r.box for r in found.regions if r.decision == "redact"]
        if covers:
            with_boxes += 1
            area = found.preview.shape[0] * found.preview.shape[1]
            share = 100 * sum(b.area for b in covers) / area
            print(f"  {_name(path)}: {len(covers)} boxes, {share:.2f}% of pixels")
    return searched, with_boxes, len(paths)


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def run_seconds(inputs: Path, jobs: int, ocr: bool) -> float:
    """Seconds for one `deid anonymize` run to PNG in a new process, outputs removed."""
    out = Path(tempfile.mkdtemp(prefix="deid-neg-out-"))
    command = [
        str(Path(sys.executable).with_name("deid")), "anonymize", str(inputs),
        "--out", str(out / "o"), "--jobs", str(jobs), "--key", "bench",
    ]  # fmt: skip
    if not ocr:
        command.append("--no-ocr")
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    written = len(list((out / "o").rglob("*.png")))
    shutil.rmtree(out)
    if written == 0:
        raise SystemExit("deid anonymize wrote no PNG: nothing was timed")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()

    paths = real_images()
    print(f"boxes on real textless images ({SHARED} and pydicom's test files):")
    searched, with_boxes, total = boxes_on(paths)
    print(f"{searched} images searched (of {total} files): {with_boxes} with boxes (target 0)")
    failed = with_boxes > 0
    series = sorted((SHARED / "knee-mr-t1").glob("*.dcm"))
    if args.no_timing or not series:
        return int(failed)
    with tempfile.TemporaryDirectory(prefix="deid-neg-") as folder:
        inputs = Path(folder) / "in"
        inputs.mkdir()
        for i in range(args.files):
            ds = pydicom.dcmread(series[i % len(series)])
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(inputs / f"{i:04d}.dcm")  # a distinct instance: its own output
        cases = [(1, False), (2, False), (1, True), (2, True)]
        times: dict[tuple[int, bool], list[float]] = {c: [] for c in cases}
        for case in cases:
            run_seconds(inputs, *case)  # warm-up, uncounted
        for _ in range(args.repeats):
            for case in cases:
                times[case].append(run_seconds(inputs, *case))
    rate = {c: args.files / statistics.median(t) for c, t in times.items()}
    ratio = rate[(1, True)] / rate[(1, False)]
    scaling = rate[(2, True)] / rate[(1, True)]
    print(f"\nreal knee MR series, {args.files} files, medians of {args.repeats} rounds:")
    print(f"  --no-ocr, 1 worker        {rate[(1, False)]:8.1f} files/s  (floor)")
    print(f"  text search, 1 worker     {rate[(1, True)]:8.1f} files/s  {ratio:.2f}x the floor")
    print(f"  text search, 2 workers    {rate[(2, True)]:8.1f} files/s  {scaling:.2f}x one worker")
    floor_scaling = rate[(2, False)] / rate[(1, False)]
    floor2 = rate[(2, False)]
    print(f"  --no-ocr, 2 workers       {floor2:8.1f} files/s  {floor_scaling:.2f}x one worker")
    failed = failed or ratio < 0.2 or scaling < 1.7
    print("targets met" if not failed else "targets missed")
    return int(failed)


if __name__ == "__main__":
    raise SystemExit(main())
