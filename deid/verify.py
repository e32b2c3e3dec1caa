"""Verification: an independent look at finished outputs for identifying values.

It does not trust the tag step: it collects the original header's identifying values
and searches the serialized output bytes for them. Findings name the kind of value and
where it was seen, never the value itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydicom._uid_dict import UID_dictionary
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


def phi_values(ds: Dataset) -> dict[str, str]:
    """Identifying values of an original dataset, mapped to the kind of each."""
    found: dict[str, str] = {}

    def add(value: str, kind: str) -> None:
        value = value.strip().strip("\0").strip()
        if len(value) >= 3:
            found.setdefault(value, kind)

    for elem in ds.iterall():
        keyword = elem.keyword
        if elem.VR == "SQ" or elem.value in (None, ""):
            continue
        values = elem.value if elem.VM > 1 else [elem.value]
        kind = _IDENTIFYING_KEYWORDS.get(keyword)
        for value in values:
            text = str(value)
            if elem.VR == "PN":
                kind_pn = kind or "person name"
                add(text, kind_pn)
                for part in text.replace("^", " ").replace(",", " ").split():
                    if len(part) >= 3:
                        add(part, kind_pn)
            elif kind in ("birth date", "study date"):
                if text[4:8] != "0101":
                    add(text, kind)
            elif kind:
                add(text, kind)
            elif keyword in _UID_KEYWORDS and text not in UID_dictionary:
                add(text, "original UID")
            elif elem.tag.is_private_creator:
                continue  # a vendor's name, often the same as the kept Manufacturer
            elif elem.tag.is_private and elem.VR in _IDENTIFYING_VRS and len(text) >= 6:
                add(text, "private value")
    return found


def scan_bytes(data: bytes, values: dict[str, str], where: str) -> list[Finding]:
    """Search a serialized DICOM header (pixel data excluded) for identifying values."""
    cut = data.find(_PIXEL_TAG, 132)
    header = data if cut < 0 else data[:cut]
    findings = []
    upper = header.upper()
    for value, kind in values.items():
        if value.upper().encode("utf-8", "ignore") in upper:
            findings.append(Finding(kind, where))
    return _unique(findings)


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))
