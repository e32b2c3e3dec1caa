"""The tag step: apply a profile's rules to every attribute, at every depth.

What each action does to an element is the action's own (`deid.actions`); this module
walks the dataset, picks each attribute's rule, and gives the action raw access to the
element. Values are only decoded where a rule transforms them; removed and kept elements
stay raw, so de-identifying a header costs about what reading it does. The report lists
each change by attribute path and action, never by value.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, cast

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import PersonName

from deid import __version__
from deid.actions import AgeMode, Modes, Rule, year_of
from deid.actions import age_in_years as age_in_years
from deid.output import TEXT_VRS, ascii_value
from deid.profiles import Profile, dictionary_vr
from deid.pseudonym import Pseudonymizer

IMPLEMENTATION_UID = "2.25.195773432817395364612906519322066722147"


@dataclass(frozen=True)
class Change:
    """One attribute the profile changed: where, and by which rule (never the value).

    `prefix` is the sequence path above the attribute; the full path is built only when
    someone reads it, as most runs never do.
    """

    prefix: str
    tag: int
    rule: Rule

    @property
    def path(self) -> str:
        return _path(self.prefix, self.tag)

    @property
    def tag_text(self) -> str:
        return f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})"


@dataclass
class TagReport:
    """What the tag step did to one dataset, and the pseudonyms that name its outputs."""

    changes: list[Change] = field(default_factory=list)
    patient: str = ""
    study: str = ""
    series: str = ""
    instance: str = ""
    methods: list[str] = field(default_factory=list)


@cache
def method_codes() -> dict[str, dict[str, str]]:
    """The CID 7050 code for each de-identification option, from the data file."""
    text = (resources.files("deid") / "data" / "deid_methods.toml").read_text("utf-8")
    return tomllib.loads(text)


def patient_identity(ds: Dataset) -> str:
    """The original value that identifies the patient, for one stable pseudonym."""
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID"):
        value = text_of(ds, keyword).strip()
        if value:
            return f"{keyword}={value}"
    return "unknown"


def text_of(ds: Dataset, keyword: str) -> str:
    """A top-level value as text ("" if absent), without converting a raw element."""
    tag = tag_for_keyword(keyword)
    if tag is None or tag not in _elements(ds):
        return ""
    value = _get(ds, tag)
    if isinstance(value, list):
        return "\\".join(str(v) for v in value)
    return "" if value is None else str(value)


def _safe_private(ds: Dataset, tag: int, safe: dict[str, frozenset[int]]) -> bool:
    """True for a private element, or its creator, that a safe-private list keeps."""
    group, element = tag >> 16, tag & 0xFFFF
    creator_tag = tag if 0x0010 <= element <= 0x00FF else (group << 16) | (element >> 8)
    if creator_tag not in ds:
        return False
    creator = str(ds[creator_tag].value or "")
    if creator not in safe:
        return False
    return creator_tag == tag or (element & 0xFF) in safe[creator]


def _shift_days(pseudo: Pseudonymizer, identity: str, limit: int) -> int:
    """A keyed per-patient offset in [-limit, -1] or [1, limit]: never zero."""
    number = int.from_bytes(pseudo.digest("date-offset", identity)[:8], "big")
    days = number % limit + 1
    return -days if number >> 63 else days


def _path(prefix: str, tag: int) -> str:
    return prefix + (keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})")


class _Walker:
    """Applies one profile to a dataset tree, collecting a report; the actions' `Editor`."""

    def __init__(
        self, profile: Profile, pseudo: Pseudonymizer, report: TagReport, identity: str
    ) -> None:
        self.profile = profile
        self.modes: Modes = profile.modes
        self.pseudo = pseudo
        self.patient = report.patient
        self.report = report
        self.dates_changed = False
        self.shift = _shift_days(pseudo, identity, profile.shift_days)
        self.prefix = ""

    def walk(self, ds: Dataset, prefix: str) -> None:
        self.prefix = prefix
        elements = _elements(ds)
        changes = self.report.changes
        profile = self.profile
        for tag in list(elements):
            tag_int = int(tag)
            if tag_int & 0xFFFF == 0 or tag_int >> 16 in (0x0000, 0x0002):
                del elements[tag]  # group lengths, command and stray file-meta elements
                continue
            vr = _vr(tag_int, elements[tag].VR)
            rule = profile.rule_for(tag_int, vr)
            if (
                tag_int >> 16 & 1
                and profile.safe_private
                and _safe_private(ds, tag_int, profile.safe_private)
            ):
                continue
            # pydicom's own key, not tag_int: no Tag comparisons
            if rule.does.apply(self, ds, tag, vr, rule):
                changes.append(Change(prefix, tag_int, rule))

    def descend(self, ds: Dataset, tag: int) -> None:
        """Walk the items of a sequence by the same rules."""
        prefix = self.prefix
        path = _path(prefix, int(tag))
        for index, item in enumerate(ds[tag].value):
            self.walk(item, f"{path}[{index}] > ")
        self.prefix = prefix

    def get(self, ds: Dataset, tag: int) -> Any:
        return _get(ds, tag)

    def set(self, ds: Dataset, tag: int, vr: str | None, value: Any) -> None:
        _set(ds, tag, vr, value)

    def delete(self, ds: Dataset, tag: int) -> None:
        del _elements(ds)[tag]


