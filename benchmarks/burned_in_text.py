"""Burned-in text: recall, leaks, kept markers, over-redaction and time, per image type.

A labelled corpus is generated in the run (seeded), so every figure can be checked:

- radiograph: 2500 x 2000, 12-bit stored values rendered through a window;
- ct: 512 x 512, 16-bit Hounsfield values with a rescale intercept, soft-tissue window;
- us: 640 x 480 RGB, speckled sector, coloured banner, grey side panels;
- sc: 1024 x 768 RGB secondary capture: a viewer's screen with panels and a viewport.

Text is drawn in many fonts (Pillow's default TrueType at any size, and every TTF that
ships with Pillow or matplotlib or sits in the system's DejaVu folder, if present) with
cap heights 8 to 40 px, white, grey and coloured, on dark borders and over bright
anatomy, in corners, banners and mid-image; on radiographs and CT a quarter of the
lines are grey on grey (a grey about 30 to 65 levels from the anatomy under them, over
anatomy), and some lines hold one identifying token among words that are kept alone
(`LIVER DOE`); some images carry allow-listed markers (L, R, PA, ...) and some no text
at all. Every word is labelled PHI, other text or
marker, with the exact pixels it touches.

Per image type it prints the medians and totals of:

- PHI recall: share of PHI words whose every pixel lies in a redaction box;
- readable leaks: PHI words an independent whole-image Tesseract pass (other settings:
  automatic page segmentation on the enlarged image, sparse text on its inverse) still
  reads in the redacted output (target 0);
- marker keep rate: share of allow-listed markers with no pixel covered;
- over-redaction: share of pixels away from any labelled word (farther than a fair pad)
  that the redaction changed;
- items partly covered: words with some glyph pixels covered and some still visible
  (target 0: a line is covered whole or not at all);
- technical text kept: share of technical words (kV, gain, depth ...) with no pixel
  covered (target on ultrasound: 80%);
- seconds per image for `search_image` (the text search with its second look)
  alone and for the whole pipeline (read, tags,
  decode, render, text search with its second look, redaction and PNG write: `deid
  anonymize` on the DICOM file with the `safe-harbor` profile and the chosen text
  policy), beside the floor (read + decode + render + PNG write) and one plain
  whole-image Tesseract pass, all timed in the same run; the plain pass is also scored
  as a yardstick (every word it finds covered). The radiograph target is the whole
  pipeline no slower than the plain pass.

Run: python benchmarks/burned_in_text.py [--quick] [--types radiograph,ct]
[--policy all-text|phi-only] [--seed N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    generate_uid,
)

from deid import output, pipeline, pixels, profiles, reader, verify
from deid import settings as settings_mod
from deid.boxes import Box
from deid.ocr import read_words
from deid.text import TextPolicy, first_look_scale, redaction_boxes, search_image

ALLOW = (
    "L", "R", "PA", "AP", "LAT", "LATERAL", "LL", "RL", "OBL", "LAO", "RAO", "LPO", "RPO",
    "SUPINE", "ERECT", "UPRIGHT", "PRONE", "DECUB", "PORTABLE", "INSP", "EXP",
    "AXIAL", "SAG", "COR", "CM", "MM", "KV", "MAS", "HZ", "DB", "FPS",
)  # fmt: skip
MARKERS = ("L", "R", "PA", "AP", "LAT", "ERECT", "SUPINE", "PORTABLE")
TYPES = ("radiograph", "ct", "us", "sc")

LAST = [
    "DOE",
    "SMITH",
    "GARCIA",
    "NGUYEN",
    "KOWALSKI",
    "OKAFOR",
    "MUELLER",
    "TANAKA",
    "JOHANSSON",
    "ROSSI",
    "HASSAN",
    "MORENO",
    "BECKER",
    "PETROV",
    "WALSH",
    "LINDQVIST",
]
FIRST = [
    "JOHN",
    "ANNA",
    "MARIA",
    "WEI",
    "FATIMA",
    "PETER",
    "SOFIA",
    "KENJI",
    "LUCAS",
    "AMARA",
    "OLGA",
    "DIEGO",
    "HANNAH",
    "OMAR",
    "GRETA",
    "NIKOLAI",
]
HOSPITALS = [
    "ST MARY HOSPITAL",
    "CITY GENERAL",
    "NORTHWOOD CLINIC",
    "LAKESIDE MEDICAL",
    "RIVERBEND HOSP",
    "UNIV MED CENTER",
]
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
OTHER = {
    "radiograph": ["120 kVp 2.5 mAs", "SID 180", "EI 412", "DAP 0.8", "Grid", "Exp 12 ms"],
    "ct": ["120 kV", "250 mAs", "W 400 L 40", "Se 3 Im 45", "Thk 5.0", "FOV 36", "B30f",
           "Tilt 0", "Pitch 0.9"],
    "us": ["MI 0.8", "TIS 0.4", "Gain 52", "DR 60", "C5-1", "Depth 16", "Frq 3.5",
           "ABD GEN", "PRF 2.5"],
    "sc": ["Zoom 1.5", "W 1500 L -600", "Se 2", "Im 112", "Layout 1x1", "Tools", "Print",
           "Export", "Series", "Measure"],
}  # fmt: skip
# Technical text proper, scored as "tech kept"; the labels of PHI lines (MRN, DOB ...)
# are covered with their line and not counted.
TECHNICAL = {
    kind: {word for line in lines for word in line.split()} for kind, lines in OTHER.items()
}


@dataclass
class Word:
    """One labelled word: its text, kind and the pixels it touches (a local mask)."""

    text: str
    kind: str  # "phi", "other" or "marker"
    box: Box
    mask: np.ndarray  # bool, box-sized
    cap: int  # cap height, px


@dataclass
class Sample:
    """A generated image, its DICOM file, and what is written where."""

    kind: str
    name: str
    ds: FileDataset
    image: np.ndarray  # what the pipeline sees: the rendered uint8 image
    words: list[Word] = field(default_factory=list)
    phi: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- fonts and drawing


def font_files() -> list[Path]:
    """Every TTF shipped with Pillow or matplotlib, and the system's DejaVu, if present."""
    found: list[Path] = []
    import PIL

    found += sorted(Path(PIL.__file__).parent.rglob("*.ttf"))
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        found += sorted((Path(matplotlib.__file__).parent / "mpl-data" / "fonts").rglob("*.ttf"))
    except ImportError:
        pass
    system = Path("/usr/share/fonts/truetype/dejavu")
    if system.is_dir():
        skip = ("Math", "ExtraLight")
        found += sorted(p for p in system.glob("*.ttf") if not any(s in p.name for s in skip))
    return found


