"""Files per second for de-identification, beside floors measured in the same run.

Corpus: CT slices 512x512 with full PHI headers (generated into a temporary folder).

- tags-only (DICOM -> DICOM, no OCR) against the floor "pydicom read + write back
  unchanged", with 1 and 2 worker processes;
- DICOM -> PNG (no OCR, then with OCR) against the floor "read + render + PNG write";
- PNG deflate levels of our writer: encode time and size on the same slices.

Every run writes into a new, empty folder (removed after its round, outside the
timings), as a user's run does. The machine is noisy: measures are taken in interleaved
rounds (each floor beside the
runs compared with it), each figure is the median over the rounds, and the ratios
compare against a floor timed in the same run. Run: python benchmarks/throughput.py
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from deid import batch, output, pipeline, pixels, profiles
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


def floor_png(paths: list[Path], out: Path, level: int = 1) -> None:
    options = pixels.RenderOptions()
    for i, path in enumerate(paths):
        ds = dcmread(path)
        image = pixels.render(ds, pixels.decode(ds, str(path))[0], options)
        Image.fromarray(image).save(out / f"{i}.png", compress_level=level)


def ours(paths: list[Path], out: Path, formats: str, jobs: int, ocr: bool) -> None:
    settings = pipeline.Settings(
        profile=profiles.load("safe-harbor"),
        key=Pseudonymizer.from_passphrase("bench").key,
        out_dir=out,
        formats=frozenset(formats.split(",")),
        tree=True,
        detect_text=ocr,
        overwrite=False,
    )
    summary = batch.run(paths, settings, jobs=jobs)
    if summary.counts["written"] != len(paths):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--ocr-files", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_corpus(root / "in", args.files)
        n = len(paths)

        made = itertools.count()

        def fresh(name: str) -> Path:
            """A new, empty output folder: every run writes a new tree, as users do."""
            folder = root / "out" / f"{name}-{next(made)}"
            folder.mkdir(parents=True)
            return folder

        few = paths[: args.ocr_files]
        measures: dict[str, Callable[[], object]] = {
            "floor: read + write unchanged": lambda: floor_copy(paths, fresh("floor")),
            "tags-only, 1 worker(s)": lambda: ours(paths, fresh("t1"), "dicom", 1, False),
            "tags-only, 2 worker(s)": lambda: ours(paths, fresh("t2"), "dicom", 2, False),
            "floor: read + render + PNG": lambda: floor_png(paths, fresh("floorpng")),
            "DICOM->PNG no OCR, 1 worker(s)": lambda: ours(paths, fresh("p1"), "png", 1, False),
            "DICOM->PNG no OCR, 2 worker(s)": lambda: ours(paths, fresh("p2"), "png", 2, False),
        }
        # Interleaved rounds: a floor and the runs it is compared with see the same noise.
        rounds: dict[str, list[float]] = {name: [] for name in measures}

        def settle() -> None:
            """Outside the timings: drop the outputs and let the system finish with them,
            so no run pays for the one before it."""
            shutil.rmtree(root / "out", ignore_errors=True)
            os.sync()

        for fn in measures.values():  # warm-up, not counted: the first writes of a fresh
            fn()  # machine also pay for memory the system hands out for the first time
            settle()
        for _ in range(args.repeats):
            for name, fn in measures.items():
                rounds[name].append(timed(fn, 1))
                settle()
        results = {name: statistics.median(times) for name, times in rounds.items()}
        ocr_floor = timed(lambda: floor_png(few, fresh("floorocr")), args.repeats)
        ocr_ours = timed(lambda: ours(few, fresh("ocr"), "png", 1, True), 1)

        print(f"corpus: {n} CT slices 512x512 with full PHI headers; medians of {args.repeats}")
        print(f"{'measure':42} {'files/s':>9} {'x floor':>8}")
        floors = {
            "tags": results["floor: read + write unchanged"],
            "png": results["floor: read + render + PNG"],
        }
        for name, seconds in results.items():
            floor = floors["png"] if "PNG" in name else floors["tags"]
            print(f"{name:42} {n / seconds:9.1f} {floor / seconds:8.2f}")
        print(
            f"{'DICOM->PNG with OCR, 1 worker':42} {len(few) / ocr_ours:9.2f} "
            f"{ocr_floor / ocr_ours:8.2f}   ({len(few)} files; floor {len(few) / ocr_floor:.1f}/s)"
        )
        print("\nPNG deflate level on one 512x512 slice (1 = ISA-L, the default; 2-9 zlib):")
        print(f"{'level':>5} {'ms':>8} {'KiB':>8} {'x level 1 time':>15}")
        levels = png_levels(paths, args.repeats)
        for level, seconds, kib in levels:
            print(f"{level:5} {seconds * 1000:8.2f} {kib:8.1f} {seconds / levels[0][1]:15.2f}")


if __name__ == "__main__":
    main()
