"""Write the synthetic sample patient CD (DICOM files with FAKE PHI) into this folder.

Every name, ID, date and institution below is invented. The output is deterministic:
fixed seeds, fixed UIDs under 1.2.826.0.1.3680043.8.498., fixed dates, no clock.

    python sample_dicom/make_samples.py [--out DIR]
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    UltrasoundImageStorage,
    XRayAngiographicImageStorage,
)

ROOT = "1.2.826.0.1.3680043.8.498."
IMPLEMENTATION_UID = ROOT + "77000.1"
IMPLEMENTATION_VERSION = "DEID_SAMPLES_1"
AXIAL = ["1", "0", "0", "0", "1", "0"]

# (left, top) position, text, font size, anchor ("la" = left/ascender, "ra" = right/ascender)
TextItem = tuple[tuple[int, int], str, int, str]


@dataclass(frozen=True)
class Patient:
    """One invented patient and the study we made up for them."""

    name: str  # DICOM PN, FAMILY^GIVEN
    patient_id: str
    birth_date: str
    sex: str
    age: str
    accession: str
    study_date: str
    study_time: str
    institution: str
    physician: str
    exam: str  # StudyDescription prefix; the patient's name is appended
    uid: str  # UID prefix for this patient's study

    @property
    def display(self) -> str:
        """The name as printed on films: 'FAMILY, GIVEN'."""
        family, given = self.name.split("^")[:2]
        return f"{family}, {given}"

    @property
    def us_date(self) -> str:
        """StudyDate as MM/DD/YYYY, the way it gets burned into pixels."""
        d = self.study_date
        return f"{d[4:6]}/{d[6:8]}/{d[0:4]}"


DOE = Patient(
    "DOE^JANE", "MRN4402817", "19680722", "F", "054Y", "ACC23031401", "20230314", "091522",
    "MERCY FICTIONAL MEDICAL CENTER", "KILDARE^JAMES", "XR CHEST PA", ROOT + "77001",
)  # fmt: skip
SMITH = Patient(
    "SMITH^ROBERT", "MRN3390415", "19570109", "M", "065Y", "ACC22110377", "20221103", "143005",
    "RIVERBEND TEST HOSPITAL", "QUINN^MICHAELA", "CT CHEST WO CONTRAST", ROOT + "77002",
)  # fmt: skip
GARCIA = Patient(
    "GARCIA^MARIA", "7781204", "19910530", "F", "031Y", "US2212050042", "20221205", "104211",
    "LAKESIDE FICTIONAL CLINIC", "WELBY^MARCUS", "US ABDOMEN COMPLETE", ROOT + "77003",
)  # fmt: skip
NGUYEN = Patient(
    "NGUYEN^THOMAS", "MRN6120948", "19620817", "M", "060Y", "XA23062109", "20230621", "081740",
    "NORTHGATE SIMULATED HEART INSTITUTE", "CARTER^JOHN", "XA CORONARY ANGIO", ROOT + "77004",
)  # fmt: skip
PATEL = Patient(
    "PATEL^ANIL", "MRN7734561", "19850411", "M", "036Y", "DX21110215", "20211102", "160233",
    "HILLCREST PRETEND ORTHOPEDICS", "BAILEY^MIRANDA", "XR HAND LEFT", ROOT + "77005",
)  # fmt: skip
KOWALSKI = Patient(
    "KOWALSKI^ANNA", "MRN2208816", "19790925", "F", "043Y", "CR23020833", "20230208", "112958",
    "BAYVIEW IMAGINARY IMAGING", "GREENE^MARK", "XR KNEE RIGHT", ROOT + "77006",
)  # fmt: skip
MUELLER = Patient(
    "MUELLER^KLAUS", "MRN5521907", "19590203", "M", "064Y", "MR24011502", "20240115", "073311",
    "ALPINE FAKE UNIVERSITY CLINIC", "BROWN^EMMETT", "MR BRAIN WO CONTRAST", ROOT + "77007",
)  # fmt: skip


# ---------------------------------------------------------------- pixel helpers


def grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (y, x) coordinates in [-1, 1]."""
    y = np.linspace(-1.0, 1.0, rows)[:, None] * np.ones((1, cols))
    x = np.linspace(-1.0, 1.0, cols)[None, :] * np.ones((rows, 1))
    return y, x