class Fonts:
    """Fonts by file (None: Pillow's default TrueType) and cap height, sized once."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files: list[Path | None] = [None, *files]
        self._cache: dict[tuple[Path | None, int], ImageFont.FreeTypeFont] = {}

    def get(self, file: Path | None, cap: int) -> ImageFont.FreeTypeFont:
        key = (file, cap)
        if key not in self._cache:
            probe = self._load(file, 100)
            box = probe.getbbox("H")
            size = max(4, round(100 * cap / max(1, box[3] - box[1])))
            self._cache[key] = self._load(file, size)
        return self._cache[key]

    @staticmethod
    def _load(file: Path | None, size: int) -> ImageFont.FreeTypeFont:
        if file is None:
            font = ImageFont.load_default(size=size)
            assert isinstance(font, ImageFont.FreeTypeFont)
            return font
        return ImageFont.truetype(str(file), size)


@dataclass
class Canvas:
    """A display image in floats (grey (H, W) or RGB (H, W, 3), 0..1) being drawn on."""

    pixels: np.ndarray
    words: list[Word] = field(default_factory=list)
    taken: list[Box] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def luma(self) -> np.ndarray:
        if self.pixels.ndim == 2:
            return self.pixels
        return np.asarray(self.pixels @ np.array([0.299, 0.587, 0.114]))

    def free(self, box: Box, margin: int) -> bool:
        if box.left < 2 or box.top < 2 or box.right > self.width - 2:
            return False
        if box.bottom > self.height - 2:
            return False
        grown = box.padded(margin, self.width, self.height)
        return not any(grown.overlaps(t) for t in self.taken)

    def line_size(
        self, words: Sequence[tuple[str, str]], font: ImageFont.FreeTypeFont
    ) -> tuple[int, int, int]:
        """Width, top offset and height of a line's ink when drawn at (0, 0)."""
        line = " ".join(w for w, _ in words)
        _left, top, right, bottom = font.getbbox(line)
        return int(right), int(top), int(bottom - top)

    def draw(
        self,
        xy: tuple[int, int],
        words: Sequence[tuple[str, str]],
        font: ImageFont.FreeTypeFont,
        colour: float | tuple[float, float, float],
        cap: int,
        *,
        aliased: bool,
    ) -> None:
        """Burn a line of (text, kind) words at xy (the line's drawing origin)."""
        x0, y0 = xy
        offset = 0.0
        for index, (text, kind) in enumerate(words):
            if index:
                offset += font.getlength(" ")
            l0, t0, r0, b0 = font.getbbox(text)
            ox, oy = int(x0 + offset) + int(l0) - 4, y0 + int(t0) - 4
            alpha = Image.new("L", (int(r0 - l0) + 10, int(b0 - t0) + 10), 0)
            ImageDraw.Draw(alpha).text((x0 + offset - ox, y0 - oy), text, font=font, fill=255)
            offset += font.getlength(text)
            bbox = alpha.getbbox()
            if bbox is None:
                continue
            crop = np.asarray(alpha.crop(bbox), dtype=np.float64) / 255
            left, top = bbox[0] + ox, bbox[1] + oy
            right, bottom = bbox[2] + ox, bbox[3] + oy
            if left < 0 or top < 0 or right > self.width or bottom > self.height:
                continue
            if aliased:
                crop = (crop >= 0.5).astype(np.float64)
            region = self.pixels[top:bottom, left:right]
            before = region.copy()
            if region.ndim == 3:
                a = crop[..., None]
                region[...] = region * (1 - a) + np.asarray(colour) * a
                change = np.abs(region - before).max(axis=2)
            else:
                value = float(colour if isinstance(colour, float | int) else colour[0])
                region[...] = region * (1 - crop) + value * crop
                change = np.abs(region - before)
            # A word's pixels are those it touches and visibly changes: white text over
            # a white rib leaves nothing there to find or to leak.
            mask = (crop > 0) & (change >= 0.04)
            if not mask.any():
                continue
            self.words.append(Word(text, kind, Box(left, top, right, bottom), mask, cap))
        width, top, height = self.line_size(words, font)
        self.taken.append(Box(x0, y0 + top, x0 + width, y0 + top + height))


