"""The tag step: apply a profile's rules to every attribute, at every depth.

Values are only decoded where a rule transforms them; removed and kept elements stay
raw, so de-identifying a header costs about what reading it does. The report lists
each change by attribute path and action, never by value.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import cache
from importlib import resources
from typing import Any, cast

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import PersonName

from deid import __version__
from deid.output import TEXT_VRS, ascii_value
from deid.profiles import Action, AgeMode, DateMode, Profile, Rule, dictionary_vr
from deid.pseudonym import Pseudonymizer

IMPLEMENTATION_UID = "2.25.195773432817395364612906519322066722147"
_PATIENT_ID_KEYWORDS = ("PatientName", "PatientID", "IssuerOfPatientID")


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


@cache
def _dummies() -> dict[str, Any]:
    text = (resources.files("deid") / "data" / "dummy_values.toml").read_text("utf-8")
    return tomllib.loads(text)


def _dummy(vr: str | None) -> Any:
    values = _dummies()
    return values.get(vr or "", values["numeric"] if vr in _NUMERIC_VRS else None)


_NUMERIC_VRS = ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV")


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
    number = int.from_bytes(pseudo.digest("date-shift", identity)[:8], "big")
    days = number % limit + 1
    return -days if number >> 63 else days


def _shifted(text: str, vr: str | None, days: int) -> str | None:
    """A DA or DT shifted by whole days (times untouched, so intervals stay true)."""
    if vr == "TM":
        return text
    digits = text.strip()
    if len(digits) < 8 or not digits[:8].isdigit():
        return None
    try:
        moved = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])) + timedelta(days=days)
    except ValueError:
        return None
    return moved.strftime("%Y%m%d") + digits[8:]


def _path(prefix: str, tag: int) -> str:
    return prefix + (keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})")


def _year(value: str) -> str:
    return value.strip()[:4] if len(value.strip()) >= 4 and value[:4].isdigit() else ""


def age_in_years(value: str) -> float | None:
    """An Age String (nnnD/W/M/Y) in years, or None when it is not one."""
    value = value.strip()
    if len(value) != 4 or not value[:3].isdigit():
        return None
    per_year = {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}.get(value[3].upper())
    return int(value[:3]) / per_year if per_year else None


class _Walker:
    """Applies one profile to a dataset tree, collecting a report."""

    def __init__(
        self, profile: Profile, pseudo: Pseudonymizer, report: TagReport, identity: str
    ) -> None:
        self.profile = profile
        self.pseudo = pseudo
        self.report = report
        self.dates_changed = False
        self.shift = _shift_days(pseudo, identity, profile.shift_days)

    def walk(self, ds: Dataset, prefix: str) -> None:
        elements = _elements(ds)
        changes = self.report.changes
        for tag in list(elements):
            tag_int = int(tag)
            if tag_int & 0xFFFF == 0 or tag_int >> 16 in (0x0000, 0x0002):
                del elements[tag]  # group lengths, command and stray file-meta elements
                continue
            vr = elements[tag].VR or dictionary_vr(tag_int)
            rule = self.profile.rule_for(tag_int, vr)
            if (
                tag_int >> 16 & 1
                and self.profile.safe_private
                and _safe_private(ds, tag_int, self.profile.safe_private)
            ):
                continue
            action = rule.action
            if action is Action.REMOVE:
                del elements[tag]
                changes.append(Change(prefix, tag_int, rule))
                continue
            if action is Action.KEEP and rule.allowed:
                value = _get(ds, tag)
                if value and str(value) not in rule.allowed:
                    _set(ds, tag, vr, None)
                    changes.append(Change(prefix, tag_int, rule))
                continue
            if action is Action.KEEP or (action is Action.PSEUDONYMIZE and vr == "SQ"):
                if vr == "SQ":
                    path = _path(prefix, tag_int)
                    for index, item in enumerate(ds[tag].value):
                        self.walk(item, f"{path}[{index}] > ")
                continue
            if self.apply(ds, tag, vr, rule):  # pydicom's own key: no Tag comparisons
                changes.append(Change(prefix, tag_int, rule))

    def apply(self, ds: Dataset, tag: int, vr: str | None, rule: Rule) -> bool:
        """Apply one rule; True if the attribute changed."""
        action = rule.action
        if action is Action.EMPTY:
            _set(ds, tag, vr, Sequence([]) if vr == "SQ" else None)
            return True
        if action is Action.REPLACE:
            _set(ds, tag, vr, rule.value)
            return True
        if action is Action.PSEUDONYMIZE:
            old = _get(ds, tag)
            new = self.pseudonym(tag, vr, old)
            _set(ds, tag, vr, new)
            return bool(new != old)
        if action is Action.DUMMY:
            if vr == "UI":
                return self.apply(ds, tag, vr, replace(rule, action=Action.PSEUDONYMIZE))
            _set(ds, tag, vr, Sequence([]) if vr == "SQ" else _dummy(vr))
            return True
        if action is Action.DATE:
            return self.date(ds, tag, vr, self.profile.date_mode)
        if action is Action.AGE:
            return self.age(ds, tag, vr)
        raise AssertionError(action)

    def age(self, ds: Dataset, tag: int, vr: str | None) -> bool:
        if self.profile.age_mode is AgeMode.KEEP:
            return False
        if self.profile.age_mode is AgeMode.REMOVE:
            del _elements(ds)[tag]
            return True
        text = str(_get(ds, tag) or "")
        years = age_in_years(text)
        if years is None and text:
            _set(ds, tag, vr, None)  # not a valid age string: it could hold anything
            return True
        if years is not None and years > 89:
            _set(ds, tag, vr, "090Y")
            return True
        return False

    def pseudonym(self, tag: int, vr: str | None, value: Any) -> Any:
        if value is None or value == "":
            return value
        if vr == "UI":
            if isinstance(value, str):
                return self.pseudo.uid(value)
            return [self.pseudo.uid(str(v)) for v in value]
        keyword = keyword_for_tag(tag)
        if keyword in _PATIENT_ID_KEYWORDS or vr == "PN":
            return self.report.patient
        return self.pseudo.identifier(keyword or "id", str(value))[:16]

    def date(self, ds: Dataset, tag: int, vr: str | None, mode: DateMode) -> bool:
        if mode is DateMode.KEEP:
            return False
        if mode is DateMode.REMOVE or vr not in ("DA", "DT", "TM"):
            del _elements(ds)[tag]
            return True
        value = _get(ds, tag)
        if not value:
            return False
        self.dates_changed = True
        values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        new = [self.one_date(text, vr, mode) for text in values]
        kept = [v for v in new if v]
        _set(ds, tag, vr, (kept[0] if len(kept) == 1 else kept) if kept else None)
        return True

    def one_date(self, text: str, vr: str | None, mode: DateMode) -> str | None:
        if mode is DateMode.SHIFT:
            return _shifted(text, vr, self.shift)
        if vr == "TM":
            return None
        year = _year(text)
        return f"{year}0101" if year else None


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
    birth_year = _year(text_of(ds, "PatientBirthDate"))
    reference_year = _year(text_of(ds, "StudyDate") or text_of(ds, "ContentDate"))
    report = TagReport(
        patient=pseudo.patient(identity),
        study="ST" + pseudo.code("study", study_uid or identity, 8),
        series="SE" + pseudo.code("series", series_uid or study_uid or identity, 8),
        instance="IM" + pseudo.code("instance", original_sop or identity, 10),
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
    """A fresh file meta consistent with the new dataset; nothing of the old one survives."""
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