# VRs whose value is text, numbers written as text included.
TEXTUAL_VRS = TEXT_VRS | {"DS", "IS"}


def _vr(tag: int, stored: str | None) -> str | None:
    """The VR an action treats an element by: as stored, but the standard's where a file
    stores a text attribute under another text VR (a StudyID as DS, a UID as LO).

    A new value is then written as the standard says: a pseudonym fits it, and a UID
    gets a UID pseudonym. (Text stored as numbers or items is refused before this step.)
    """
    standard = dictionary_vr(tag)
    if stored is None:
        return standard
    if standard in TEXTUAL_VRS and stored in TEXTUAL_VRS:
        return standard
    return stored


def _elements(ds: Dataset) -> dict[int, Any]:
    """pydicom's tag -> element map (raw or converted), keyed by plain ints.

    Indexing the Dataset itself costs a Tag() conversion and several checks per access,
    which dominated the cost of de-identifying a header.
    """
    return cast("dict[int, Any]", ds._dict)


def _get(ds: Dataset, tag: int) -> Any:
    """A value as text (a list if multi-valued), read from raw bytes where possible."""
    elem = _elements(ds)[tag]
    if isinstance(elem, RawDataElement) and elem.VR in TEXT_VRS and elem.value is not None:
        parts = elem.value.decode("latin-1").rstrip(" \0").split("\\")
        parts = [p.strip(" \0") for p in parts]
        return parts[0] if len(parts) == 1 else parts
    value = ds[tag].value
    if isinstance(value, MultiValue):
        return [str(v) for v in value]
    return str(value) if isinstance(value, PersonName) else value


def _raw_text(tag: int, vr: str, text: str, *, implicit: bool = False) -> RawDataElement | None:
    """An ASCII text value as a little-endian raw element, ready to be copied as written."""
    data = ascii_value(text, vr)
    if data is None:
        return None
    return RawDataElement(BaseTag(tag), vr, len(data), data, 0, implicit, True)


def _set(ds: Dataset, tag: int, vr: str | None, value: Any) -> None:
    """Store a new value; ASCII text over a raw element stays raw, ready to write."""
    elements = _elements(ds)
    elem = elements[tag]
    if isinstance(elem, RawDataElement) and (vr in TEXT_VRS or value is None) and vr != "SQ":
        text = "\\".join(value) if isinstance(value, list) else (value or "")
        new_vr = vr or elem.VR
        data = ascii_value(text, new_vr) if isinstance(text, str) and new_vr else None
        if data is not None:
            elements[tag] = elem._replace(VR=new_vr, length=len(data), value=data)
            return
    if vr in TEXTUAL_VRS and elem.VR in TEXTUAL_VRS and vr != elem.VR:
        ds[tag] = DataElement(tag, vr, value)  # stored under another text VR (`_vr`)
        return
    ds[tag].value = value


def _put(ds: Dataset, keyword: str, text: str) -> None:
    """Add or replace a top-level text attribute, raw when the dataset is little endian."""
    tag = cast(int, tag_for_keyword(keyword))
    implicit, little = ds.original_encoding
    elem = _raw_text(tag, dictionary_vr(tag) or "LO", text, implicit=bool(implicit))
    if elem is None or little is False:
        setattr(ds, keyword, text)
    else:
        _elements(ds)[BaseTag(tag)] = elem