def contrast_ok(
    canvas: Canvas, box: Box, colour: float | tuple[float, float, float], least: float = 0.24
) -> bool:
    """Whether text of this colour would stand out from what is under `box` to a reader.

    98% of what lies under the text must differ from it by about 60 grey levels (or, for
    colour, by as much in saturation): a reader could read it, so must the redaction.
    """
    under = canvas.pixels[box.top : box.bottom, box.left : box.right]
    if under.size == 0:
        return False
    if under.ndim == 3:
        flat = under.reshape(-1, 3)
        col = np.asarray(colour, dtype=np.float64)
        luma = flat @ np.array([0.299, 0.587, 0.114])
        tl = float(col @ np.array([0.299, 0.587, 0.114]))
        chroma_text = float(col.max() - col.min())
        chroma_bg = flat.max(axis=1) - flat.min(axis=1)
        luma_gap = np.abs(luma - tl)
        chroma_gap = np.abs(chroma_bg - chroma_text)
        seen = np.maximum(luma_gap, 0.8 * chroma_gap)
        return float(np.percentile(seen, 2)) >= 0.22
    value = float(colour if isinstance(colour, float | int) else colour[0])
    return float(np.percentile(np.abs(under - value), 2)) >= least


LOW_CONTRAST = 0.12  # least difference of a low-contrast line: grey text on grey anatomy


def near_grey(canvas: Canvas, box: Box, rng: np.random.Generator) -> float:
    """A grey just far enough from what lies under `box` to be read: grey on grey."""
    under = canvas.pixels[box.top : box.bottom, box.left : box.right]
    median = float(np.median(under)) if under.size else 0.5
    step = float(rng.uniform(0.16, 0.26))
    return median + step if median + step <= 1.0 else median - step


# ---------------------------------------------------------------- patients


@dataclass
class Patient:
    last: str
    first: str
    mrn: str
    accession: str
    birth: tuple[int, int, int]
    study: tuple[int, int, int]
    hospital: str
    time: str

    def renderings(self, rng: np.random.Generator) -> list[list[tuple[str, str]]]:
        """Lines of words as a scanner or viewer prints them; (text, kind) per word."""
        name = [
            [(f"{self.last}^{self.first}", "phi")],
            [(f"{self.last},", "phi"), (self.first, "phi")],
            [(self.first.title(), "phi"), (self.last.title(), "phi")],
            [(self.last, "phi"), (self.first, "phi")],
        ][int(rng.integers(4))]
        mrn = [
            [("ID:", "other"), (self.mrn, "phi")],
            [("MRN", "other"), (self.mrn, "phi")],
            [(self.mrn, "phi")],
        ][int(rng.integers(3))]
        lines = [name, mrn]
        lines.append([("DOB", "other"), (_date(self.birth, rng), "phi")])
        lines.append([(_date(self.study, rng), "phi"), (self.time, "phi")])
        if rng.random() < 0.6:
            lines.append([("ACC", "other"), (self.accession, "phi")])
        if rng.random() < 0.6:
            lines.append([(w, "phi") for w in self.hospital.split()])
        if rng.random() < 0.4:  # one identifying token among words that are kept alone
            label = ["LIVER", "CHEST", "SAG", "AXIAL", "PORTABLE"][int(rng.integers(5))]
            lines.append([(label, "other"), (self.last, "phi")])
        return lines

    def header(self, ds: FileDataset) -> None:
        ds.PatientName = f"{self.last}^{self.first}"
        ds.PatientID = self.mrn
        ds.AccessionNumber = self.accession
        ds.PatientBirthDate = "{:04d}{:02d}{:02d}".format(*self.birth)
        ds.StudyDate = "{:04d}{:02d}{:02d}".format(*self.study)
        ds.StudyTime = self.time.replace(":", "")
        ds.InstitutionName = self.hospital


def _date(date: tuple[int, int, int], rng: np.random.Generator) -> str:
    y, m, d = date
    forms = [
        f"{y:04d}-{m:02d}-{d:02d}",
        f"{m:02d}/{d:02d}/{y:04d}",
        f"{d:02d}.{m:02d}.{y:04d}",
        f"{d:02d}-{MONTHS[m - 1]}-{y:04d}",
        f"{y:04d}{m:02d}{d:02d}",
    ]
    return forms[int(rng.integers(len(forms)))]


def make_patient(rng: np.random.Generator) -> Patient:
    return Patient(
        last=LAST[int(rng.integers(len(LAST)))],
        first=FIRST[int(rng.integers(len(FIRST)))],
        mrn=str(int(rng.integers(10**6, 10**9))),
        accession="A" + str(int(rng.integers(10**6, 10**8))),
        birth=(int(rng.integers(1930, 2015)), int(rng.integers(1, 13)), int(rng.integers(1, 29))),
        study=(int(rng.integers(2005, 2025)), int(rng.integers(1, 13)), int(rng.integers(1, 29))),
        hospital=HOSPITALS[int(rng.integers(len(HOSPITALS)))],
        time=f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}:"
        f"{int(rng.integers(0, 60)):02d}",
    )


# ---------------------------------------------------------------- backgrounds


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], radius: float) -> np.ndarray:
    small = (max(2, int(shape[0] / radius)), max(2, int(shape[1] / radius)))
    field_ = Image.fromarray(rng.normal(0, 1, small).astype(np.float32), mode="F")
    return np.asarray(field_.resize((shape[1], shape[0]), Image.Resampling.BICUBIC))


