"""Classification: decide from SOP Class and header flags what an object is.

Objects that are text by nature (encapsulated PDF, structured reports), objects with no
image and images flagged as showing a face are refused unless the profile allows them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from pydicom.dataset import Dataset
from pydicom.uid import UID

from deid.errors import NotDicomError, RefusedError, UnreadableError
from deid.profiles import Profile
from deid.tags import text_of

_REASONS = {
    "encapsulated-document": "an encapsulated document (PDF/CDA) is text by nature",
    "structured-report": "a structured report is text by nature",
    "non-image": "the object has no pixel data",
    "recognizable-face": "RecognizableVisualFeatures is YES (the image may show a face)",
}


@dataclass(frozen=True)
class Classification:
    """What an object is, and what the header says about text in its pixels."""

    kind: str
    sop_class: str
    burned_in_annotation: str


@cache
def _kinds() -> dict[str, tuple[str, ...]]:
    text = (resources.files("deid") / "data" / "sop_classes.toml").read_text("utf-8")
    return {kind: tuple(table["uids"]) for kind, table in tomllib.loads(text).items()}


def kind_of(sop_class: str) -> str | None:
    """The named kind of a SOP Class UID from the data file, if any."""
    for kind, uids in _kinds().items():
        for uid in uids:
            if sop_class == uid or (uid.endswith(".") and sop_class.startswith(uid)):
                return kind
    return None


def _sop_class(ds: Dataset) -> str:
    return text_of(ds, "SOPClassUID") or text_of(ds.file_meta, "MediaStorageSOPClassUID")


def object_kind(ds: Dataset, path: str) -> str:
    """What `ds` is: a named kind of the data file, else image, non-image or face.

    Raises UnreadableError for an image object that has lost its pixel data.
    """
    sop_class = _sop_class(ds)
    kind = kind_of(sop_class)
    if kind is not None:
        return kind
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        if "Image Storage" in UID(sop_class).name:
            raise UnreadableError("truncated: an image object with no pixel data", path)
        return "non-image"
    if text_of(ds, "RecognizableVisualFeatures").upper() == "YES":
        return "recognizable-face"
    return "image"


def classify(ds: Dataset, path: str, profile: Profile) -> Classification:
    """Classify `ds`; raise NotDicomError for a DICOMDIR, RefusedError for refused kinds."""
    sop_class = _sop_class(ds)
    kind = object_kind(ds, path)
    if kind == "directory":
        raise NotDicomError("a DICOMDIR index (lists files, holds no image)", path)
    refused = set(profile.section("objects").get("refuse", []))
    if kind in refused:
        raise RefusedError(
            f"refused: {_REASONS.get(kind, kind)}; profile {profile.name!r} does not allow it",
            path,
        )
    if kind != "image":
        raise RefusedError(f"refused: {_REASONS.get(kind, kind)}; no pixel output possible", path)
    burned = (text_of(ds, "BurnedInAnnotation") or "unknown").upper()
    return Classification(kind, sop_class, burned)
