"""Fixed regions: parts of an image blacked out by layout, whatever OCR reads there.

Some devices always print identifying text in the same place: an ultrasound scanner's
top banner, a modality's corner block. A profile's `[regions]` table names such places
so they are covered even when the text is too small, too faint or too stylised to be
found, and, for ultrasound, can cover everything outside the calibrated image areas of
SequenceOfUltrasoundRegions (where only the banner, the side panels and the
annotations lie):

    [regions]
    outside_ultrasound_regions = true

    [[regions.fixed]]
    modality = "US"
    manufacturer = "ACME"        # optional, matched case-insensitively as a prefix
    model = "Vivid"              # optional, ManufacturerModelName, likewise
    rows = 480                   # optional, the image size the boxes are meant for
    columns = 640
    boxes = [[0, 0, 640, 40]]    # left, top, right, bottom in pixels (right/bottom
                                 # exclusive); negative numbers count from the far edge

`starter_regions()` gives a starting set for common ultrasound sizes (a top banner
band), shipped in `deid/data/fixed_regions.toml`; it is a starting point to check
against a site's own images, not a description of any vendor's layout.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from pydicom.dataset import Dataset

from deid.boxes import Box
from deid.errors import ProfileError
from deid.text.detect import search_scale
from deid.text.policy import Region


def fixed_boxes(ds: Dataset, section: Mapping[str, Any]) -> list[Box]:
    """The boxes a profile's `[regions]` table blacks out on this image, clipped to it.

    Every `[[regions.fixed]]` entry whose modality, manufacturer, model, rows and
    columns (those given) match the dataset contributes its boxes; with
    `outside_ultrasound_regions = true`, an image with SequenceOfUltrasoundRegions also
    gets the boxes covering everything outside the union of those regions' rectangles.
    Raises `ProfileError` for a malformed table.
    """
    rows, columns = _size(ds)
    if rows <= 0 or columns <= 0:
        return []
    entries = section.get("fixed", [])
    if not isinstance(entries, list | tuple):
        raise ProfileError("regions.fixed must be an array of tables ([[regions.fixed]])")
    boxes: list[Box] = []
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            raise ProfileError(f"regions.fixed entry {position} must be a table")
        if _matches(ds, entry, rows, columns, position):
            boxes.extend(_boxes(entry, rows, columns, position))
    outside = section.get("outside_ultrasound_regions", False)
    if not isinstance(outside, bool):
        raise ProfileError("regions.outside_ultrasound_regions must be true or false")
    if outside:
        boxes.extend(outside_ultrasound_regions(ds))
    return [box for box in boxes if box.area > 0]


def fixed_regions(ds: Dataset, section: Mapping[str, Any]) -> list[Region]:
    """`fixed_boxes` as regions to redact, each with the reason "fixed region"."""
    return [Region(box, "redact", "fixed region") for box in fixed_boxes(ds, section)]


def ultrasound_image_regions(ds: Dataset) -> list[Box]:
    """The rectangles of SequenceOfUltrasoundRegions, clipped to the image.

    They are where the scanner drew the picture (tissue, colour flow, spectra): the text
    search still reads there, but never covers anatomy on suspicion. Region Location
    Min/Max X0/Y0/X1/Y1 are inclusive pixel coordinates. [] when there are none.
    """
    rows, columns = _size(ds)
    sequence = ds.get("SequenceOfUltrasoundRegions")
    if not sequence or rows <= 0 or columns <= 0:
        return []
    inside: list[Box] = []
    for item in sequence:
        try:
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1), int(item.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            continue
        box = Box(max(0, x0), max(0, y0), min(columns, x1 + 1), min(rows, y1 + 1))
        if box.area > 0:
            inside.append(box)
    return inside


def outside_ultrasound_regions(ds: Dataset) -> list[Box]:
    """Boxes covering all of the image outside its ultrasound regions' rectangles.

    Everything outside `ultrasound_image_regions` is banner, panels and labels. Returns
    [] when the dataset has no such regions. The boxes are the rows above, between and
    below the regions and, on each band of rows, the columns beside them.
    """
    rows, columns = _size(ds)
    inside = ultrasound_image_regions(ds)
    if not inside:
        return []
    cuts = sorted({0, rows, *(b.top for b in inside), *(b.bottom for b in inside)})
    out: list[Box] = []
    for top, bottom in itertools.pairwise(cuts):
        spans = sorted((b.left, b.right) for b in inside if b.top <= top and b.bottom >= bottom)
        x = 0
        for left, right in spans:
            if left > x:
                out.append(Box(x, top, left, bottom))
            x = max(x, right)
        if x < columns:
            out.append(Box(x, top, columns, bottom))
    return _joined(out)


@cache
def _starter() -> tuple[dict[str, Any], ...]:
    raw = (resources.files("deid") / "data" / "fixed_regions.toml").read_text("utf-8")
    table = tomllib.loads(raw)
    return tuple(table.get("regions", {}).get("fixed", []))


def starter_regions() -> list[dict[str, Any]]:
    """The shipped starter set of `[[regions.fixed]]` entries (a copy, to extend)."""
    return [dict(entry) for entry in _starter()]


def _size(ds: Dataset) -> tuple[int, int]:
    try:
        return int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    except (TypeError, ValueError):
        return 0, 0


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return str(value or "").strip().upper()


def _matches(ds: Dataset, entry: Mapping[str, Any], rows: int, columns: int, position: int) -> bool:
    """Whether one `[[regions.fixed]]` entry applies to the dataset."""
    modality = entry.get("modality")
    if not isinstance(modality, str) or not modality:
        raise ProfileError(f"regions.fixed entry {position} needs a modality")
    if _text(ds, "Modality") != modality.strip().upper():
        return False
    for key, keyword in (("manufacturer", "Manufacturer"), ("model", "ManufacturerModelName")):
        wanted = entry.get(key)
        if wanted is None:
            continue
        if not isinstance(wanted, str):
            raise ProfileError(f"regions.fixed entry {position}: {key} must be a string")
        if not _text(ds, keyword).startswith(wanted.strip().upper()):
            return False
    for key, actual in (("rows", rows), ("columns", columns)):
        wanted_size = entry.get(key)
        if wanted_size is None:
            continue
        if isinstance(wanted_size, bool) or not isinstance(wanted_size, int):
            raise ProfileError(f"regions.fixed entry {position}: {key} must be a whole number")
        if wanted_size != actual:
            return False
    return True


def _boxes(entry: Mapping[str, Any], rows: int, columns: int, position: int) -> list[Box]:
    """An entry's boxes, negative coordinates counted from the far edge, clipped."""
    raw = entry.get("boxes")
    if not isinstance(raw, list | tuple) or not raw:
        raise ProfileError(f"regions.fixed entry {position} needs boxes = [[l, t, r, b], ...]")
    out: list[Box] = []
    for item in raw:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)
        ):
            raise ProfileError(
                f"regions.fixed entry {position}: each box is [left, top, right, bottom] ints"
            )
        left, top, right, bottom = (
            _edge(v, size) for v, size in zip(item, (columns, rows, columns, rows), strict=True)
        )
        out.append(Box(left, top, right, bottom))
    return out


