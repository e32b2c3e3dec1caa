"""Keyed pseudonyms."""

from __future__ import annotations

import re

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from deid.pseudonym import Pseudonymizer


def test_same_key_same_uid_other_key_other_uid() -> None:
    a, b = Pseudonymizer.from_passphrase("alpha"), Pseudonymizer.from_passphrase("alpha")
    c = Pseudonymizer.from_passphrase("beta")
    original = "1.2.826.0.1.3680043.8.498.1001"
    assert a.uid(original) == b.uid(original) != c.uid(original)
    assert re.fullmatch(r"2\.25\.\d{1,39}", a.uid(original))
    assert len(a.uid(original)) <= 64


@pytest.mark.parametrize("uid", [CTImageStorage, ExplicitVRLittleEndian])
def test_standard_uids_are_kept(uid: str) -> None:
    assert Pseudonymizer.from_passphrase("k").uid(uid) == uid


def test_random_keys_differ() -> None:
    assert Pseudonymizer.from_passphrase(None).key != Pseudonymizer.from_passphrase(None).key


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError):
        Pseudonymizer.from_passphrase("")


def test_patient_pseudonym_fits_an_id() -> None:
    value = Pseudonymizer.from_passphrase("k").patient("PatientID=MRN1")
    assert len(value) <= 16 and value.startswith("ANON")


def test_codes_never_look_like_an_mrn() -> None:
    pseudo = Pseudonymizer.from_passphrase("k")
    codes = [pseudo.identifier("AccessionNumber", f"ACC{i}") for i in range(5000)]
    assert not [c for c in codes if re.search(r"\d{7}", c)]
    assert len(set(codes)) == 5000
