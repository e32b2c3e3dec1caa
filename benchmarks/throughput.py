"""Files per second for de-identification, beside floors measured in the same run.

Corpus: CT slices 512x512 with full PHI headers (generated into a temporary folder).

- tags-only (DICOM -> DICOM, no OCR) against the floor "pydicom read + write back
  unchanged", with 1 and 2 worker processes;
- DICOM -> PNG (no OCR, then with OCR) against the floor "read + render + PNG write";
- resume: the tags-only run again into the folder it finished, beside the first run;
- the run's record: tags-only without the manifest (and so without resume), beside the
  same run with it;
- PNG deflate levels of our writer: encode time and size on the same slices;
- with --scheduler (local:N or tcp://HOST:PORT), the same tags-only and PNG runs on Dask,
  timed as a CLI run with --scheduler is (connecting, or starting the local cluster,
  included).

Every run is timed inside a new interpreter, around the work alone, as a CLI run
starts it, and writes into a new, empty folder that is removed and synced afterwards,
outside the timings; one warm-up run of each measure comes first, uncounted. The
machine is noisy: measures are taken in interleaved rounds (each floor beside the runs
compared with it), each figure is the median over the rounds, and the ratios compare
against a floor timed in the same run. Run: python benchmarks/throughput.py
[--scheduler local:2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from deid import batch, cluster, outfolder, output, pixels, profiles
from deid import settings as settings_mod
from deid.pseudonym import Pseudonymizer


def make_corpus(folder: Path, count: int) -> list[Path]:
    """CT slices with the identifying attributes a real scanner writes."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:512, :512]
    body = ((xx - 256) ** 2 / 200**2 + (yy - 256) ** 2 / 160**2) < 1
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.5.{i + 1}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(f"ct{i}", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.5"
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.5.0"
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.5.9"
        ds.PatientName, ds.PatientID = "BENCH^PATIENT^Q", "MRN00042"
        ds.PatientBirthDate, ds.PatientSex, ds.PatientAge = "19600101", "F", "063Y"
        ds.PatientAddress, ds.PatientTelephoneNumbers = "1 MAIN ST", "555-0100"
        ds.OtherPatientIDs, ds.PatientMotherBirthName = "OLD77", "MOTHER^NAME"
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20230817"
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "101530"
        ds.AccessionNumber, ds.StudyID, ds.Modality = "ACC1", "S1", "CT"
        ds.InstitutionName, ds.InstitutionAddress = "BENCH HOSPITAL", "2 SIDE RD"
        ds.ReferringPhysicianName, ds.OperatorsName = "REF^DOC", "TECH^ONE"
        ds.PerformingPhysicianName, ds.NameOfPhysiciansReadingStudy = "PERF^DOC", "READ^DOC"
        ds.StationName, ds.DeviceSerialNumber = "CT01", "SN12345"
        ds.StudyDescription, ds.SeriesDescription = "CT CHEST", "AXIAL 1.0"
        ds.ProtocolName, ds.BodyPartExamined = "CHEST ROUTINE", "CHEST"
        ds.Manufacturer, ds.ManufacturerModelName = "ACME", "SCAN 64"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SliceThickness, ds.KVP, ds.XRayTubeCurrent = 1.0, 120, 200
        ds.ImagePositionPatient = [-250, -250, i * 1.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.97, 0.97]
        ds.InstanceNumber, ds.SeriesNumber = i + 1, 2
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ref = Dataset()
        ref.ReferencedSOPClassUID = CTImageStorage
        ref.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.5.{i + 2}"
        ds.ReferencedImageSequence = Sequence([ref])
        block = ds.private_block(0x0019, "ACME CT", create=True)
        block.add_new(0x10, "LO", "BENCH^PATIENT^Q")
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = 512
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        image = np.where(body, 1000 + rng.integers(0, 200, (512, 512)), 24).astype(np.uint16)
        ds.PixelData = image.tobytes()
        path = folder / f"IM{i:05d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn` over `repeats` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def floor_copy(paths: list[Path], out: Path) -> None:
    for i, path in enumerate(paths):
        dcmread(path).save_as(out / f"{i}.dcm")


def _copy_one(job: tuple[Path, Path]) -> None:
    dcmread(job[0]).save_as(job[1])


def floor_copy_2(paths: list[Path], out: Path) -> None:
    """The floor in two processes: how far this machine itself scales such work."""
    jobs = [(path, out / f"{i}.dcm") for i, path in enumerate(paths)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_copy_one, jobs, chunksize=max(1, len(jobs) // 16)))


def floor_png(paths: list[Path], out: Path, level: int = 1) -> None:
    options = pixels.RenderOptions()
    for i, path in enumerate(paths):
        ds = dcmread(path)
        image = pixels.render(ds, pixels.decode(ds, str(path))[0], options)
        Image.fromarray(image).save(out / f"{i}.png", compress_level=level)


# The scheduler of the Dask measures, handed to each measure's own interpreter.
SCHEDULER_ENV = "DEID_BENCH_SCHEDULER"


def ours(
    paths: list[Path], out: Path, formats: str, jobs: int, ocr: bool, *, recorded: bool = True
) -> None:
    """The path `deid anonymize` takes: output folder, manifest, plan, batch; on Dask
    when `jobs` is 0 (the scheduler from `SCHEDULER_ENV`). A rerun into a finished
    folder resumes, as the command does. Without `recorded`, no manifest is kept: what
    the run's record costs is the difference."""
    profile = profiles.load("safe-harbor")
    outfolder.prepare(out, [paths[0].parent])
    if recorded:
        pseudo, manifest = outfolder.open_run(out, profile, "bench")
    else:
        pseudo, manifest = Pseudonymizer.from_passphrase("bench"), None
    settings = settings_mod.Settings(
        profile=profile,
        key=pseudo.key,
        out_dir=out,
        formats=frozenset(formats.split(",")),
        tree=True,
        detect_text=ocr,
        overwrite=False,
    )
    items = [batch.Input(p, p.name, pseudo.digest("input", p.name).hex()[:20]) for p in paths]
    scheduler = cluster.parse(os.environ[SCHEDULER_ENV], 2) if jobs == 0 else None
    with (
        manifest or nullcontext(),
        cluster.open_engine(scheduler, out, [paths[0].parent]) as engine,
    ):
        work = batch.plan(items, manifest)
        summary = batch.run(work, settings, jobs=jobs, manifest=manifest, engine=engine)
    if summary.counts["written"] + summary.done_before != len(paths):
        sys.exit(f"benchmark run failed: {summary.line()}")


def png_levels(paths: list[Path], repeats: int) -> list[tuple[int, float, float]]:
    """Our PNG writer at each level: 1 (the default) is ISA-L, 2-9 are zlib's."""
    ds = dcmread(paths[0])
    image = pixels.render(ds, pixels.decode(ds, str(paths[0]))[0], pixels.RenderOptions())
    rows = []
    for level in (1, 2, 6, 9):

        def encode(level: int = level) -> int:
            return len(output.png_bytes(image, compress_level=level))

        seconds = timed(encode, repeats * 5)
        rows.append((level, seconds, encode() / 1024))
    return rows


# What each measure runs, by name: (function, formats, jobs, OCR).
MEASURES: dict[str, tuple[str, str, int, bool]] = {
    "floor: read + write unchanged": ("floor_copy", "", 1, False),
    "tags-only, 1 worker(s)": ("ours", "dicom", 1, False),
    "tags-only, 1 worker, no manifest": ("ours_unrecorded", "dicom", 1, False),
    "tags-only, 2 worker(s)": ("ours", "dicom", 2, False),
    "(floor itself in 2 processes)": ("floor_copy_2", "", 2, False),
    "floor: read + render + PNG": ("floor_png", "", 1, False),
    "DICOM->PNG no OCR, 1 worker(s)": ("ours", "png", 1, False),
    "DICOM->PNG no OCR, 2 worker(s)": ("ours", "png", 2, False),
    "DICOM->PNG with OCR, 1 worker": ("ours", "png", 1, True),
    "floor for OCR: read + render + PNG": ("floor_png", "", 1, False),
}
# With --scheduler, beside the others (0 jobs: on Dask).
DASK_MEASURES: dict[str, tuple[str, str, int, bool]] = {
    "tags-only, on Dask": ("ours", "dicom", 0, False),
    "DICOM->PNG no OCR, on Dask": ("ours", "png", 0, False),
}
MEASURES.update(DASK_MEASURES)
RESUMED = "tags-only, 1 worker(s)"


def run_measure(name: str, inputs: list[Path], out: Path) -> float:
    """Seconds for one measure over `inputs`, writing into `out`."""
    function, formats, jobs, ocr = MEASURES[name]
    start = time.perf_counter()
    if function == "floor_copy":
        floor_copy(inputs, out)
    elif function == "floor_copy_2":
        floor_copy_2(inputs, out)
    elif function == "floor_png":
        floor_png(inputs, out)
    elif function == "ours_unrecorded":
        ours(inputs, out, formats, jobs, ocr, recorded=False)
    else:
        ours(inputs, out, formats, jobs, ocr)
    return time.perf_counter() - start


def in_fresh_process(name: str, inputs: Path, count: int, out: Path) -> float:
    """`run_measure` in a new interpreter, timed inside it, as a CLI run starts.

    One long-lived process running every measure in turn skews them: a parent whose heap
    grew in a PNG run forks slower workers, which then copy more of it on write.
    """
    command = [sys.executable, __file__, "--child", name, str(inputs), str(count), str(out)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--ocr-files", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--scheduler", help="also run on Dask: local:N or tcp://HOST:PORT (deid[dask] needed)"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, inputs, count, out = args.child
        files = sorted(Path(inputs).iterdir())[: int(count)]
        print(run_measure(name, files, Path(out)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_corpus(root / "in", args.files)
        n = len(paths)

        made = itertools.count()

        def fresh(name: str) -> Path:
            """A new, empty output folder: every run writes a new tree, as users do."""
            folder = root / "out" / f"{next(made)}"
            folder.mkdir(parents=True)
            return folder

        def measure(name: str, count: int = n, into: Path | None = None) -> float:
            return in_fresh_process(name, root / "in", count, into or fresh(name))

        def settle() -> None:
            """Outside the timings: drop the outputs and let the system finish with them,
            so no run pays for the one before it."""
            shutil.rmtree(root / "out", ignore_errors=True)
            os.sync()

        ocr = ("DICOM->PNG with OCR, 1 worker", "floor for OCR: read + render + PNG")
        if args.scheduler:
            cluster.parse(args.scheduler, 2)  # a bad one stops here, not in a child
            os.environ[SCHEDULER_ENV] = args.scheduler
        skipped = set(ocr) | (set() if args.scheduler else set(DASK_MEASURES))
        names = [name for name in MEASURES if name not in skipped]
        # Interleaved rounds: a floor and the runs it is compared with see the same noise.
        rounds: dict[str, list[float]] = {name: [] for name in names}
        for name in names:  # warm-up, not counted: the first writes of a fresh machine
            measure(name)  # also pay for memory the system hands out for the first time
            settle()
        resumed: list[float] = []  # the same command again, into the folder it finished
        for _ in range(args.repeats):
            for name in names:
                folder = fresh(name)
                rounds[name].append(measure(name, into=folder))
                if name == RESUMED:
                    resumed.append(measure(name, into=folder))
                settle()
        results = {name: statistics.median(times) for name, times in rounds.items()}
        few = min(args.ocr_files, n)
        ocr_floor = statistics.median(measure(ocr[1], few) for _ in range(args.repeats))
        ocr_ours = measure(ocr[0], few)

        print(f"corpus: {n} CT slices 512x512 with full PHI headers; medians of {args.repeats}")
        if args.scheduler:
            print(f"on Dask: --scheduler {args.scheduler}, starting or connecting included")
        print(f"{'measure':42} {'files/s':>9} {'x floor':>8}")
        floors = {
            "tags": results["floor: read + write unchanged"],
            "png": results["floor: read + render + PNG"],
        }
        for name, seconds in results.items():
            floor = floors["png"] if "PNG" in name else floors["tags"]
            print(f"{name:42} {n / seconds:9.1f} {floor / seconds:8.2f}")
        print(
            f"{'DICOM->PNG with OCR, 1 worker':42} {few / ocr_ours:9.2f} "
            f"{ocr_floor / ocr_ours:8.2f}   ({few} files; floor {few / ocr_floor:.1f}/s)"
        )
        first, again = results[RESUMED], statistics.median(resumed)
        print(
            f"\nresume: the same tags-only run again into its finished folder: {again:.3f} s, "
            f"{again / first:.1%} of the first run's {first:.2f} s (target under 5%)"
        )
        bare = results["tags-only, 1 worker, no manifest"]
        print(
            f"the run's record (manifest, resume plan): tags-only at {bare / first:.1%} of "
            f"its throughput without them, a cost of {1 - bare / first:.1%} (target under 5%)"
        )
        print("\nPNG deflate level on one 512x512 slice (1 = ISA-L, the default; 2-9 zlib):")
        print(f"{'level':>5} {'ms':>8} {'KiB':>8} {'x level 1 time':>15}")
        levels = png_levels(paths, args.repeats)
        for level, seconds, kib in levels:
            print(f"{level:5} {seconds * 1000:8.2f} {kib:8.1f} {seconds / levels[0][1]:15.2f}")


if __name__ == "__main__":
    main()