def ellipse(
    y: np.ndarray, x: np.ndarray, cy: float, cx: float, ry: float, rx: float, soft: float = 0.08
) -> np.ndarray:
    """Soft-edged filled ellipse: 1 inside, 0 outside, a ramp of width `soft` at the edge."""
    d = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
    return np.clip((1.0 - d) / soft + 0.5, 0.0, 1.0)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float array (edges replicated)."""
    r = int(3 * sigma) + 1
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    rows, cols = img.shape
    pad = np.pad(img, r, mode="edge")
    tmp = np.zeros((rows + 2 * r, cols))
    for i, w in enumerate(k):
        tmp += w * pad[:, i : i + cols]
    out = np.zeros((rows, cols))
    for i, w in enumerate(k):
        out += w * tmp[i : i + rows, :]
    return out


def text_alpha(shape: tuple[int, int], items: Iterable[TextItem], stroke: int = 0) -> np.ndarray:
    """Antialiased text coverage (0..1) in Pillow's default TrueType font, `stroke` px bolder."""
    img = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(img)
    for xy, text, size, anchor in items:
        font = ImageFont.load_default(size=size)
        draw.text(
            xy, text, fill=255, font=font, anchor=anchor, stroke_width=stroke, stroke_fill=255
        )
    return np.asarray(img, dtype=np.float64) / 255.0


def burn(
    img: np.ndarray, items: list[TextItem], value: float, halo: float | None = None
) -> np.ndarray:
    """Blend text of pixel value `value` into a 2-D image, optionally over a 2 px `halo` outline."""
    if halo is not None:
        h = text_alpha(img.shape[:2], items, stroke=2)
        img = img * (1.0 - h) + halo * h
    a = text_alpha(img.shape[:2], items)
    return img * (1.0 - a) + value * a


def capsules(
    shape: tuple[int, int], segments: Iterable[tuple[float, float, float, float, float]]
) -> np.ndarray:
    """0..1 mask of thick round-capped line segments (x0, y0, x1, y1, width) in pixels."""
    img = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(img)
    for x0, y0, x1, y1, w in segments:
        draw.line([(x0, y0), (x1, y1)], fill=255, width=int(w))
        r = w / 2
        for cx, cy in ((x0, y0), (x1, y1)):
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    return np.asarray(img, dtype=np.float64) / 255.0


def to_uint(img: np.ndarray, bits: int, dtype: type[np.unsignedinteger]) -> np.ndarray:
    """Round and clip to [0, 2**bits - 1]."""
    out: np.ndarray = np.clip(np.rint(img), 0, 2**bits - 1).astype(dtype)
    return out


# ---------------------------------------------------------------- dataset helpers