def _wires(rng: np.random.Generator, canvas: np.ndarray, count: int, value: float) -> None:
    """Thin curved lines (catheters, leads) drawn over the anatomy."""
    h, w = canvas.shape[:2]
    picture = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(picture)
    for _ in range(count):
        x, y = float(rng.uniform(0.2, 0.8) * w), float(rng.uniform(0.1, 0.3) * h)
        points = []
        angle = float(rng.uniform(1.2, 1.9))
        for _ in range(40):
            points.append((x, y))
            angle += float(rng.normal(0, 0.08))
            x += 0.018 * h * np.cos(angle)
            y += 0.018 * h * np.sin(angle)
        draw.line(points, fill=255, width=int(rng.integers(2, 5)))
    alpha = np.asarray(picture, dtype=np.float64) / 255
    if canvas.ndim == 3:
        alpha = alpha[..., None]
    canvas[...] = canvas * (1 - alpha) + value * alpha


def radiograph_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h * float(rng.uniform(0.45, 0.55)), w * float(rng.uniform(0.45, 0.55))
    r = ((y - cy) / (0.46 * h)) ** 2 + ((x - cx) / (0.40 * w)) ** 2
    body = np.clip(1.0 - r, 0, 1) ** 0.4 * 0.62
    lungs = (
        np.exp(
            -(((y - 0.45 * h) / (0.22 * h)) ** 2)
            - (np.abs(x - cx) - 0.17 * w) ** 2 / (0.09 * w) ** 2
        )
        * 0.3
    )
    spine = np.exp(-(((x - cx) / (0.04 * w)) ** 2)) * (r < 1) * 0.25
    ribs = 0.12 * (np.sin(y / h * 55 + np.abs(x - cx) / w * 6) > 0.55) * (r < 0.85)
    img = 0.06 + body - lungs + spine + ribs
    img += 0.06 * _smooth_noise(rng, (h, w), 120)
    img += rng.normal(0, 0.025, (h, w)).astype(np.float32)
    img[: int(h * 0.03)] = 0.05 + rng.normal(0, 0.01, (int(h * 0.03), w))  # collimator edge
    _wires(rng, img, int(rng.integers(0, 3)), 0.95)
    return np.asarray(img, dtype=np.float64)


def ct_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h * 0.5, w * 0.5
    r = ((y - cy) / (0.34 * h)) ** 2 + ((x - cx) / (0.43 * w)) ** 2
    img = np.where(r < 1, 0.55, -0.1).astype(np.float32)  # soft tissue; air below window
    lungs = (((y - cy) / (0.22 * h)) ** 2 + ((np.abs(x - cx) - 0.2 * w) / (0.15 * w)) ** 2) < 1
    img[lungs] = -0.05
    img[(r > 0.82) & (r < 0.9)] = 1.3  # ribs ring
    spine = ((y - 0.68 * h) ** 2 + (x - cx) ** 2) < (0.05 * h) ** 2
    img[spine] = 1.4
    img += np.where(r < 1, 0.05 * _smooth_noise(rng, (h, w), 30), 0)
    img += rng.normal(0, 0.04, (h, w)).astype(np.float32)
    table = np.abs(y - (cy + 0.37 * h + 0.0004 * (x - cx) ** 2)) < 2
    img[table] = 0.8
    return np.asarray(img, dtype=np.float64)


def us_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w, 3), dtype=np.float64)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    apex_y, apex_x = 0.09 * h, 0.5 * w
    angle = np.arctan2(x - apex_x, y - apex_y)
    radius = np.hypot(x - apex_x, y - apex_y)
    sector = (np.abs(angle) < 0.62) & (radius > 0.04 * h) & (radius < 0.86 * h)
    tissue = 0.35 + 0.15 * _smooth_noise(rng, (h, w), 40)
    speckle = rng.rayleigh(0.5, (h, w))
    pic = Image.fromarray((np.clip(tissue * speckle, 0, 1) * 255).astype(np.uint8))
    speck = np.asarray(pic.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float64) / 255
    grey = np.where(sector, speck, 0.0)
    img[...] = grey[..., None]
    if rng.random() < 0.5:  # a colour doppler box
        box = (angle > -0.2) & (angle < 0.25) & (radius > 0.3 * h) & (radius < 0.55 * h)
        flow = _smooth_noise(rng, (h, w), 12)
        red = box & (flow > 0.7)
        blue = box & (flow < -0.7)
        img[red] = (0.85, 0.15, 0.1)
        img[blue] = (0.1, 0.3, 0.9)
    bar = int(rng.integers(24, 44))
    banner = np.asarray(rng.choice([(0.08, 0.1, 0.3), (0.18, 0.18, 0.18), (0.0, 0.0, 0.0)]))
    img[:bar] = banner
    gx = int(0.9 * w)  # grey-scale bar
    img[int(0.2 * h) : int(0.6 * h), gx : gx + 10] = np.linspace(1, 0, int(0.6 * h) - int(0.2 * h))[
        :, None, None
    ]
    for depth in range(5):  # depth ticks
        yy = int(apex_y + (depth + 1) * 0.15 * h)
        img[yy : yy + 2, int(0.77 * w) : int(0.77 * w) + 6] = 0.8
    return img