def deidentify(
    ds: Dataset,
    profile: Profile,
    pseudo: Pseudonymizer,
    *,
    pixels_cleaned: bool = False,
    pixels_changed: bool = False,
) -> TagReport:
    """De-identify `ds` in place by `profile`; return what changed and the pseudonyms.

    `pixels_cleaned` records the Clean Pixel Data option; `pixels_changed` gives the
    instance a new SOPInstanceUID, as the standard asks when pixel data are altered.
    """
    original_sop = text_of(ds, "SOPInstanceUID")
    study_uid = text_of(ds, "StudyInstanceUID")
    series_uid = text_of(ds, "SeriesInstanceUID")
    identity = patient_identity(ds)
    birth_year = year_of(text_of(ds, "PatientBirthDate"))
    reference_year = year_of(text_of(ds, "StudyDate") or text_of(ds, "ContentDate"))
    report = TagReport(
        patient=pseudo.patient(identity),
        study="ST" + pseudo.code("output-name:study", study_uid or identity, 8),
        series="SE" + pseudo.code("output-name:series", series_uid or study_uid or identity, 8),
        instance="IM" + pseudo.code("output-name:instance", original_sop or identity, 10),
    )
    walker = _Walker(profile, pseudo, report, identity)
    walker.walk(ds, "")

    too_old = (
        profile.age_mode is AgeMode.BAND_90
        and birth_year
        and reference_year
        and int(reference_year) - int(birth_year) > 89
    )
    if too_old and ds.get("PatientBirthDate"):
        ds.PatientBirthDate = None
    if pixels_changed and original_sop:
        ds.SOPInstanceUID = pseudo.uid(original_sop + ".pixels-cleaned")

    report.methods = _methods(profile, walker.dates_changed, pixels_cleaned)
    _mark(ds, profile, report.methods, walker.dates_changed)
    return report


def _read_syntax(ds: Dataset) -> str:
    """The native transfer syntax of the encoding pydicom read `ds` in."""
    implicit, little = ds.original_encoding
    if implicit and little is not False:
        return ImplicitVRLittleEndian
    return ExplicitVRBigEndian if little is False else ExplicitVRLittleEndian


def _methods(profile: Profile, dates_changed: bool, pixels_cleaned: bool) -> list[str]:
    methods = ["basic"]
    if pixels_cleaned:
        methods.append("clean-pixel-data")
    for option in profile.method_options():
        if option == "retain-longitudinal-modified-dates" and not dates_changed:
            continue
        methods.append(option)
    return methods


@cache
def _method_sequence(methods: tuple[str, ...]) -> Sequence:
    """The code items for a set of options; built once, shared read-only by every file."""
    codes = method_codes()
    items = []
    for method in methods:
        item = Dataset()
        item.CodeValue = codes[method]["code"]
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = codes[method]["meaning"]
        items.append(item)
    return Sequence(items)


def _mark(ds: Dataset, profile: Profile, methods: list[str], dates_changed: bool) -> None:
    """Record the de-identification in the attributes the standard defines for it."""
    _put(ds, "PatientIdentityRemoved", "YES")
    _put(ds, "DeidentificationMethod", f"deid {__version__} profile {profile.name}"[:64])
    sequence = cast(int, tag_for_keyword("DeidentificationMethodCodeSequence"))
    _elements(ds)[BaseTag(sequence)] = DataElement(sequence, "SQ", _method_sequence(tuple(methods)))
    if dates_changed:
        _put(ds, "LongitudinalTemporalInformationModified", "MODIFIED")


def rebuild_file_meta(ds: Dataset, transfer_syntax: str) -> None:
    """A fresh file meta consistent with the new dataset; nothing of the old one survives.

    A transfer syntax that is no UID at all (empty, or garbage) names the encoding the
    dataset was read in: the pixel stage has taken its pixel data as native, and the
    writer needs a transfer syntax to write by.
    """
    if not UID(str(transfer_syntax)).is_valid:
        transfer_syntax = _read_syntax(ds)
    values = (
        (
            0x00020002,
            "UI",
            text_of(ds, "SOPClassUID") or text_of(ds.file_meta, "MediaStorageSOPClassUID"),
        ),
        (0x00020003, "UI", text_of(ds, "SOPInstanceUID")),
        (0x00020010, "UI", str(transfer_syntax)),
        (0x00020012, "UI", IMPLEMENTATION_UID),
        (0x00020013, "SH", f"DEID_{__version__.replace('.', '_')}"[:16]),
    )
    meta = FileMetaDataset()
    for tag, vr, text in values:
        elem = _raw_text(tag, vr, text)
        if elem is None:
            meta[tag] = DataElement(tag, vr, text)
        else:
            _elements(meta)[BaseTag(tag)] = elem
    ds.file_meta = meta
    if isinstance(ds, FileDataset):
        ds.preamble = b"\0" * 128  # vendors hide data in the preamble too