def new_dataset(
    p: Patient,
    *,
    sop_class: str,
    modality: str,
    series: int,
    instance: int,
    series_description: str,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> FileDataset:
    """A dataset with file meta and the patient/study/series/instance headers filled in."""
    sop_uid = f"{p.uid}.{series}.{instance}"
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds = FileDataset("sample", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = UID(sop_uid)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = p.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = p.study_time
    ds.AccessionNumber = p.accession
    ds.Modality = modality
    ds.Manufacturer = "ACME IMAGING"
    ds.InstitutionName = p.institution
    ds.ReferringPhysicianName = p.physician
    ds.StudyDescription = f"{p.exam} ({p.display})"
    ds.SeriesDescription = series_description
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = p.birth_date
    ds.PatientSex = p.sex
    ds.PatientAge = p.age
    ds.StudyInstanceUID = UID(f"{p.uid}.1")
    ds.SeriesInstanceUID = UID(f"{p.uid}.{series}")
    ds.StudyID = p.accession[-4:]
    ds.SeriesNumber = series
    ds.InstanceNumber = instance
    return ds


def set_pixels(ds: Dataset, arr: np.ndarray, photometric: str, bits_stored: int) -> None:
    """Native pixel data plus the Image Pixel module, keeping our fixed SOPInstanceUID."""
    ds.set_pixel_data(arr, photometric, bits_stored, generate_instance_uid=False)


def save(ds: FileDataset, out: Path, rel: str) -> Path:
    """Write `ds` as a DICOM file (preamble + DICM + file meta) at out/rel."""
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# ---------------------------------------------------------------- 1. CR chest PA


def cr_chest(out: Path) -> None:
    """768x768 CR chest PA, 12 bits in 16, with name/MRN/date and R/PA markers burned in."""
    n = 768
    rng = np.random.default_rng(1001)
    y, x = grid(n, n)
    img = 150.0 + 80.0 * (y + 1)  # direct exposure (air): dark
    shoulder_line = -0.7 + 0.4 * x**2
    torso = np.clip((y - shoulder_line) / 0.05, 0, 1) * np.clip((0.88 - np.abs(x)) / 0.05, 0, 1)
    torso = np.maximum(torso, ellipse(y, x, -0.75, 0.0, 0.3, 0.17))  # neck
    img += 1750.0 * torso
    heart = ellipse(y, x, 0.3, 0.12, 0.27, 0.3, 0.25)
    lungs = ellipse(y, x, -0.05, -0.38, 0.58, 0.27, 0.15) + ellipse(y, x, -0.05, 0.38, 0.58, 0.28)
    lungs = np.clip(lungs, 0, 1) * (1.0 - heart) * torso
    img -= 950.0 * lungs
    chest = np.clip(lungs + ellipse(y, x, -0.05, 0.0, 0.66, 0.76, 0.3), 0, 1)
    for k in range(9):  # posterior ribs: gentle arcs across each hemithorax
        for side in (-1.0, 1.0):
            yc = -0.52 + 0.12 * k + 0.45 * (x - side * 0.08) ** 2
            band = np.clip(1.0 - np.abs(y - yc) / 0.022, 0, 1) * (side * x > 0.06)
            img += 380.0 * band * chest
    for side in (-1.0, 1.0):  # clavicles
        u = side * x - 0.32
        yc = -0.6 + 0.3 * u**2 - 0.05 * u
        band = np.clip(1.0 - np.abs(y - yc) / (0.026 - 0.02 * np.abs(u)), 0, 1)
        img += 450.0 * band * (np.abs(u) < 0.3)
    spine = np.clip(1.0 - np.abs(x) / 0.075, 0, 1) ** 0.5 * torso
    vertebrae = 0.8 + 0.2 * np.cos(2 * np.pi * (y + 1) / 0.11)
    img += 700.0 * spine * vertebrae * (1.0 - 0.5 * heart)
    img = blur(img, 2.0) + rng.normal(0.0, 25.0, (n, n))
    img = burn(
        img,
        [
            ((24, 20), DOE.display, 32, "la"),
            ((24, 60), DOE.patient_id, 32, "la"),
            ((24, 100), DOE.us_date, 32, "la"),
            ((n - 24, 20), "PA", 32, "ra"),
            ((30, 360), "R", 40, "la"),
        ],
        4095.0,
    )
    ds = new_dataset(
        DOE,
        sop_class=ComputedRadiographyImageStorage,
        modality="CR",
        series=2,
        instance=1,
        series_description="CHEST PA",
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.KVP = "120"
    ds.ExposureTime = "8"
    ds.DistanceSourceToDetector = "1800"
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.ImagerPixelSpacing = ["0.5", "0.5"]
    set_pixels(ds, to_uint(img, 12, np.uint16), "MONOCHROME2", 12)
    ds.WindowCenter = "2000"
    ds.WindowWidth = "3800"
    ds.PresentationLUTShape = "IDENTITY"
    save(ds, out, "DICOM/DOE_JANE/DOE_JANE_CHEST_PA.dcm")


# ---------------------------------------------------------------- 2. CT series


def ct_series(out: Path) -> None:
    """Four 256x256 axial CT slices, uint16 with RescaleIntercept -1024, one series."""
    n = 256
    rng = np.random.default_rng(2002)
    y, x = grid(n, n)
    spacing = 1.5625
    origin = -200.0 + spacing / 2
    for i in range(4):
        z = -120.0 + 5.0 * i
        t = i / 3.0
        hu = np.full((n, n), -1000.0)
        body = ellipse(y, x, 0.05, 0.0, 0.62, 0.86, 0.02)
        hu += 900.0 * body  # fat -100
        hu += 140.0 * ellipse(y, x, 0.05, 0.0, 0.57, 0.8, 0.02)  # muscle 40
        lungs = ellipse(y, x, 0.0, -0.38, 0.38 + 0.04 * t, 0.3, 0.05)
        lungs += ellipse(y, x, 0.0, 0.38, 0.4 + 0.04 * t, 0.31, 0.05)
        hu -= 890.0 * np.clip(lungs, 0, 1)
        vessels = blur((rng.random((n, n)) > 0.995).astype(np.float64), 1.0) * 6
        hu += 500.0 * np.clip(vessels, 0, 1) * np.clip(lungs, 0, 1)
        heart = ellipse(y, x, 0.02, 0.08, 0.26 - 0.04 * t, 0.24 - 0.03 * t, 0.05)
        hu = hu * (1 - heart) + 40.0 * heart
        aorta = ellipse(y, x, 0.2, -0.06, 0.07, 0.07, 0.1)
        hu = hu * (1 - aorta) + 45.0 * aorta
        spine = ellipse(y, x, 0.42, 0.0, 0.12, 0.11, 0.05)
        hu = (
            hu * (1 - spine)
            + 300.0 * spine
            + 500.0 * np.clip(spine - ellipse(y, x, 0.42, 0.0, 0.1, 0.09), 0, 1)
        )
        table = (np.abs(y - 0.8) < 0.02) & (np.abs(x) < 0.9)
        hu[table] = 200.0
        hu = blur(hu, 0.8) + rng.normal(0.0, 12.0, (n, n))
        ds = new_dataset(
            SMITH,
            sop_class=CTImageStorage,
            modality="CT",
            series=3,
            instance=i + 1,
            series_description="AXIAL 5MM STD",
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.BodyPartExamined = "CHEST"
        ds.PatientPosition = "HFS"
        ds.FrameOfReferenceUID = UID(f"{SMITH.uid}.9")
        ds.PositionReferenceIndicator = ""
        ds.AcquisitionNumber = 1
        ds.KVP = "120"
        ds.XRayTubeCurrent = 180
        ds.ConvolutionKernel = "STANDARD"
        ds.SliceThickness = "5.0"
        ds.SpacingBetweenSlices = "5.0"
        ds.PixelSpacing = [str(spacing), str(spacing)]
        ds.ImageOrientationPatient = AXIAL
        ds.ImagePositionPatient = [str(origin), str(origin), f"{z:.1f}"]
        ds.SliceLocation = f"{z:.1f}"
        set_pixels(ds, to_uint(hu + 1024.0, 12, np.uint16), "MONOCHROME2", 12)
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = ["40", "-600"]
        ds.WindowWidth = ["400", "1500"]
        ds.WindowCenterWidthExplanation = ["MEDIASTINUM", "LUNG"]
        save(ds, out, f"PATIENT_SMITH/CT_CHEST/IM{i + 1:04d}")


# ---------------------------------------------------------------- 3. US RGB


def us_rgb(out: Path) -> None:
    """480x640 RGB ultrasound: a text banner on top and a grey sector (fan) below."""
    rows, cols = 480, 640
    rng = np.random.default_rng(3003)
    apex_x, apex_y, r0, r1, half = 320.0, 64.0, 20.0, 400.0, 0.62
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    r = np.hypot(xx - apex_x, yy - apex_y)
    theta = np.arctan2(xx - apex_x, yy - apex_y)
    fan = (r >= r0) & (r <= r1) & (np.abs(theta) <= half)
    echo = np.full((rows, cols), 0.55)  # liver parenchyma
    y, x = grid(rows, cols)
    echo -= 0.5 * ellipse(y, x, 0.2, -0.1, 0.12, 0.09, 0.2)  # gallbladder: anechoic
    echo -= 0.45 * ellipse(y, x, -0.05, 0.22, 0.05, 0.05, 0.3)  # vessel
    echo += 0.5 * np.clip(1.0 - np.abs(r - 330.0 - 25.0 * np.sin(theta * 3)) / 6.0, 0, 1)
    speckle = blur(rng.rayleigh(1.0, (rows, cols)), 0.9)
    grey = 190.0 * echo * speckle * np.exp(-(r - r0) / 900.0)
    grey = np.where(fan, np.clip(grey, 0, 255), 0.0)
    for depth in range(1, 16):  # 1 cm depth ticks right of the fan
        ty = int(apex_y + depth * 25)
        grey[ty - 1 : ty + 2, 590:596] = 255.0
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    t = GARCIA.study_time
    clock = f"{t[0:2]}:{t[2:4]}:{t[4:6]}"
    banner = [
        ((8, 6), f"{GARCIA.display}   ID: {GARCIA.patient_id}", 18, "la"),
        ((cols - 8, 6), f"{GARCIA.us_date} {clock}", 18, "ra"),
        ((8, 32), GARCIA.institution, 18, "la"),
    ]
    white = text_alpha((rows, cols), banner[:1])
    yellow = text_alpha((rows, cols), banner[1:])
    rgb[:58] = 0.0
    for c, (w, yl) in enumerate(((255, 255), (255, 220), (255, 0))):
        rgb[:, :, c] = rgb[:, :, c] * (1 - white) + w * white
        rgb[:, :, c] = rgb[:, :, c] * (1 - yellow) + yl * yellow
    ds = new_dataset(
        GARCIA,
        sop_class=UltrasoundImageStorage,
        modality="US",
        series=1,
        instance=1,
        series_description="ABDOMEN",
    )
    ds.Manufacturer = "SONOFAKE MEDICAL"
    ds.ManufacturerModelName = "ECHOSIM 3000"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.BodyPartExamined = "ABDOMEN"
    set_pixels(ds, to_uint(rgb, 8, np.uint8), "RGB", 8)
    ys, xs = np.nonzero(fan)
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0 = int(xs.min())
    region.RegionLocationMinY0 = int(ys.min())
    region.RegionLocationMaxX1 = int(xs.max())
    region.RegionLocationMaxY1 = int(ys.max())
    region.ReferencePixelX0 = int(apex_x) - int(xs.min())
    region.ReferencePixelY0 = int(apex_y) - int(ys.min())
    region.ReferencePixelPhysicalValueX = 0.0
    region.ReferencePixelPhysicalValueY = 0.0
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = 0.04
    region.PhysicalDeltaY = 0.04
    region.TransducerFrequency = 3500  # kHz
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    save(ds, out, "DICOM/GARCIA_MARIA/US_ABDOMEN_GARCIA_MARIA.dcm")


# ---------------------------------------------------------------- 4. XA multi-frame


def xa_cine(out: Path) -> None:
    """8-frame 256x256 8-bit XA run: contrast fills a vessel tree; name on every frame."""
    n, frames = 256, 8
    rng = np.random.default_rng(4004)
    y, x = grid(n, n)
    bg = 165.0 + 18.0 * blur(rng.normal(0.0, 1.0, (n, n)), 14.0) * 8 - 20.0 * y
    bg -= 25.0 * ellipse(y, x, 0.3, 0.15, 0.5, 0.45, 0.6)  # heart shadow
    # (branch polyline, fraction of the run at which contrast reaches its first point)
    tree = [
        ([(70, 70), (88, 92), (104, 118), (120, 140), (130, 165), (138, 190), (152, 218),
          (170, 245)], 0.0),
        ([(104, 118), (130, 112), (160, 122), (185, 140), (205, 162), (222, 188)], 0.25),
        ([(120, 140), (104, 162), (94, 190), (88, 215), (85, 240)], 0.35),
        ([(160, 122), (170, 150), (178, 180), (188, 208), (200, 236)], 0.5),
    ]  # fmt: skip
    catheter = capsules((n, n), [(70, 70, 40, 256, 3)])
    stack = []
    for f in range(frames):
        segs = []
        for depth, (branch, start) in enumerate(tree):
            reach = np.clip(((f + 1) / frames - start) / (1.0 - start), 0, 1) * (len(branch) - 1)
            w = 7.0 if depth == 0 else 5.0
            for j in range(int(np.ceil(reach))):
                (x0, y0), (x1, y1) = branch[j], branch[j + 1]
                t = min(1.0, reach - j)
                segs.append((x0, y0, x0 + t * (x1 - x0), y0 + t * (y1 - y0), w))
        vessel = blur(capsules((n, n), segs), 1.0)
        img = bg * (1 - 0.55 * vessel) * (1 - 0.4 * catheter)
        img += rng.normal(0.0, 3.0, (n, n))
        img = burn(img, [((6, 6), NGUYEN.display, 24, "la")], 255.0, halo=20.0)
        stack.append(to_uint(img, 8, np.uint8))
    ds = new_dataset(
        NGUYEN,
        sop_class=XRayAngiographicImageStorage,
        modality="XA",
        series=1,
        instance=1,
        series_description="LCA RAO 30",
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.BodyPartExamined = "HEART"
    ds.KVP = "80"
    ds.DistanceSourceToDetector = "1000"
    ds.DistanceSourceToPatient = "750"
    ds.ImagerPixelSpacing = ["0.6", "0.6"]
    ds.PositionerPrimaryAngle = "-30"
    ds.PositionerSecondaryAngle = "0"
    set_pixels(ds, np.stack(stack), "MONOCHROME2", 8)
    ds.FrameTime = "66.7"
    ds.CineRate = 15
    ds.RecommendedDisplayFrameRate = 15
    ds.FrameIncrementPointer = 0x00181063  # FrameTime
    ds.WindowCenter = "128"
    ds.WindowWidth = "256"
    save(ds, out, "DICOM/ST000001/SE000001/IM000001")


# ---------------------------------------------------------------- 5. DX MONOCHROME1


def dx_hand_mono1(out: Path) -> None:
    """512x512 DX left hand, MONOCHROME1: bone is displayed white, so stored values are LOW."""
    n = 512
    rng = np.random.default_rng(5005)
    fingers = [  # MCP joint -> fingertip, thumb on the right for a left hand PA
        ((222, 262), (190, 92)),
        ((256, 255), (256, 72)),
        ((290, 262), (318, 95)),
        ((322, 282), (372, 150)),
        ((312, 352), (398, 262)),
    ]
    soft = [(255.0, 512.0, 262.0, 380.0, 110.0), (240.0, 300.0, 300.0, 330.0, 70.0)]
    soft += [(ax, ay, bx, by, 36.0) for (ax, ay), (bx, by) in fingers]
    palm = Image.new("L", (n, n), 0)
    ImageDraw.Draw(palm).polygon([(200, 262), (338, 282), (312, 392), (205, 392)], fill=255)
    bones = [(228.0, 512.0, 238.0, 392.0, 26.0), (290.0, 512.0, 285.0, 392.0, 18.0)]
    bones += [(230.0 + 16 * i, 372.0, 260.0 + 4 * i, 392.0, 22.0) for i in range(3)]
    for (ax, ay), (bx, by) in fingers:
        wrist_x, wrist_y = 215.0 + (ax - 200.0) * 0.5, 365.0
        bones.append((wrist_x, wrist_y, ax, ay, 16.0))  # metacarpal
        for s, e in ((0.08, 0.42), (0.5, 0.75), (0.82, 0.97)):  # phalanges
            sx, sy, ex, ey = (
                ax + s * (bx - ax),
                ay + s * (by - ay),
                ax + e * (bx - ax),
                ay + e * (by - ay),
            )
            bones.append((sx, sy, ex, ey, 13.0))
    soft_mask = np.maximum(capsules((n, n), soft), np.asarray(palm, dtype=np.float64) / 255.0)
    display = 0.35 * blur(soft_mask, 3.0) + 0.45 * blur(capsules((n, n), bones), 1.5)
    stored = 3900.0 - 3300.0 * display + rng.normal(0.0, 20.0, (n, n))
    stored = burn(
        stored,
        [
            ((20, 16), "L", 40, "la"),
            ((20, n - 64), PATEL.display, 24, "la"),
            ((20, n - 34), PATEL.us_date, 24, "la"),
        ],
        150.0,  # low stored value = white on a MONOCHROME1 display
    )
    ds = new_dataset(
        PATEL,
        sop_class=DigitalXRayImageStorageForPresentation,
        modality="DX",
        series=1,
        instance=1,
        series_description="HAND PA LEFT",
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.DetectorType = "SCINTILLATOR"
    ds.BodyPartExamined = "HAND"
    ds.ViewPosition = "PA"
    ds.ImageLaterality = "L"
    ds.Laterality = "L"
    ds.KVP = "55"
    ds.PixelSpacing = ["0.35", "0.35"]
    ds.ImagerPixelSpacing = ["0.35", "0.35"]
    set_pixels(ds, to_uint(stored, 12, np.uint16), "MONOCHROME1", 12)
    ds.WindowCenter = "2300"
    ds.WindowWidth = "3600"
    ds.PresentationLUTShape = "INVERSE"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    save(ds, out, "DICOM/PATEL_ANIL/HAND_LEFT.DCM")


# ---------------------------------------------------------------- 6. JPEG Baseline


def cr_knee_jpeg(out: Path) -> None:
    """512x512 8-bit CR knee AP, JPEG Baseline (Pillow, quality 90), name/date burned in."""
    n = 512
    rng = np.random.default_rng(6006)
    y, x = grid(n, n)
    soft = np.clip(1.0 - np.abs(x) / (0.62 - 0.05 * y), 0, 1) ** 0.3
    femur = ellipse(y, x, -0.75, 0.0, 0.62, 0.14, 0.05)
    femur = np.maximum(femur, ellipse(y, x, -0.3, 0.0, 0.2, 0.2, 0.1))
    for side in (-1.0, 1.0):  # condyles
        femur = np.maximum(femur, ellipse(y, x, -0.16, side * 0.14, 0.12, 0.16, 0.1))
    tibia = np.maximum(
        ellipse(y, x, 0.1, 0.0, 0.07, 0.33, 0.1), ellipse(y, x, 0.68, 0.02, 0.6, 0.14, 0.05)
    )
    tibia = np.maximum(tibia, ellipse(y, x, 0.22, 0.01, 0.16, 0.25, 0.1))
    fibula = np.maximum(
        ellipse(y, x, 0.24, 0.3, 0.07, 0.06, 0.2), ellipse(y, x, 0.7, 0.31, 0.45, 0.035, 0.1)
    )
    patella = ellipse(y, x, -0.24, -0.02, 0.12, 0.1, 0.3)
    bone = np.clip(femur + tibia + fibula, 0, 1)
    marrow = blur(bone, 6.0)
    img = 14.0 + 80.0 * soft + 120.0 * bone - 35.0 * marrow * bone + 25.0 * patella
    img = blur(img, 1.5) + rng.normal(0.0, 2.5, (n, n))
    img = burn(
        img,
        [
            ((16, 14), KOWALSKI.display, 28, "la"),
            ((16, 50), KOWALSKI.us_date, 28, "la"),
            ((n - 20, 14), "R", 36, "ra"),
        ],
        255.0,
        halo=0.0,
    )
    pixels = to_uint(img, 8, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    frame = buf.getvalue()
    ds = new_dataset(
        KOWALSKI,
        sop_class=ComputedRadiographyImageStorage,
        modality="CR",
        series=1,
        instance=1,
        series_description="KNEE AP RIGHT",
        transfer_syntax=JPEGBaseline8Bit,
    )
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.BodyPartExamined = "KNEE"
    ds.ViewPosition = "AP"
    ds.Laterality = "R"
    ds.PatientOrientation = ["L", "F"]
    ds.PixelSpacing = ["0.3", "0.3"]
    ds.ImagerPixelSpacing = ["0.3", "0.3"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = f"{pixels.size / len(frame):.2f}"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.WindowCenter = "128"
    ds.WindowWidth = "256"
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    save(ds, out, "DICOM/KOWALSKI_ANNA/KOWALSKI_ANNA_KNEE_R.dcm")


# ---------------------------------------------------------------- 7. private tags + nesting


def mr_private_nested(out: Path) -> Path:
    """192x192 MR brain slice with an 'ACME IMAGING' private block and PHI 3 sequences deep."""
    n = 192
    rng = np.random.default_rng(7007)
    y, x = grid(n, n)
    scalp = ellipse(y, x, 0.0, 0.0, 0.92, 0.76, 0.03)
    skull = ellipse(y, x, 0.0, 0.0, 0.86, 0.7, 0.03)
    brain = ellipse(y, x, 0.0, 0.0, 0.8, 0.64, 0.03)
    wm = ellipse(y, x, 0.0, 0.0, 0.62, 0.48, 0.3)
    vent = ellipse(y, x, -0.05, -0.1, 0.25, 0.07, 0.2) + ellipse(y, x, -0.05, 0.1, 0.25, 0.07, 0.2)
    img = (
        1400.0 * scalp - 1300.0 * skull + 1150.0 * brain + 350.0 * wm - 1200.0 * np.clip(vent, 0, 1)
    )
    img = blur(np.clip(img, 0, None), 1.0) + np.abs(rng.normal(0.0, 30.0, (n, n)))
    ds = new_dataset(
        MUELLER,
        sop_class=MRImageStorage,
        modality="MR",
        series=4,
        instance=12,
        series_description="AX T1 SE",
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.BodyPartExamined = "HEAD"
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = UID(f"{MUELLER.uid}.9")
    ds.PositionReferenceIndicator = ""
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = "500"
    ds.EchoTime = "15"
    ds.MagneticFieldStrength = "1.5"
    ds.SliceThickness = "5.0"
    ds.PixelSpacing = ["1.25", "1.25"]
    ds.ImageOrientationPatient = AXIAL
    ds.ImagePositionPatient = ["-119.375", "-139.375", "35.0"]
    ds.SliceLocation = "35.0"
    set_pixels(ds, to_uint(img, 12, np.uint16), "MONOCHROME2", 12)
    ds.WindowCenter = "900"
    ds.WindowWidth = "1800"

    deepest = Dataset()  # ReferencedStudySequence > ReferencedPatientSequence > OtherPatientIDs
    deepest.PatientName = MUELLER.name
    deepest.PatientID = "ALT-0098812"
    deepest.IssuerOfPatientID = "FICTIONAL COUNTY HOSPITAL"
    deepest.PatientBirthDate = MUELLER.birth_date
    deepest.TypeOfPatientID = "TEXT"
    patient_ref = Dataset()
    patient_ref.ReferencedSOPClassUID = UID("1.2.840.10008.3.1.2.1.1")
    patient_ref.ReferencedSOPInstanceUID = UID(f"{MUELLER.uid}.7.1")
    patient_ref.OtherPatientIDsSequence = Sequence([deepest])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = UID("1.2.840.10008.3.1.2.3.1")
    study_ref.ReferencedSOPInstanceUID = UID(f"{MUELLER.uid}.7.2")
    study_ref.ReferencedPatientSequence = Sequence([patient_ref])
    ds.ReferencedStudySequence = Sequence([study_ref])

    block = ds.private_block(0x0029, "ACME IMAGING", create=True)
    block.add_new(0x01, "LO", MUELLER.name)
    block.add_new(0x02, "DA", MUELLER.birth_date)
    block.add_new(0x03, "LO", MUELLER.patient_id)
    item = Dataset()
    item_block = item.private_block(0x0029, "ACME IMAGING", create=True)
    item_block.add_new(0x11, "LO", MUELLER.name)
    item_block.add_new(0x12, "DA", "20190611")
    item_block.add_new(0x13, "LO", "PRIOR MR AT ALPINE FAKE UNIVERSITY CLINIC")
    item.OperatorsName = "TECH^PRETEND"
    block.add_new(0x10, "SQ", Sequence([item]))
    return save(ds, out, f"DICOM/MUELLER_KLAUS/{ds.SOPInstanceUID}.dcm")


# ---------------------------------------------------------------- 8. non-DICOM files


def non_dicom(out: Path) -> None:
    """A CD autorun file and a plain-text note (with fake PHI) that are not DICOM."""
    autorun = (
        "[autorun]\r\n"
        "open=VIEWER\\FAKEVIEW.EXE\r\n"
        "icon=VIEWER\\FAKEVIEW.ICO\r\n"
        "label=PATIENT CD\r\n"
    )
    (out / "AUTORUN.INF").write_bytes(autorun.encode("ascii"))
    note = (
        "Patient CD export notes (FAKE DATA)\n"
        f"Patient: {DOE.display}  MRN {DOE.patient_id}  DOB 07/22/1968\n"
        "Burned to CD at MERCY FICTIONAL MEDICAL CENTER.\n"
    )
    path = out / "DICOM/DOE_JANE/notes.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(note.encode("ascii"))


# ---------------------------------------------------------------- 9. a phone photo


def wristband_photo(out: Path) -> None:
    """A phone photo of a hospital wristband: name, MRN and birth date printed on the
    band, EXIF with GPS, camera and time, stored sideways with Orientation 6 (rotate 90
    degrees clockwise to show), as phones write portrait shots."""
    width, height = 900, 1200
    yy, xx = np.mgrid[:height, :width]
    shade = (200 - 40 * yy / height - 20 * xx / width).astype(np.uint8)
    table = np.stack([shade, shade - 10, shade - 25], axis=-1)
    upright = Image.fromarray(table)
    draw = ImageDraw.Draw(upright)
    draw.rounded_rectangle((60, 420, 840, 700), radius=60, fill=(214, 170, 140))  # a wrist
    draw.rectangle((40, 500, 860, 620), fill=(246, 246, 240))  # the band
    font = ImageFont.load_default(size=34)
    draw.text((80, 512), f"{SMITH.display}  {SMITH.patient_id}", fill=(20, 20, 20), font=font)
    draw.text((80, 560), "DOB 01/09/1957", fill=(20, 20, 20), font=font)
    stored = upright.rotate(90, expand=True)  # Orientation 6 turns it back clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F], exif[0x0110] = "FAKEPHONE", "FAKEPHONE 12"
    exif[0x0132] = "2022:11:03 14:45:10"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (40.0, 26.0, 46.3), 3: "W", 4: (79.0, 58.0, 56.1)})
    path = out / "PHOTOS/IMG_0412.JPG"
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=88, exif=exif.tobytes())
    path.write_bytes(buffer.getvalue())


def build(out: Path) -> None:
    """Write every sample file under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    cr_chest(out)
    ct_series(out)
    us_rgb(out)
    xa_cine(out)
    dx_hand_mono1(out)
    cr_knee_jpeg(out)
    mr_private_nested(out)
    non_dicom(out)
    wristband_photo(out)


def main(argv: list[str] | None = None) -> None:
    """Command line: --out DIR (default: the folder holding this script)."""
    parser = argparse.ArgumentParser(description="Write the synthetic sample DICOM files.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    build(args.out)


if __name__ == "__main__":
    main()