def sc_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = np.full((h, w, 3), 0.14)
    img[:28] = 0.82  # title bar
    img[28:, :180] = 0.2  # side panel
    img[h - 24 :] = 0.3  # status bar
    vy0, vy1, vx0, vx1 = 40, h - 36, 192, w - 12
    view = ct_background(rng, vy1 - vy0, vx1 - vx0)
    img[vy0:vy1, vx0:vx1] = np.clip(view, 0, 1)[..., None]
    for i in range(6):  # buttons
        img[40 + 40 * i : 40 + 40 * i + 30, 10:170] = 0.32
    return img


# ---------------------------------------------------------------- placing text


@dataclass
class Layout:
    """Where lines go: corner anchors and mid-image spots, per image type."""

    kind: str
    corners: list[tuple[str, int, int]]  # (which, x, y): "tl", "tr", "bl", "br"
    caps: tuple[int, int]


def place_lines(
    rng: np.random.Generator,
    canvas: Canvas,
    fonts: Fonts,
    lines: list[list[tuple[str, str]]],
    layout: Layout,
    colours: Callable[[], float | tuple[float, float, float]],
    *,
    mid_share: float,
    low_share: float = 0.0,
) -> None:
    """Stack lines in corners (and some mid-image), each font/size/colour drawn at random.

    A `low_share` of the lines (grey images only) is drawn grey on grey: a grey close
    to what lies under it, over anatomy, as faint as a reader can still read.
    """
    order = list(layout.corners)
    rng.shuffle(order)
    font_file = fonts.files[int(rng.integers(len(fonts.files)))]
    cap = int(rng.integers(layout.caps[0], layout.caps[1] + 1))
    aliased = bool(rng.random() < 0.4)
    cursor: dict[str, int] = {}
    for index, line in enumerate(lines):
        if rng.random() < 0.35:  # now and then a new font or size within an image
            font_file = fonts.files[int(rng.integers(len(fonts.files)))]
            cap = int(rng.integers(layout.caps[0], layout.caps[1] + 1))
        font = fonts.get(font_file, cap)
        width, top, height = canvas.line_size(line, font)
        spacing = int(height * 0.6) + 3
        low = canvas.pixels.ndim == 2 and rng.random() < low_share
        for attempt in range(40):
            colour = colours()
            if low or rng.random() < mid_share or attempt >= 20:
                x = int(rng.integers(4, max(5, canvas.width - width - 4)))
                y = int(rng.integers(4, max(5, canvas.height - height - 4))) - top
            else:
                which, cx, cy = order[(index + attempt) % len(order)]
                at = cursor.get(which, 0)
                x = cx if which[1] == "l" else cx - width
                y = cy + at - top if which[0] == "t" else cy - at - height - top
            box = Box(x, y + top, x + width, y + top + height)
            if low:
                colour = near_grey(canvas, box, rng)
            least = LOW_CONTRAST if low else 0.24
            if canvas.free(box, spacing) and contrast_ok(canvas, box, colour, least):
                canvas.draw((x, y), line, font, colour, cap, aliased=aliased)
                if attempt < 20 and rng.random() >= mid_share:
                    which = order[(index + attempt) % len(order)][0]
                    cursor[which] = cursor.get(which, 0) + height + spacing
                break


def place_markers(
    rng: np.random.Generator,
    canvas: Canvas,
    fonts: Fonts,
    count: int,
    caps: tuple[int, int],
    colour: Callable[[], float | tuple[float, float, float]],
) -> None:
    """Allow-listed markers, each well clear of other text."""
    for _ in range(count):
        text = MARKERS[int(rng.integers(len(MARKERS)))]
        font = fonts.get(
            fonts.files[int(rng.integers(len(fonts.files)))],
            int(rng.integers(caps[0], caps[1] + 1)),
        )
        width, top, height = canvas.line_size([(text, "marker")], font)
        for _attempt in range(60):
            x = int(rng.integers(4, max(5, canvas.width - width - 4)))
            y = int(rng.integers(4, max(5, canvas.height - height - 4))) - top
            box = Box(x, y + top, x + width, y + top + height)
            c = colour()
            if canvas.free(box, 2 * height) and contrast_ok(canvas, box, c):
                cap = font.getbbox("H")[3] - font.getbbox("H")[1]
                canvas.draw((x, y), [(text, "marker")], font, c, int(cap), aliased=False)
                break


# ---------------------------------------------------------------- DICOM files