def _edge(value: int, size: int) -> int:
    """A coordinate clipped to 0..size; a negative one counts back from `size`."""
    return max(0, min(size, size + value if value < 0 else value))


def _joined(boxes: Sequence[Box]) -> list[Box]:
    """Stack boxes with the same columns on consecutive row bands into one."""
    out: list[Box] = []
    for box in boxes:
        for i, other in enumerate(out):
            if (other.left, other.right) == (box.left, box.right) and other.bottom == box.top:
                out[i] = Box(other.left, other.top, other.right, box.bottom)
                break
        else:
            out.append(box)
    return out


_ACQUISITIONS = frozenset({"CT", "MR", "PT", "NM"})
_CAPTURES = ("1.2.840.10008.5.1.4.1.1.7",)  # secondary capture image storage and its kin


def first_look_scale(ds: Dataset) -> float | None:
    """A cheaper first look for images that rarely carry text, else None.

    Original CT, MR, PET and NM slices whose header does not say text is burned in, and
    which the full search enlarges twice, are first searched at their own size; the full
    search follows only if that finds a line. Never a skipped look: the first look sees
    every pixel (a look at half size lost 10 px annotations entirely).
    """
    modality = str(ds.get("Modality", "") or "").upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    burned = str(ds.get("BurnedInAnnotation", "") or "").upper()
    if modality not in _ACQUISITIONS or sop_class.startswith(_CAPTURES):
        return None
    if burned == "YES" or (image_type and image_type[0] != "ORIGINAL"):
        return None
    rows, columns = _size(ds)
    if not rows or not columns:
        return None
    grey = int(ds.get("SamplesPerPixel", 1) or 1) == 1
    return 1.0 if search_scale(rows, columns, grey=grey) > 1.0 else None
