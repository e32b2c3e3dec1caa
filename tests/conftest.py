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
    JPEG2000,
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
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


def make_ct_dataset() -> FileDataset:
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
def ct_dataset() -> FileDataset:
    """`make_ct_dataset()` as a fixture."""
    return make_ct_dataset()


@pytest.fixture
def ct_file(ct_dataset: FileDataset, write_dicom: Callable[..., Path]) -> Path:
    """`ct_dataset` saved to disk under a name that carries the patient's name."""
    return write_dicom(ct_dataset, "DOE_JOHN_CT.dcm")


def burned_in_pixels(
    text_lines: list[tuple[str, tuple[int, int], int]], size: int = 512, frames: int = 1
) -> np.ndarray:
    """A radiograph-like 12-bit image with white text drawn at (x, y) in a given size."""
    from PIL import Image, ImageDraw, ImageFont

    yy, xx = np.mgrid[:size, :size]
    body = (
        (xx - size / 2) ** 2 / (size * 0.35) ** 2 + (yy - size / 2) ** 2 / (size * 0.45) ** 2
    ) < 1
    rng = np.random.default_rng(3)
    base = np.where(body, 1800, 200) + rng.integers(0, 120, (size, size))
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for text, xy, font_size in text_lines:
        draw.text(xy, text, fill=255, font=ImageFont.load_default(size=font_size))
    ink = np.asarray(canvas) > 127
    image = np.where(ink, 4095, base).astype(np.uint16)
    return np.stack([image] * frames) if frames > 1 else image


BURNED_NAME = "DOE JOHN"
BURNED_LINES = [(BURNED_NAME, (20, 16), 30), ("MRN4471923", (20, 56), 30), ("L", (470, 250), 36)]


@pytest.fixture
def burned_in_file(write_dicom: Callable[..., Path]) -> Path:
    """A CR radiograph with the patient's name and MRN burned in and an "L" marker."""
    ds = make_dataset(
        burned_in_pixels(BURNED_LINES),
        bits_stored=12,
        sop_class="1.2.840.10008.5.1.4.1.1.1",
        modality="CR",
        extra={
            "WindowCenter": 2048,
            "WindowWidth": 4096,
            "ViewPosition": "PA",
            "BodyPartExamined": "CHEST",
            "PixelSpacing": [0.2, 0.2],
        },
    )
    return write_dicom(ds, "DOE_JOHN_CHEST.dcm")


def anatomy(height: int = 512, width: int = 512, seed: int = 0) -> np.ndarray:
    """A dark field with a bright, ribbed, grainy ellipse: roughly a chest film."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = ((y - height / 2) / (0.42 * height)) ** 2 + ((x - width / 2) / (0.35 * width)) ** 2
    body = np.clip(1.0 - r, 0, 1) ** 0.5 * 140
    ribs = 25 * (np.sin(y / height * 40) > 0.6) * (r < 0.8)
    film = np.clip(body + ribs + rng.normal(0, 12, (height, width)) + 15, 0, 255)
    return np.asarray(film, dtype=np.uint8)


def ct_slice(seed: int = 1) -> np.ndarray:
    """A CT-like slice: grainy grey body, black lungs, a rib ring clipped white."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:512, 0:512].astype(np.float32)
    r = ((y - 256) / 174) ** 2 + ((x - 256) / 220) ** 2
    image = np.where(r < 1, 140.0, 0.0)
    image[(((y - 256) / 112) ** 2 + ((np.abs(x - 256) - 102) / 77) ** 2) < 1] = 0
    image += np.where(r < 1, rng.normal(0, 10, image.shape), 0)
    image[(r > 0.82) & (r < 0.9)] = 255
    return np.asarray(np.clip(image, 0, 255), dtype=np.uint8)


REAL_NEGATIVES = Path(__file__).resolve().parents[2] / "shared" / "real-negatives"


def real_negative_files() -> list[Path]:
    """Real textless slices from the shared folder (empty when it is absent)."""
    if not REAL_NEGATIVES.is_dir():
        return []
    return sorted(p for p in REAL_NEGATIVES.rglob("*.dcm") if p.is_file())


