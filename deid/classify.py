"""Classification: decide from SOP Class and header flags what an object is.

Objects that are text by nature (encapsulated PDF, structured reports), objects with no
image and images flagged as showing a face are refused unless the profile allows them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pydicom.valuerep import VR

from deid.errors import NotDicomError, RefusedError, UnreadableError
from deid.profiles import Profile, dictionary_vr, dictionary_vrs
from deid.tags import TEXTUAL_VRS, text_of

# Sequences nested deeper than this are refused. Real image objects nest a handful of
# levels; every later walk of the header (the tag step, the leak check, writing) recurses
# once a level, so a file nested thousands deep would exhaust the stack in one of them.
MAX_NESTING = 64

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


_BYTE_VRS = frozenset(["OB", "OD", "OF", "OL", "OV", "OW"])
# Bytes a value of each fixed-width VR takes: pydicom refuses any other length.
_WIDTHS = {"AT": 4, "FL": 4, "FD": 8, "SL": 4, "SS": 2, "SV": 8, "UL": 4, "US": 2, "UV": 8}
# pydicom's VRs, with the ambiguous ones it gives raw elements ("OB or OW").
_VALID_VRS = frozenset(str(vr) for vr in VR)
_UNDEFINED = 0xFFFFFFFF


def _family(vr: str) -> str:
    """What a VR's bytes are: text, numbers, bytes, or itself (SQ, UN)."""
    if vr in TEXTUAL_VRS:
        return "text"
    if vr in _WIDTHS:
        return "numbers"
    return "bytes" if vr in _BYTE_VRS else vr


def _name(tag: int) -> str:
    keyword = keyword_for_tag(tag)
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})" + (f" {keyword}" if keyword else "")


def _element_problem(tag: int, elem: object) -> str | None:
    """What makes a raw element unreadable, in words that quote no value; None if sound.

    Each is something pydicom fails on, with an exception of its own, wherever the value
    is first used: an unknown VR, a length that is no whole number of fixed-width
    values, or bytes of one kind (text, numbers, bytes, items) stored under a VR of
    another where the standard says which (a UID stored as SS, a name as FL).
    """
    if not isinstance(elem, RawDataElement):
        return None  # converted already, so readable
    vr, length = elem.VR, elem.length
    if vr is not None and vr not in _VALID_VRS:
        return "has no valid VR"
    width = _WIDTHS.get(vr or dictionary_vr(tag) or "")
    if width and length != _UNDEFINED and length % width:
        return f"holds {length} bytes, no whole number of {vr or 'its'} values"
    standard = dictionary_vrs(tag)
    if vr is None or vr == "UN" or not standard or "UN" in standard or vr in standard:
        return None
    if not {_family(v) for v in vr.split(" or ")} & {_family(v) for v in standard}:
        return f"is stored as {vr} where the standard says {' or '.join(sorted(standard))}"
    return None


def check_structure(ds: Dataset, path: str, limit: int = MAX_NESTING) -> None:
    """Raise UnreadableError for an element no stage could read, or sequences nested more
    than `limit` deep.

    Done first, so a damaged element is refused with its name and what is wrong with it,
    the same whichever later stage would have used it first. Walked without recursion, so
    the refusal does not depend on the caller's stack; values are not converted but for
    sequences, which pydicom parses here (recursively: running out of stack there is the
    same finding as too deep a nesting).
    """
    too_deep = UnreadableError(f"corrupt or hostile: sequences nested more than {limit} deep", path)
    pending: list[tuple[Dataset, int]] = [(ds, 0)]
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        pending.append((meta, 0))
    while pending:
        dataset, depth = pending.pop()
        for tag, elem in list(dataset._dict.items()):  # no conversion, no deferred read
            problem = _element_problem(int(tag), elem)
            if problem:
                raise UnreadableError(f"corrupt: {_name(int(tag))} {problem}", path)
            if (elem.VR or dictionary_vr(tag)) != "SQ":
                continue
            if depth >= limit:
                raise too_deep
            try:
                items = dataset[tag].value or []
            except RecursionError:
                raise too_deep from None
            except Exception:  # pydicom's parser fails on damaged items in many ways
                raise UnreadableError(
                    f"corrupt: the sequence {_name(int(tag))} cannot be read", path
                ) from None
            pending.extend((item, depth + 1) for item in items)


def classify(ds: Dataset, path: str, profile: Profile) -> Classification:
    """Classify `ds`; raise NotDicomError for a DICOMDIR, RefusedError for refused kinds,
    UnreadableError for a damaged element or sequences nested deeper than any real
    object (`check_structure`)."""
    check_structure(ds, path)
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