def _dataset(sop_class: str, modality: str, rows: int, cols: int) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("bench", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.Rows, ds.Columns = rows, cols
    ds.Manufacturer = "ACME"
    return ds


def _grey_file(ds: FileDataset, stored: np.ndarray, bits: int, signed: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()


def _rgb_file(ds: FileDataset, image: np.ndarray) -> None:
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = image.astype(np.uint8).tobytes()


# Text colours of the RGB types, as fractions of full scale.
PALETTES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "us": (
        (1.0, 1.0, 1.0), (0.7, 0.7, 0.7), (1.0, 0.9, 0.0),
        (0.0, 0.9, 1.0), (0.2, 1.0, 0.3), (1.0, 0.6, 0.1),
    ),
    "sc": (
        (1.0, 1.0, 1.0), (0.05, 0.05, 0.05), (1.0, 0.9, 0.2),
        (0.6, 0.8, 1.0), (0.75, 0.75, 0.75),
    ),
}  # fmt: skip


def _picker(rng: np.random.Generator, kind: str) -> Callable[[], tuple[float, float, float]]:
    """A colour chooser for `place_lines`: one of the kind's palette at random on each call."""
    choices = PALETTES[kind]
    return lambda: choices[int(rng.integers(len(choices)))]


def _rgb_capture(canvas: Canvas, sop_class: str, modality: str) -> FileDataset:
    """A DICOM file holding the canvas as 8-bit RGB."""
    ds = _dataset(sop_class, modality, canvas.height, canvas.width)
    _rgb_file(ds, np.clip(canvas.pixels * 255, 0, 255).round().astype(np.uint8))
    return ds


def make_sample(kind: str, index: int, seed: int, fonts: Fonts, *, text_free: bool) -> Sample:
    rng = np.random.default_rng([seed, TYPES.index(kind), index])
    patient = make_patient(rng)
    lines = [] if text_free else patient.renderings(rng)
    if not text_free:
        others = OTHER[kind]
        picks = rng.choice(len(others), size=int(rng.integers(1, 4)), replace=False)
        lines += [[(w, "other") for w in others[int(i)].split()] for i in picks]
        rng.shuffle(lines)  # type: ignore[arg-type]
    if kind == "radiograph":
        h, w = 2500, 2000
        canvas = Canvas(radiograph_background(rng, h, w))
        layout = Layout(
            kind,
            [("tl", 30, 30), ("tr", w - 30, 30), ("bl", 30, h - 30), ("br", w - 30, h - 30)],
            (12, 40),
        )

        def grey() -> float:
            return float(rng.choice([1.0, 1.0, float(rng.uniform(0.65, 0.85)), 0.02]))

        place_lines(rng, canvas, fonts, lines, layout, grey, mid_share=0.2, low_share=0.25)
        if not text_free:
            place_markers(rng, canvas, fonts, int(rng.integers(1, 3)), (20, 40), lambda: 1.0)
        stored = np.clip(canvas.pixels * 4095, 0, 4095).round()
        ds = _dataset(DigitalXRayImageStorageForPresentation, "DX", h, w)
        _grey_file(ds, stored, 12, False)
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
    elif kind == "ct":
        h = w = 512
        canvas = Canvas(ct_background(rng, h, w))
        layout = Layout(
            kind, [("tl", 6, 6), ("tr", w - 6, 6), ("bl", 6, h - 6), ("br", w - 6, h - 6)], (8, 16)
        )

        def grey() -> float:
            return float(rng.choice([1.0, 1.0, float(rng.uniform(0.6, 0.85))]))

        place_lines(rng, canvas, fonts, lines, layout, grey, mid_share=0.1, low_share=0.25)
        if not text_free and rng.random() < 0.7:
            place_markers(rng, canvas, fonts, 1, (10, 20), lambda: 1.0)
        hu = np.clip(-160 + canvas.pixels * 400, -1024, 3071)
        hu[canvas.pixels <= -0.09] = -1000
        stored = np.round(hu).astype(np.int64)
        ds = _dataset(CTImageStorage, "CT", h, w)
        _grey_file(ds, stored, 16, True)
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
    elif kind == "us":
        h, w = 480, 640
        canvas = Canvas(us_background(rng, h, w))
        layout = Layout(
            kind, [("tl", 8, 6), ("tr", w - 8, 6), ("bl", 8, h - 8), ("br", w - 8, h - 8)], (8, 16)
        )

        place_lines(rng, canvas, fonts, lines, layout, _picker(rng, "us"), mid_share=0.15)
        ds = _rgb_capture(canvas, UltrasoundImageStorage, "US")
    else:
        h, w = 768, 1024
        canvas = Canvas(sc_background(rng, h, w))
        layout = Layout(
            kind,
            [("tl", 200, 6), ("tr", w - 20, 6), ("bl", 14, h - 8), ("br", w - 20, h - 40)],
            (8, 18),
        )

        place_lines(rng, canvas, fonts, lines, layout, _picker(rng, "sc"), mid_share=0.25)
        if not text_free and rng.random() < 0.5:
            place_markers(rng, canvas, fonts, 1, (12, 24), lambda: (1.0, 1.0, 1.0))
        ds = _rgb_capture(canvas, SecondaryCaptureImageStorage, "OT")
    patient.header(ds)
    frames = pixels.decode(ds, "bench")
    rendered = pixels.render(ds, frames[0])
    sample = Sample(kind, f"{kind}-{index:03d}", ds, rendered, canvas.words)
    sample.phi = verify.phi_values(ds)
    return sample


def corpus(kind: str, count: int, seed: int, fonts: Fonts) -> list[Sample]:
    """`count` images of one type; every sixth has no text at all."""
    return [make_sample(kind, i, seed, fonts, text_free=(i % 6 == 5)) for i in range(count)]


# ---------------------------------------------------------------- scoring


def coverage(shape: tuple[int, ...], boxes: Iterable[Box]) -> np.ndarray:
    mask = np.zeros(shape[:2], dtype=bool)
    for b in boxes:
        mask[max(0, b.top) : max(0, b.bottom), max(0, b.left) : max(0, b.right)] = True
    return mask


def _normal(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch.isalnum())


def readable_leaks(image: np.ndarray, words: Sequence[Word]) -> int:
    """PHI words an independent whole-image OCR still reads in the redacted image."""
    return len(leaked_words(image, words))


def leaked_words(image: np.ndarray, words: Sequence[Word]) -> list[Word]:
    """The PHI words that `readable_leaks` counts (a debugging aid for --verbose)."""
    grey = np.asarray(Image.fromarray(image).convert("L")) if image.ndim == 3 else image
    scale = 2.0 if max(grey.shape) < 1200 else 1.0
    found = read_words(grey, psm=3, scale=scale) + read_words(255 - grey, psm=11, scale=scale)
    seen = [_normal(w.text) for w in found]
    seen = [s for s in seen if s]
    leaks: list[Word] = []
    for word in words:
        target = _normal(word.text)
        if word.kind != "phi" or len(target) < 4:
            continue
        if any(target in s for s in seen):
            leaks.append(word)
    return leaks


@dataclass
class Score:
    phi: int = 0
    phi_covered: int = 0
    leaks: int = 0
    markers: int = 0
    markers_kept: int = 0
    other: int = 0
    other_kept: int = 0
    clear: int = 0
    clear_changed: int = 0
    partly: int = 0
    seconds: list[float] = field(default_factory=list)
    leaked: list[Word] = field(default_factory=list)  # this sample's, for --verbose

    def add(self, other: Score) -> None:
        for name in (
            "phi",
            "phi_covered",
            "leaks",
            "markers",
            "markers_kept",
            "other",
            "other_kept",
            "clear",
            "clear_changed",
            "partly",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds


def score(sample: Sample, boxes: Sequence[Box], *, leaks: bool) -> Score:
    shape = sample.image.shape
    covered = coverage(shape, boxes)
    result = Score()
    zone = np.zeros(shape[:2], dtype=bool)
    h, w = shape[:2]
    for word in sample.words:
        b = word.box
        hit = covered[b.top : b.bottom, b.left : b.right][word.mask]
        result.partly += bool(hit.any()) and not bool(hit.all())
        if word.kind == "phi":
            result.phi += 1
            result.phi_covered += bool(hit.all())
        elif word.kind == "marker":
            result.markers += 1
            result.markers_kept += not bool(hit.any())
        elif word.text in TECHNICAL[sample.kind]:
            result.other += 1
            result.other_kept += not bool(hit.any())
        fair = b.padded(max(6, round(0.6 * word.cap)), w, h)
        zone[fair.top : fair.bottom, fair.left : fair.right] = True
    result.clear = int((~zone).sum())
    result.clear_changed = int((covered & ~zone).sum())
    if leaks:
        redacted = pixels.black_out(sample.image, list(boxes)) if boxes else sample.image
        result.leaked = leaked_words(redacted, sample.words)
        result.leaks = len(result.leaked)
    return result


# ---------------------------------------------------------------- timing


def floor_seconds(path: Path) -> float:
    """Read, decode, render and write PNG: what any DICOM-to-PNG run pays."""
    start = time.perf_counter()
    ds = reader.read(path)
    frames = pixels.decode(ds, str(path))
    image = pixels.render(ds, frames[0])
    output.png_bytes(image)
    return time.perf_counter() - start


def pipeline_seconds(path: Path, settings: settings_mod.Settings) -> float:
    """The whole `deid anonymize` run on one file, to PNG; it must succeed."""
    start = time.perf_counter()
    result = pipeline.process(path, settings)
    seconds = time.perf_counter() - start
    if result.status != "written":
        raise SystemExit(f"{path.name}: the pipeline did not write it ({result.reason})")
    return seconds


def pipeline_settings(folder: Path, policy: str) -> settings_mod.Settings:
    """`safe-harbor` with the benchmark's text policy, writing PNG only."""
    path = folder / "bench.toml"
    path.write_text(f'extends = "safe-harbor"\n[text]\npolicy = "{policy}"\n')
    profile = profiles.load(str(path))
    allow = profile.section("text").get("allow_list")
    if sorted(allow or []) != sorted(ALLOW):
        raise SystemExit("the safe-harbor allow-list differs from the benchmark's ALLOW")
    return settings_mod.Settings.for_profile(profile, b"bench" * 8, folder / "out", overwrite=True)


def plain_tesseract(image: np.ndarray) -> tuple[list[Box], float]:
    """One whole-image Tesseract pass (sparse text, as is); every word it finds, padded."""
    start = time.perf_counter()
    words = read_words(image, psm=11)
    seconds = time.perf_counter() - start
    h, w = image.shape[:2]
    boxes = [wd.box.padded(4, w, h) for wd in words if any(c.isalnum() for c in wd.text)]
    return boxes, seconds


# ---------------------------------------------------------------- report


def _pct(part: int, whole: int) -> str:
    return "   n/a" if whole == 0 else f"{100 * part / whole:6.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few images per type")
    parser.add_argument("--types", default=",".join(TYPES))
    parser.add_argument("--count", type=int, default=0, help="images per type (0: default)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--policy", default="all-text", choices=["all-text", "phi-only"])
    parser.add_argument("--no-leaks", action="store_true", help="skip the leak OCR pass")
    parser.add_argument("--no-yardstick", action="store_true", help="skip plain Tesseract")
    parser.add_argument("--show", default="", help="folder to write redacted PNGs to")
    parser.add_argument("--verbose", action="store_true", help="per-image lines")
    args = parser.parse_args(argv)

    default_counts = {"radiograph": 18, "ct": 48, "us": 48, "sc": 36}
    quick_counts = {"radiograph": 4, "ct": 8, "us": 8, "sc": 6}
    fonts = Fonts(font_files())
    policy = TextPolicy.from_profile({"allow_list": list(ALLOW), "policy": args.policy})
    show = Path(args.show) if args.show else None
    if show is not None:
        show.mkdir(parents=True, exist_ok=True)
    print(
        f"fonts: default TrueType + {len(fonts.files) - 1} files; "
        f"policy {args.policy}; seed {args.seed}"
    )
    header = (
        f"{'type':<11}{'imgs':>5}{'PHI words':>10}{'recall%':>9}{'leaks':>6}"
        f"{'markers':>8}{'kept%':>7}{'tech kept%':>11}{'partly':>7}{'over%':>8}"
        f"{'find s':>8}{'pipe s':>8}{'floor s':>8}{'tess s':>8}{'tess recall%':>13}"
    )
    rows: list[str] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="deid-bench-") as folder:
        settings = pipeline_settings(Path(folder), args.policy)
        for kind in [t for t in args.types.split(",") if t]:
            count = args.count or (quick_counts if args.quick else default_counts)[kind]
            samples = corpus(kind, count, args.seed, fonts)
            ours, tess = Score(), Score()
            floors: list[float] = []
            pipes: list[float] = []
            for sample in samples:
                path = Path(folder) / f"{sample.name}.dcm"
                sample.ds.save_as(path, enforce_file_format=True)
                floors.append(floor_seconds(path))
                pipes.append(pipeline_seconds(path, settings))
                start = time.perf_counter()
                first = first_look_scale(sample.ds)  # the triage `deid anonymize` makes
                regions = search_image(sample.image, policy, phi=sample.phi, first_scale=first)
                seconds = time.perf_counter() - start
                boxes = redaction_boxes(regions)
                result = score(sample, boxes, leaks=not args.no_leaks)
                result.seconds.append(seconds)
                ours.add(result)
                if not args.no_yardstick:
                    tboxes, tsec = plain_tesseract(sample.image)
                    tres = score(sample, tboxes, leaks=False)
                    tres.seconds.append(tsec)
                    tess.add(tres)
                if args.verbose:
                    print(
                        f"  {sample.name}: phi {result.phi_covered}/{result.phi} "
                        f"leaks {result.leaks} markers {result.markers_kept}/{result.markers}"
                        f" over {_pct(result.clear_changed, result.clear)}% "
                        f"{seconds:.2f}s regions {len(regions)}",
                        file=sys.stderr,
                    )
                    for word in result.leaked:
                        print(
                            f"    leaked: {word.text!r} at {word.box} cap {word.cap}",
                            file=sys.stderr,
                        )
                if show is not None:
                    picture = pixels.black_out(sample.image, boxes)
                    Image.fromarray(picture).save(show / f"{sample.name}.png")
                    _missed_report(sample, boxes, show)
            median = statistics.median
            rows.append(
                f"{kind:<11}{len(samples):>5}{ours.phi:>10}{_pct(ours.phi_covered, ours.phi):>9}"
                f"{ours.leaks:>6}{ours.markers:>8}{_pct(ours.markers_kept, ours.markers):>7}"
                f"{_pct(ours.other_kept, ours.other):>11}{ours.partly:>7}"
                f"{_pct(ours.clear_changed, ours.clear):>8}"
                f"{median(ours.seconds):>8.3f}{median(pipes):>8.3f}{median(floors):>8.3f}"
                f"{(median(tess.seconds) if tess.seconds else float('nan')):>8.3f}"
                f"{_pct(tess.phi_covered, tess.phi):>13}"
            )
            print(rows[-1], flush=True)
            if ours.phi and ours.phi_covered < 0.995 * ours.phi:
                failures.append(f"{kind}: recall below 99.5%")
            if ours.leaks:
                failures.append(f"{kind}: {ours.leaks} readable leaks")
            if ours.markers and ours.markers_kept < 0.95 * ours.markers:
                failures.append(f"{kind}: markers kept below 95%")
            if ours.partly:
                failures.append(f"{kind}: {ours.partly} items partly covered")
            if kind == "us" and ours.other and ours.other_kept < 0.8 * ours.other:
                failures.append("us: technical text kept below 80%")
            if ours.clear and ours.clear_changed > 0.01 * ours.clear:
                failures.append(f"{kind}: over-redaction above 1%")
            slower = tess.seconds and median(pipes) > median(tess.seconds)
            if kind == "radiograph" and slower:
                failures.append("radiograph: pipeline slower than one whole-image Tesseract pass")
    print()
    print(header)
    for row in rows:
        print(row)
    print(
        "\nseconds are medians per image; find = search_image on the rendered image;"
        " pipe = the whole anonymize run to PNG;\nfloor = read + decode + render + PNG"
        " write; tess = one plain psm-11 pass"
    )
    if failures:
        print("targets missed: " + "; ".join(failures))
        return 1
    print("all targets met")
    return 0


def _missed_report(sample: Sample, boxes: Sequence[Box], folder: Path) -> None:
    """Mark each PHI word not fully covered on a copy of the image (debugging aid)."""
    covered = coverage(sample.image.shape, boxes)
    missed = [
        w
        for w in sample.words
        if w.kind == "phi"
        and not covered[w.box.top : w.box.bottom, w.box.left : w.box.right][w.mask].all()
    ]
    if not missed:
        return
    picture = Image.fromarray(pixels.black_out(sample.image, list(boxes))).convert("RGB")
    draw = ImageDraw.Draw(picture)
    for w in missed:
        draw.rectangle(w.box.padded(3, 99999, 99999).as_list(), outline=(255, 0, 0))
    picture.save(folder / f"{sample.name}-missed.png")


if __name__ == "__main__":
    sys.exit(main())