def draw_text(
    image: np.ndarray, lines: list[tuple[str, tuple[int, int], int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """`image` with each (text, (x, y), size, grey) drawn, and the mask of text pixels."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.fromarray(image)
    ink = Image.new("L", canvas.size, 0)
    for text, xy, size, grey in lines:
        font = ImageFont.load_default(size=size)
        ImageDraw.Draw(canvas).text(xy, text, fill=grey, font=font)
        ImageDraw.Draw(ink).text(xy, text, fill=255, font=font)
    return np.asarray(canvas), np.asarray(ink) > 127


def safe_harbor_settings(out_dir: Path, passphrase: str, **overrides: Any) -> Any:
    """`pipeline.Settings` for the `safe-harbor` profile, keyed by `passphrase`."""
    from deid import pipeline, profiles
    from deid.pseudonym import Pseudonymizer

    key = Pseudonymizer.from_passphrase(passphrase).key
    return pipeline.Settings.for_profile(profiles.load("safe-harbor"), key, out_dir, **overrides)


@pytest.fixture(autouse=True)
def _run_keys_in_tmp(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys of keyless runs are kept in a temporary state folder, not the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


def write_series(folder: Path, count: int, *, size: int = 256) -> list[Path]:
    """`count` CT slices of one patient's series, named like a patient's disc."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        ds = make_dataset(ct_slice(seed=i)[:size, :size].copy(), extra={"InstanceNumber": i + 1})
        ds.SOPInstanceUID = f"{PHI['sop_uid']}.{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"IM{i:04d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture
def series_folder(tmp_path: Path) -> Path:
    """A study folder holding a patient-named folder with six CT slices."""
    root = tmp_path / "study"
    write_series(root / "DOE_JOHN" / "SERIES1", 6)
    return root


KNEE_PATIENT = {"name": "KNEE", "patient_id": "PT88712", "institution": "CLINIQUE DU LAC"}


def make_knee_dataset() -> FileDataset:
    """An MR knee slice whose patient is named `KNEE`, as anonymized public series are:
    the name equals the kept BodyPartExamined, which must not withhold the output."""
    return make_dataset(
        anatomy(64, 64).astype(np.uint16),
        sop_class="1.2.840.10008.5.1.4.1.1.4",
        modality="MR",
        phi=False,
        extra={
            "PatientName": KNEE_PATIENT["name"],
            "PatientID": KNEE_PATIENT["patient_id"],
            "OtherPatientIDs": KNEE_PATIENT["patient_id"],
            "InstitutionName": KNEE_PATIENT["institution"],
            "BodyPartExamined": "KNEE",
            "StudyDescription": "MR KNEE LEFT",
            "ImageType": ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"],
            "Manufacturer": "ACME Medical Systems",
            "StudyDate": "20061118",
        },
    )


@pytest.fixture
def knee_dataset() -> FileDataset:
    """`make_knee_dataset()` as a fixture."""
    return make_knee_dataset()


@pytest.fixture
def knee_file(knee_dataset: FileDataset, write_dicom: Callable[..., Path]) -> Path:
    """`knee_dataset` saved to disk."""
    return write_dicom(knee_dataset, "knee.dcm")


# pydicom's own scanner files whose outputs once raised false alarms in both leak checks:
# a vendor name joined by `_` to the institution (MR_small), and private elements copying
# the kept BodyPartExamined and ImageType (JPEG2000, JPGExtended).
PYDICOM_SCANNER_FILES = ("MR_small.dcm", "JPEG2000.dcm", "JPGExtended.dcm")


@pytest.fixture
def pydicom_samples(tmp_path: Path) -> Path:
    """A samples folder holding copies of `PYDICOM_SCANNER_FILES`."""
    import shutil

    from pydicom.data import get_testdata_file

    folder = tmp_path / "pydicom-samples"
    folder.mkdir()
    for name in PYDICOM_SCANNER_FILES:
        shutil.copy(str(get_testdata_file(name)), folder / name)
    return folder


@pytest.fixture
def knee_slices(tmp_path: Path) -> Path:
    """A folder with the first two slices of the real knee series (see
    `../shared/real-negatives/README.md`), whose patient is named `KNEE`; skips when
    the shared folder is absent."""
    import shutil

    series = sorted((REAL_NEGATIVES / "knee-mr-t1").glob("*.dcm"))[:2]
    if not series:
        pytest.skip("the real knee series is not in ../shared/real-negatives")
    folder = tmp_path / "knee-slices"
    folder.mkdir()
    for path in series:
        shutil.copy(path, folder / path.name)
    return folder


OVERLAY_NAME = "DOE JOHN"


def overlay_in_bit_12(*, drawn: bool = True) -> FileDataset:
    """A 12-in-16-bit CR whose legacy overlay, the patient's name, is drawn into bit 12.

    The overlay group says so (Overlay Bit Position 12, no Overlay Data), as old
    modalities wrote it. With `drawn` False the same image without the name in bit 12:
    its twin, for what must not differ.
    """
    from PIL import Image, ImageDraw, ImageFont

    image = burned_in_pixels([])
    canvas = Image.new("L", (image.shape[1], image.shape[0]), 0)
    font = ImageFont.load_default(size=40)
    ImageDraw.Draw(canvas).text((40, 420), OVERLAY_NAME, fill=255, font=font)
    if drawn:
        image = image | ((np.asarray(canvas) > 127).astype(np.uint16) << 12)
    ds = make_dataset(
        image,
        bits_stored=12,
        sop_class="1.2.840.10008.5.1.4.1.1.1",
        modality="CR",
        extra={"WindowCenter": 2048, "WindowWidth": 4096, "BodyPartExamined": "CHEST"},
    )
    ds.add_new(0x60000010, "US", image.shape[0])  # OverlayRows
    ds.add_new(0x60000011, "US", image.shape[1])  # OverlayColumns
    ds.add_new(0x60000040, "CS", "G")  # OverlayType
    ds.add_new(0x60000050, "SS", [1, 1])  # OverlayOrigin
    ds.add_new(0x60000100, "US", 16)  # OverlayBitsAllocated
    ds.add_new(0x60000102, "US", 12)  # OverlayBitPosition
    ds.add_new(0x60000022, "LO", "PATIENT NAME")  # OverlayDescription
    return ds


@pytest.fixture
def overlay_bit_file(write_dicom: Callable[..., Path]) -> Path:
    """The attacker's file: `overlay_in_bit_12()` on disk, named after the patient."""
    return write_dicom(overlay_in_bit_12(), "DOE_JOHN_OVERLAY.dcm")


@pytest.fixture
def overlay_twin_file(write_dicom: Callable[..., Path]) -> Path:
    """`overlay_in_bit_12(drawn=False)` on disk: the same image, bit 12 clear."""
    return write_dicom(overlay_in_bit_12(drawn=False), "twin/DOE_JOHN_OVERLAY.dcm")


def signed_with_garbage(seed: int = 5) -> tuple[FileDataset, np.ndarray]:
    """A signed 12-in-16-bit CT slice whose bits above the High Bit are random, and the
    values it declares (-2048..2047)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(-2048, 2048, size=(64, 64), dtype=np.int16)
    garbage = rng.integers(0, 16, size=values.shape, dtype=np.uint16) << 12
    cells = ((values.view(np.uint16) & 0x0FFF) | garbage).view(np.int16)
    ds = make_dataset(cells, bits_stored=12, signed=True, extra={"RescaleIntercept": 0})
    ds.RescaleSlope = 1
    return ds, values


# Compressed syntaxes whose codestreams keep every bit of a 16-bit cell when asked to,
# so a name above Bits Stored survives them, and the lossless codec each is made with:
# a reversible codestream is valid under the syntax that also allows lossy ones.
KEEPING_SYNTAXES: dict[str, tuple[str, str]] = {
    "rle": (RLELossless, RLELossless),
    "j2k lossless": (JPEG2000Lossless, JPEG2000Lossless),
    "j2k": (JPEG2000, JPEG2000Lossless),
    "jpeg-ls lossless": (JPEGLSLossless, JPEGLSLossless),
    "jpeg-ls near-lossless": (JPEGLSNearLossless, JPEGLSLossless),
}


def encoded_keeping_every_bit(ds: FileDataset, syntax: str) -> FileDataset:
    """`ds` compressed by pydicom's encoder for `KEEPING_SYNTAXES[syntax]`, every bit of
    every cell kept, those above Bits Stored included: encoded as if Bits Stored were
    Bits Allocated (as a modality's encoder given the whole cell does), then declared as
    before. Skips the test when this environment has no encoder for it."""
    from pydicom.pixels import get_encoder

    uid, codec = KEEPING_SYNTAXES[syntax]
    if not get_encoder(codec).is_available:
        pytest.skip(f"no {UID(codec).name} encoder is installed")
    kind = "i" if ds.PixelRepresentation else "u"
    cells = np.frombuffer(ds.PixelData, dtype=f"<{kind}{ds.BitsAllocated // 8}")
    frames = int(ds.get("NumberOfFrames") or 1)
    shape = (frames, ds.Rows, ds.Columns) if frames > 1 else (ds.Rows, ds.Columns)
    declared = ds.BitsStored, ds.HighBit
    ds.BitsStored, ds.HighBit = ds.BitsAllocated, ds.BitsAllocated - 1
    ds.compress(codec, cells.reshape(shape))
    ds.BitsStored, ds.HighBit = declared
    ds.file_meta.TransferSyntaxUID = uid
    return ds


# --- `deid share`: a patient's disc --------------------------------------------------------

DISC_CT_SLICES = 9
DISC_MR_SLICES = 5
DISC_CT_SERIES_UID = "1.2.826.0.1.3680043.8.498.3002"
DISC_MR_SERIES_UID = "1.2.826.0.1.3680043.8.498.4002"


def disc_slice(
    modality: str, index: int, *, series_uid: str, study_uid: str, series_number: int
) -> FileDataset:
    """One slice of a disc series: `index` 0.. runs from the feet up (z = 10 * index),
    InstanceNumber counts from the head down as scanners number a chest CT, and every
    pixel holds 100 * index + 1000 so a test can tell the slice from its pixels."""
    pixels = np.full((32, 32), 1000 + 100 * index, dtype=np.uint16)
    sop_class = CTImageStorage if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
    ds = make_dataset(pixels, modality=modality, sop_class=sop_class, bits_stored=12)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = f"{series_uid}.{index + 1}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesNumber = series_number
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-100, -100, 10.0 * index]
    ds.InstanceNumber = 1000 - index
    if modality == "CT":
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -1024
    else:
        ds.StudyDescription = "MR HEAD FOR DOE^JOHN"
        ds.SeriesDescription = "T1 AX BRAIN"
    return ds


def make_disc(root: Path, *, lower: bool = False) -> Path:
    """A patient's disc under `root`: a DICOMDIR written by pydicom's FileSet over a CT
    chest of `DISC_CT_SLICES` slices (added in shuffled order, so file names do not
    follow positions) and an MR head of `DISC_MR_SLICES`, files without extensions,
    plus a stray README.TXT. With `lower`, every name on disk is lower-cased, as a disc
    mounted that way shows it (the DICOMDIR still names them upper-case)."""
    import os
    import random

    from pydicom.fileset import FileSet

    fs = FileSet()
    order = list(range(DISC_CT_SLICES))
    random.Random(5).shuffle(order)
    for index in order:
        fs.add(
            disc_slice(
                "CT",
                index,
                series_uid=DISC_CT_SERIES_UID,
                study_uid="1.2.826.0.1.3680043.8.498.3001",
                series_number=2,
            )
        )
    for index in range(DISC_MR_SLICES):
        fs.add(
            disc_slice(
                "MR",
                index,
                series_uid=DISC_MR_SERIES_UID,
                study_uid="1.2.826.0.1.3680043.8.498.4001",
                series_number=1,
            )
        )
    root.mkdir(parents=True, exist_ok=True)
    fs.write(root)
    (root / "README.TXT").write_text("Viewer for Windows: run VIEWER.EXE\n")
    if lower:
        for folder, dirs, files in list(os.walk(root, topdown=False)):
            here = Path(folder)
            for name in [*files, *dirs]:
                (here / name).rename(here / name.lower())
    return root


@pytest.fixture
def disc_folder(tmp_path: Path) -> Path:
    """`make_disc` under tmp_path/disc, names as written (upper case)."""
    return make_disc(tmp_path / "disc")


@pytest.fixture
def lower_disc_folder(tmp_path: Path) -> Path:
    """`make_disc` under tmp_path/disc, every name on disk lower-cased."""
    return make_disc(tmp_path / "disc", lower=True)


# --- HTML pages as read and as a browser shows them (the report and review tests). ---

from html.parser import HTMLParser  # noqa: E402


class Parsed(HTMLParser):
    """Every element with its attributes, and the text a reader sees."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())

    def images(self) -> list[np.ndarray]:
        import base64
        import io

        from PIL import Image

        found = []
        for tag, attrs in self.tags:
            if tag == "img":
                data = (attrs.get("src") or "").removeprefix("data:image/jpeg;base64,")
                picture = Image.open(io.BytesIO(base64.b64decode(data)))
                found.append(np.asarray(picture.convert("RGB")))
        return found


@pytest.fixture
def browser() -> str:
    """A headless-capable Chromium on PATH; skips the test where there is none."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium, chromium-browser or google-chrome on PATH")


def chromium(browser: str, page: Path, *args: str) -> str:
    """Run headless Chromium on a local page; its stdout (the DOM for --dump-dom)."""
    import subprocess

    profile = page.parent / f"chromium-profile-{page.stem}"
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        *args,
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dumped(browser: str, path: Path, page: str) -> Parsed:
    """`page` written to `path` and loaded in the browser: the DOM it ends with, its
    title appended to the text as "TITLE=..."."""
    import re

    path.write_text(page, encoding="utf-8")
    dom = chromium(browser, path, "--dump-dom")
    parsed = Parsed(dom)
    parsed.text.append("TITLE=" + "".join(re.findall(r"<title>(.*?)</title>", dom)))
    return parsed


def write_long_cine(
    path: Path, frames: int, *, size: int = 512, text: dict[int, str] | None = None
) -> int:
    """A native 16-bit (12 stored) multi-frame XA of `frames` frames written a frame at a
    time, so a file of gigabytes never sits in memory; `text` burns a line into the
    frames it names. Four pictures take turns; returns the file's size."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import dcmwrite

    base = burned_in_pixels([], size=size)
    pictures = [np.roll(base, shift * 7, axis=1) for shift in range(4)]
    header = make_dataset(base, bits_stored=12, sop_class="1.2.840.10008.5.1.4.1.1.12.1")
    header.Modality = "XA"
    header.NumberOfFrames = frames
    header.WindowCenter, header.WindowWidth = 2048, 4096
    del header.PixelData
    buffer = DicomBytesIO()
    dcmwrite(buffer, header, enforce_file_format=True)
    length = frames * size * size * 2
    with path.open("wb") as f:
        f.write(buffer.getvalue())
        f.write(b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little"))
        for index in range(frames):
            frame = pictures[index % 4]
            line = (text or {}).get(index)
            if line:
                ink = draw_text(np.zeros((size, size), np.uint8), [(line, (20, 16), 30, 255)])[1]
                frame = np.where(ink, 4095, frame).astype(np.uint16)
            f.write(frame.astype("<u2").tobytes())
    return path.stat().st_size


# --- `deid share`: CT chest slices in Hounsfield units, and a multi-frame cine --------------

CT_CHEST_SERIES_UID = "1.2.826.0.1.3680043.8.498.5002"


def ct_chest_dataset(hounsfield: np.ndarray, index: int = 0) -> FileDataset:
    """Slice `index` of a CT chest whose pixels are `hounsfield` (HU, stored with the
    usual -1024 intercept), with full fake PHI: windows of the chest apply to it."""
    stored = np.clip(hounsfield + 1024, 0, 4095).astype(np.uint16)
    ds = make_dataset(stored, bits_stored=12, sop_class=CTImageStorage, modality="CT")
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.BodyPartExamined = "CHEST"
    ds.SeriesInstanceUID = CT_CHEST_SERIES_UID
    ds.SOPInstanceUID = f"{CT_CHEST_SERIES_UID}.{index + 1}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = index + 1
    return ds


LUNG_HU, SOFT_TISSUE_HU = -600, 50


def lung_and_tissue_hu(size: int = 64) -> np.ndarray:
    """Left half lung (-600 HU: mid-grey in the lung window, black in the mediastinum
    one), right half soft tissue (50 HU: near white in the lung window, mid-grey in the
    mediastinum one)."""
    values = np.full((size, size), SOFT_TISSUE_HU, dtype=np.int32)
    values[:, : size // 2] = LUNG_HU
    return values


@pytest.fixture
def ct_chest_folder(tmp_path: Path) -> Path:
    """Five slices of a CT chest, each `lung_and_tissue_hu()`, files without extensions."""
    folder = tmp_path / "ct-chest"
    folder.mkdir()
    for index in range(5):
        ct_chest_dataset(lung_and_tissue_hu(), index).save_as(
            folder / f"IM{index}", enforce_file_format=True
        )
    return folder


# Text that one chest window shows and the other does not: (window it shows in, HU of the
# patch it is written on, HU of the letters). Grey letters on air (-1000) show in the lung
# window only (the mediastinum window starts at -125 HU); bright letters on a 150 HU patch
# show in the mediastinum window only (the lung window is white from 150 HU).
ONE_WINDOW_TEXT = {"lung": (-1000, -300), "mediastinum": (150, 250)}
ONE_WINDOW_NAME_AT = (24, 24)
ONE_WINDOW_NAME_SIZE = 32


def ct_chest_with_name(shows_in: str) -> FileDataset:
    """A 512x512 CT chest (air, a soft-tissue body, two lungs) with the patient's name
    written in its top-left corner in greys that only the `shows_in` window shows."""
    patch, letters = ONE_WINDOW_TEXT[shows_in]
    y, x = np.mgrid[0:512, 0:512].astype(np.float32)
    body = ((y - 280) / 170) ** 2 + ((x - 256) / 210) ** 2 < 1
    lungs = ((y - 280) / 110) ** 2 + ((np.abs(x - 256) - 100) / 70) ** 2 < 1
    hounsfield = np.where(body, 40, -1000)
    hounsfield = np.where(lungs, -850, hounsfield)
    hounsfield += np.random.default_rng(4).integers(-8, 9, hounsfield.shape)
    hounsfield[10:70, 10:330] = patch
    ink = draw_text(
        np.zeros((512, 512), np.uint8),
        [(BURNED_NAME, ONE_WINDOW_NAME_AT, ONE_WINDOW_NAME_SIZE, 255)],
    )[1]
    return ct_chest_dataset(np.where(ink, letters, hounsfield))


CINE_FRAMES = 12


def cine_frame_value(frame: int) -> int:
    """The stored value every pixel of frame `frame` (0-based) of `cine_dataset` holds."""
    return 300 + 300 * frame


def cine_dataset() -> FileDataset:
    """A multi-frame XA cine of `CINE_FRAMES` 128x128 frames, each frame one grey
    (`cine_frame_value`), shown in its own full-range window: a test tells the frame
    from the grey."""
    frames = np.stack(
        [np.full((128, 128), cine_frame_value(i), np.uint16) for i in range(CINE_FRAMES)]
    )
    return make_dataset(
        frames,
        bits_stored=12,
        sop_class="1.2.840.10008.5.1.4.1.1.12.1",
        modality="XA",
        extra={"WindowCenter": 2048, "WindowWidth": 4096},
    )


@pytest.fixture
def cine_file(write_dicom: Callable[..., Path]) -> Path:
    """`cine_dataset()` on disk."""
    return write_dicom(cine_dataset(), "cine/XA0001")
