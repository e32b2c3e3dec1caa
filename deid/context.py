"""The context note: the few safe facts a reader of the image needs, and nothing more.

Modality, body part, view, laterality, an age band (90+ above 89) and sex, read from the
original header. A field whose value contains any identifying value of the header is
left out, so a careless free-text entry cannot carry a name into the note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset

from deid.tags import age_in_years
from deid.verify import phi_values

_SAFE = re.compile(r"^[A-Za-z0-9 _\-/().,]{1,32}$")


@dataclass(frozen=True)
class Context:
    """Safe facts about one image; `lines()` is what the note file holds."""

    modality: str | None
    body_part: str | None
    view: str | None
    laterality: str | None
    age_band: str | None
    sex: str | None

    def lines(self) -> list[str]:
        fields = [
            ("Modality", self.modality),
            ("Body part", self.body_part),
            ("View", self.view),
            ("Laterality", self.laterality),
            ("Age band", self.age_band),
            ("Sex", self.sex),
        ]
        out = ["De-identified medical image."]
        out += [f"{label}: {value}" for label, value in fields if value]
        return out

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"


def age_band(years: float | None) -> str | None:
    """Ten-year bands, `under 1` for infants and `90+` above 89 (Safe Harbor)."""
    if years is None or years < 0:
        return None
    if years >= 90:
        return "90+"
    if years < 1:
        return "under 1"
    low = int(years) // 10 * 10
    return f"{max(low, 1)}-{low + 9}"


def _age_years(ds: Dataset) -> float | None:
    years = age_in_years(str(ds.get("PatientAge", "") or ""))
    if years is not None:
        return years
    birth = str(ds.get("PatientBirthDate", "") or "")
    when = str(ds.get("StudyDate", "") or ds.get("ContentDate", "") or "")
    if len(birth) >= 8 and len(when) >= 8 and birth[:8].isdigit() and when[:8].isdigit():
        b, w = int(birth[:8]), int(when[:8])
        years = w // 10000 - b // 10000
        if w % 10000 < b % 10000:
            years -= 1
        return float(years)
    return None


def build(ds: Dataset) -> Context:
    """The context of the original dataset `ds` (read before the tag step)."""
    banned = {v.upper() for v in phi_values(ds) if len(v) >= 3}

    def safe(keyword: str) -> str | None:
        value = str(ds.get(keyword, "") or "").strip()
        if not value or not _SAFE.match(value):
            return None
        upper = value.upper()
        if any(b in upper for b in banned):
            return None
        return value

    sex = {"M": "male", "F": "female", "O": "other"}.get(str(ds.get("PatientSex", "")).upper())
    return Context(
        modality=safe("Modality"),
        body_part=safe("BodyPartExamined"),
        view=safe("ViewPosition"),
        laterality=safe("ImageLaterality") or safe("Laterality"),
        age_band=age_band(_age_years(ds)),
        sex=sex,
    )
