"""The safe context note."""

from __future__ import annotations

import pytest
from conftest import PHI, make_dataset

from deid import context


@pytest.mark.parametrize(
    ("years", "band"),
    [
        (0.5, "under 1"),
        (3, "1-9"),
        (45, "40-49"),
        (89.9, "80-89"),
        (90, "90+"),
        (104, "90+"),
        (None, None),
    ],
)
def test_age_band(years: float | None, band: str | None) -> None:
    assert context.age_band(years) == band


def test_note_has_safe_facts_and_no_phi() -> None:
    ds = make_dataset(
        modality="CR",
        extra={"BodyPartExamined": "CHEST", "ViewPosition": "PA", "PatientAge": "093Y"},
    )
    note = context.build(ds).text()
    assert "Modality: CR" in note and "Body part: CHEST" in note and "View: PA" in note
    assert "Age band: 90+" in note and "Sex: male" in note
    for value in (PHI["name"], "DOE", "JOHN", PHI["patient_id"], PHI["study_date"], "1952"):
        assert value not in note


def test_field_holding_a_header_value_is_dropped() -> None:
    ds = make_dataset(extra={"BodyPartExamined": "DOE"})
    assert "Body part" not in context.build(ds).text()


def test_age_from_birth_and_study_dates() -> None:
    ds = make_dataset()
    del ds.PatientAge
    ds.PatientBirthDate, ds.StudyDate = "19300901", "20230817"
    assert context.build(ds).age_band == "90+"
