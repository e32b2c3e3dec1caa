"""Fixtures that build real DICOM datasets and files with pydicom.

Every dataset here carries fake PHI. `PHI` lists the planted values so tests can
assert that none of them survives anywhere in an output.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    PYDICOM_IMPLEMENTATION_UID,
)

PHI = {
    "name": "DOE^JOHN",
    "name_words": ("DOE", "JOHN"),
    "patient_id": "MRN4471923",
    "accession": "ACC99812",
    "birth_date": "19520314",
    "study_date": "20230817",
    "institution": "SAINT ELSEWHERE HOSPITAL",
    "physician": "HOUSE^GREGORY",
    "address": "12 ELM STREET SPRINGFIELD",
    "phone": "555-867-5309",
    "study_uid": "1.2.826.0.1.3680043.8.498.1001",
    "series_uid": "1.2.826.0.1.3680043.8.498.1002",
    "sop_uid": "1.2.826.0.1.3680043.8.498.1003",
    "frame_uid": "1.2.826.0.1.3680043.8.498.1004",
}


def add_patient_phi(ds: Dataset) -> None:
    """Fill the usual identifying attributes with the fake PHI of `PHI`."""
    ds.PatientName = PHI["name"]
    ds.PatientID = PHI["patient_id"]
    ds.PatientBirthDate = PHI["birth_date"]
    ds.PatientSex = "M"
    ds.PatientAge = "071Y"
    ds.PatientAddress = PHI["address"]
    ds.PatientTelephoneNumbers = PHI["phone"]
    ds.AccessionNumber = PHI["accession"]
    ds.StudyDate = PHI["study_date"]
    ds.SeriesDate = PHI["study_date"]
    ds.StudyTime = "101530"
    ds.InstitutionName = PHI["institution"]
    ds.ReferringPhysicianName = PHI["physician"]
    ds.StudyID = "STUDY77"
    ds.StudyDescription = f"CHEST FOR {PHI['name']}"
    ds.StudyInstanceUID = PHI["study_uid"]
    ds.SeriesInstanceUID = PHI["series_uid"]
    ds.SOPInstanceUID = PHI["sop_uid"]
    ds.FrameOfReferenceUID = PHI["frame_uid"]


def make_dataset(
    pixels: np.ndarray | None = None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool = False,
    sop_class: str = CTImageStorage,
    modality: str = "CT",
    phi: bool = True,
    extra: dict[str, Any] | None = None,
) -> FileDataset:
    """A complete, writable image dataset around `pixels`.

    `pixels` is (rows, cols), (frames, rows, cols) or (..., 3) for colour; its dtype
    sets BitsAllocated. Native (uncompressed) Explicit VR Little Endian.
    """
    if pixels is None:
        pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = PHI["sop_uid"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("made-in-test.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    if phi:
        add_patient_phi(ds)
    else:
        ds.StudyInstanceUID = PHI["study_uid"]
        ds.SeriesInstanceUID = PHI["series_uid"]
        ds.SOPInstanceUID = PHI["sop_uid"]
    samples = 3 if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") else 1
    frames = pixels.shape[0] if pixels.ndim == (4 if samples == 3 else 3) else 1
    bits_allocated = pixels.dtype.itemsize * 8
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.Rows = pixels.shape[-3 if samples == 3 else -2]
    ds.Columns = pixels.shape[-2 if samples == 3 else -1]
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if samples == 3:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    return ds


@pytest.fixture
def dataset_factory() -> Callable[..., FileDataset]:
    """`make_dataset` as a fixture, for tests that build their own pixels."""
    return make_dataset


@pytest.fixture
def write_dicom(tmp_path: Path) -> Callable[..., Path]:
    """Save a dataset under tmp_path/inputs and return its path."""

    def _write(ds: Dataset, name: str = "image.dcm") -> Path:
        folder = tmp_path / "inputs"
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        return path

    return _write


@pytest.fixture
def ct_dataset() -> FileDataset:
    """A 64x64 CT slice with rescale, a window and full fake PHI, nested and private."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 2000, size=(64, 64), dtype=np.uint16)
    ds = make_dataset(pixels, bits_stored=12)
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 2.5
    ds.ImagePositionPatient = [-120, -120, 55.5]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.BodyPartExamined = "CHEST"
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.2001"
    inner = Dataset()
    inner.PatientName = PHI["name"]
    inner.ContentDate = PHI["study_date"]
    ref.ReferencedPatientSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([ref])
    block = ds.private_block(0x0011, "ACME SCANNER", create=True)
    block.add_new(0x01, "LO", PHI["name"])
    block.add_new(0x02, "DA", PHI["birth_date"])
    return ds


@pytest.fixture
def ct_file(ct_dataset: FileDataset, write_dicom: Callable[..., Path]) -> Path:
    """`ct_dataset` saved to disk under a name that carries the patient's name."""
    return write_dicom(ct_dataset, "DOE_JOHN_CT.dcm")
