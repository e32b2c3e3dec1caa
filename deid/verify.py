"""Verification: an independent look at finished outputs for identifying values.

It does not trust the tag step: it collects the original header's identifying values
and searches the serialized output bytes for them. Findings name the kind of value and
where it was seen, never the value itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset

_IDENTIFYING_VRS = ("PN", "LO", "SH", "ST", "LT", "UT", "AE", "UC")
_IDENTIFYING_KEYWORDS = {
    "PatientName": "patient name",
    "PatientID": "patient ID",
    "OtherPatientIDs": "patient ID",
    "AccessionNumber": "accession number",
    "PatientBirthDate": "birth date",
    "StudyDate": "study date",
    "InstitutionName": "institution",
    "InstitutionAddress": "address",
    "PatientAddress": "address",
    "PatientTelephoneNumbers": "telephone number",
    "StudyID": "study ID",
}
_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_PIXEL_TAG = b"\xe0\x7f\x10\x00"


@dataclass(frozen=True)
class Finding:
    """One identifying value seen in an output: its kind and where, never the value."""

    kind: str
    where: str


_STRING_VRS = frozenset({*_IDENTIFYING_VRS, "DA", "DT", "UI", "CS"})


def _raw_strings(ds: Dataset) -> Iterator[tuple[int, str, str]]:
    """(tag, VR, text) of every string value at any depth, without converting values.

    Raw bytes are decoded as Latin-1, which maps each byte to one character, so the text
    encodes back to exactly the bytes that a copy of the value would leave in an output.
    """
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts every value)
        elem = ds.get_item(tag)
        vr = elem.VR
        if not vr:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                continue
        if vr == "SQ":
            for item in ds[tag].value or []:
                yield from _raw_strings(item)
            continue
        if vr not in _STRING_VRS:
            continue
        value = elem.value
        if value is None:
            continue
        if isinstance(value, bytes):
            text = value.decode("latin-1")
        elif isinstance(value, str):
            text = value
        else:
            text = "\\".join(str(v) for v in value)
        for part in text.split("\\"):
            yield int(tag), vr, part


def phi_values(ds: Dataset) -> dict[str, str]:
    """Identifying values of an original dataset, mapped to the kind of each."""
    found: dict[str, str] = {}

    def add(value: str, kind: str) -> None:
        value = value.strip(" \0")
        if len(value) >= 3:
            found.setdefault(value, kind)

    for tag, vr, text in _raw_strings(ds):
        keyword = keyword_for_tag(tag)
        kind = _IDENTIFYING_KEYWORDS.get(keyword)
        if vr == "PN":
            kind_pn = kind or "person name"
            add(text, kind_pn)
            for part in re.split(r"[\^=, ]+", text):
                add(part, kind_pn)
        elif kind in ("birth date", "study date"):
            if text.strip()[4:8] != "0101":
                add(text, kind)
        elif kind:
            add(text, kind)
        elif keyword in _UID_KEYWORDS and text.strip(" \0") not in UID_dictionary:
            add(text, "original UID")
        elif tag >> 16 & 1 and tag & 0xFF00 and vr in _IDENTIFYING_VRS and len(text) >= 6:
            add(text, "private value")  # private creators (gggg,00xx) name vendors: skipped
    return found


def scan_bytes(data: bytes, values: dict[str, str], where: str) -> list[Finding]:
    """Search a serialized DICOM header (pixel data excluded) for identifying values.

    A leak copies a value verbatim, so values match case-sensitively and as whole words:
    a name part such as "PATIENT" must not match inside "Retain Patient Characteristics".
    """
    cut = data.find(_PIXEL_TAG, 132)
    header = data if cut < 0 else data[:cut]
    findings = []
    for value, kind in values.items():
        needle = value.encode("latin-1", "replace")
        if needle in header and re.search(
            rb"(?<![A-Za-z0-9])" + re.escape(needle) + rb"(?![A-Za-z0-9])", header
        ):
            findings.append(Finding(kind, where))
    return _unique(findings)


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))
