"""`deid.share.series`: series gathered from a disc, a folder or files, and key slices."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import (
    DISC_CT_SLICES,
    DISC_MR_SLICES,
    PHI,
    disc_slice,
    make_dataset,
)

from deid.errors import UsageError
from deid.share import dicomdir
from deid.share import series as series_module
from deid.share.series import Series, Slice, body_part, gather, pick


def _z(slice_: Slice) -> float:
    ds = pydicom.dcmread(slice_.path, stop_before_pixels=True)
    return float(ds.ImagePositionPatient[2])


def _by_modality(found: list[Series]) -> dict[str | None, Series]:
    return {s.modality: s for s in found}


@pytest.mark.parametrize("lower", [False, True], ids=["upper", "lower"])
@pytest.mark.parametrize("given", ["folder", "dicomdir"])
def test_disc_gives_one_series_per_series(tmp_path: Path, lower: bool, given: str) -> None:
    from conftest import make_disc

    root = make_disc(tmp_path / "disc", lower=lower)
    dicomdir = root / ("dicomdir" if lower else "DICOMDIR")
    found = gather([root if given == "folder" else dicomdir])
    assert [s.number for s in found.series] == [1, 2]
    by = _by_modality(found.series)
    assert set(by) == {"CT", "MR"}
    assert len(by["CT"].slices) == DISC_CT_SLICES
    assert len(by["MR"].slices) == DISC_MR_SLICES
    assert by["CT"].body_part == "CHEST"  # from "CHEST FOR DOE^JOHN", the name dropped
    assert by["MR"].body_part == "BRAIN"  # from the series description "T1 AX BRAIN"
    assert by["CT"].study != by["MR"].study
    assert found.problems == []
    assert found.others == []
    every = [s for series in found.series for s in series.slices]
    assert all(s.path.name.upper() != "DICOMDIR" for s in every)
    assert all(s.path.is_file() for s in every)
    # Names are relative to the disc, never carry the folders above it.
    assert all(not s.name.startswith("/") and "disc" not in s.name for s in every)
    # The stray file on the disc is no photo.
    assert [name.upper() for name, _ in found.ignored] == ["README.TXT"]


def test_slices_are_ordered_by_position(disc_folder: Path) -> None:
    ct = _by_modality(gather([disc_folder]).series)["CT"]
    assert ct.order == "position"
    z = [_z(s) for s in ct.slices]
    # InstanceNumbers count from the head down, so the order runs from the head down.
    assert z == sorted(z, reverse=True)
    assert len(set(z)) == DISC_CT_SLICES


def test_position_order_runs_up_without_instance_numbers(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    for index, name in zip([3, 0, 2, 1], "dbca", strict=True):
        ds = disc_slice("CT", index, series_uid="1.2.3.4", study_uid="1.2.3", series_number=1)
        del ds.InstanceNumber
        ds.save_as(folder / name, enforce_file_format=True)
    (only,) = gather([folder]).series
    assert only.order == "position"
    assert [_z(s) for s in only.slices] == [0.0, 10.0, 20.0, 30.0]


def test_order_falls_back_to_instance_number_then_name(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    for index, name in enumerate("cab"):
        ds = disc_slice("CR", index, series_uid="1.2.3.4", study_uid="1.2.3", series_number=1)
        del ds.ImagePositionPatient
        ds.save_as(folder / name, enforce_file_format=True)
    (numbered,) = gather([folder]).series
    assert numbered.order == "number"
    assert [s.name for s in numbered.slices] == ["b", "a", "c"]  # InstanceNumber 998, 999, 1000
    for name in "abc":
        ds = pydicom.dcmread(folder / name)
        del ds.InstanceNumber
        ds.save_as(folder / name, enforce_file_format=True)
    (named,) = gather([folder]).series
    assert named.order == "name"
    assert [s.name for s in named.slices] == ["a", "b", "c"]


def test_middle_pick_is_the_middle_slice(disc_folder: Path) -> None:
    ct = _by_modality(gather([disc_folder]).series)["CT"]
    (chosen,) = pick(ct)
    assert chosen.slice == ct.slices[DISC_CT_SLICES // 2]
    assert chosen.frame == 0
    assert _z(chosen.slice) == 40.0
    assert chosen.label == "slice 5 of 9"


def test_three_picks_are_evenly_spaced(disc_folder: Path) -> None:
    ct = _by_modality(gather([disc_folder]).series)["CT"]
    picks = pick(ct, 3)
    assert [ct.slices.index(p.slice) for p in picks] == [1, 4, 7]
    assert [p.label for p in picks] == ["slice 2 of 9", "slice 5 of 9", "slice 8 of 9"]
    assert len(pick(ct, 50)) == DISC_CT_SLICES  # never more than there are, never twice
    with pytest.raises(UsageError):
        pick(ct, 0)


def test_multiframe_file_is_picked_by_frame(tmp_path: Path) -> None:
    frames = np.arange(30, dtype=np.uint16)[:, None, None] * np.ones((1, 8, 8), np.uint16)
    ds = make_dataset(frames, modality="US", sop_class="1.2.840.10008.5.1.4.1.1.3.1")
    path = tmp_path / "cine"
    ds.save_as(path, enforce_file_format=True)
    (clip,) = gather([path]).series
    assert clip.slices == [Slice(path, "cine", 30)]
    assert clip.images == 30
    (middle,) = pick(clip)
    assert (middle.slice.path, middle.frame) == (path, 15)
    assert middle.label == "frame 16 of 30"
    assert [p.frame for p in pick(clip, 3)] == [5, 15, 25]


def test_series_of_multiframe_files_shows_each_middle_frame(tmp_path: Path) -> None:
    for i in range(3):
        frames = np.zeros((10, 8, 8), np.uint16)
        ds = make_dataset(frames, modality="US", sop_class="1.2.840.10008.5.1.4.1.1.3.1")
        ds.SOPInstanceUID = f"1.2.3.{i}"
        ds.InstanceNumber = i + 1
        ds.save_as(tmp_path / f"clip{i}", enforce_file_format=True)
    (clips,) = gather([tmp_path]).series
    assert [(p.slice.name, p.frame, p.label) for p in pick(clips)] == [("clip1", 5, "image 2 of 3")]


def test_dicomdir_is_followed_not_only_walked(
    lower_disc_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(series_module, "walk", lambda folder, ignored: [])
    found = gather([lower_disc_folder / "dicomdir"])
    assert sorted(len(s.slices) for s in found.series) == [DISC_MR_SLICES, DISC_CT_SLICES]
    names = [s.name for series in found.series for s in series.slices]
    assert all(name.startswith("pt000000/") for name in names)


def test_dicomdir_names_match_without_regard_to_case(lower_disc_folder: Path) -> None:
    path = dicomdir._resolve(
        lower_disc_folder, ["PT000000", "ST000000", "SE000000", "IM000000"], {}
    )
    assert path == lower_disc_folder / "pt000000" / "st000000" / "se000000" / "im000000"
    assert dicomdir._resolve(lower_disc_folder, ["PT000000", "..", "dicomdir"], {}) is None


def test_a_disc_inside_the_folder_given_is_read_once(tmp_path: Path) -> None:
    from conftest import make_disc

    make_disc(tmp_path / "inbox" / "disc")
    copy = tmp_path / "inbox" / "disc" / "PT000000" / "ST000000" / "SE000000"
    # The DICOMDIR now names a missing file, and the renamed one is found by content.
    (copy / "IM000000").rename(copy / "IM000000 copy")
    found = gather([tmp_path / "inbox"])
    names = [s.name for series in found.series for s in series.slices]
    assert len(names) == len(set(names)) == DISC_CT_SLICES + DISC_MR_SLICES
    assert all(name.startswith("disc/PT000000/") for name in names)
    assert "disc/PT000000/ST000000/SE000000/IM000000 copy" in names  # found by content
    assert found.problems == [
        ("disc/DICOMDIR", "the DICOMDIR lists 1 file not found under its folder")
    ]


def test_copies_of_one_file_are_one_slice(tmp_path: Path) -> None:
    ds = disc_slice("CT", 0, series_uid="1.2.3.4", study_uid="1.2.3", series_number=1)
    ds.save_as(tmp_path / "a", enforce_file_format=True)
    ds.save_as(tmp_path / "b", enforce_file_format=True)
    ds.ImagePositionPatient = [-100, -100, 50.0]  # one UID given to two images
    ds.save_as(tmp_path / "c", enforce_file_format=True)
    (only,) = gather([tmp_path]).series
    assert [s.name for s in only.slices] == ["a", "c"]


def test_dicomdir_missing_files_are_a_problem(disc_folder: Path) -> None:
    victim = disc_folder / "PT000000" / "ST000001" / "SE000000" / "IM000000"
    victim.unlink()
    found = gather([disc_folder])
    assert sorted(len(s.slices) for s in found.series) == [DISC_MR_SLICES - 1, DISC_CT_SLICES]
    assert found.problems == [("DICOMDIR", "the DICOMDIR lists 1 file not found under its folder")]


def test_unreadable_dicomdir_falls_back_to_walking(disc_folder: Path) -> None:
    dicomdir = disc_folder / "DICOMDIR"
    dicomdir.write_bytes(dicomdir.read_bytes()[:200])
    found = gather([disc_folder, disc_folder / "README.TXT"])
    assert [name for name, _ in found.ignored] == []  # named on its own: meant to be sent
    assert found.others == [disc_folder / "README.TXT"]
    found = gather([disc_folder])
    assert [name for name, _ in found.ignored] == ["README.TXT"]  # still a disc
    assert sorted(len(s.slices) for s in found.series) == [DISC_MR_SLICES, DISC_CT_SLICES]
    assert [name for name, _ in found.problems] == ["DICOMDIR"]
    assert all(s.path != dicomdir for series in found.series for s in series.slices)


@pytest.mark.parametrize("keep", [300, 900, 1200, -1], ids=["meta", "header", "pixels", "length"])
def test_unreadable_file_is_a_problem_with_a_one_line_reason(tmp_path: Path, keep: int) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    good = disc_slice("CT", 0, series_uid="1.2.3.4", study_uid="1.2.3", series_number=1)
    good.save_as(folder / "good", enforce_file_format=True)
    broken = disc_slice("CT", 1, series_uid="1.2.3.4", study_uid="1.2.3", series_number=1)
    broken.save_as(folder / "broken", enforce_file_format=True)
    data = (folder / "broken").read_bytes()
    if keep > 0:  # cut short: in the file meta, in the header or in the pixel data
        (folder / "broken").write_bytes(data[:keep])
    else:  # the first element of the dataset claims more bytes than the file holds
        start = 132 + 12 + int.from_bytes(data[140:144], "little")
        (folder / "broken").write_bytes(data[: start + 6] + b"\xff\xf0" + data[start + 8 :])
    found = gather([folder])
    assert [s.name for series in found.series for s in series.slices] == ["good"]
    ((name, reason),) = found.problems
    assert name == "broken"
    assert reason and "\n" not in reason
    assert str(folder) not in reason


def test_non_dicom_files_outside_a_disc_are_offered_as_photos(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    photo = folder / "phone.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    disc_slice("CT", 0, series_uid="1.2.3.4", study_uid="1.2.3", series_number=1).save_as(
        folder / "IM1", enforce_file_format=True
    )
    found = gather([folder])
    assert found.others == [photo]
    assert found.ignored == [(".DS_Store", "a system file")]
    assert len(found.series) == 1


def test_files_without_series_uid_are_each_a_series(tmp_path: Path) -> None:
    for i in range(2):
        ds = disc_slice("CR", i, series_uid="1.2.3.4", study_uid="1.2.3", series_number=1)
        del ds.SeriesInstanceUID
        ds.save_as(tmp_path / f"x{i}", enforce_file_format=True)
    found = gather([tmp_path])
    assert [len(s.slices) for s in found.series] == [1, 1]


def test_objects_without_an_image_are_ignored(tmp_path: Path) -> None:
    ds = make_dataset(sop_class="1.2.840.10008.5.1.4.1.1.88.11", modality="SR")
    for keyword in ("PixelData", "Rows", "Columns"):
        delattr(ds, keyword)
    ds.save_as(tmp_path / "report", enforce_file_format=True)
    found = gather([tmp_path])
    assert found.series == []
    assert found.problems == []
    assert [name for name, _ in found.ignored] == ["report"]


def test_nothing_identifying_is_kept(disc_folder: Path) -> None:
    text = repr(gather([disc_folder]))
    for value in ("DOE", "JOHN", PHI["patient_id"], "1.2.826.0.1.3680043", str(disc_folder)):
        assert value not in text


def test_links_out_of_the_folder_are_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    disc_slice("CT", 0, series_uid="1.2.3.4", study_uid="1.2.3", series_number=1).save_as(
        outside, enforce_file_format=True
    )
    folder = tmp_path / "study"
    folder.mkdir()
    os.symlink(outside, folder / "link")
    found = gather([folder])
    assert found.series == []
    assert found.ignored == [("link", "a link to a file outside the folder given")]


def test_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="input not found"):
        gather([tmp_path / "nowhere"])


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"BodyPartExamined": "CHEST"}, "CHEST"),
        ({"BodyPartExamined": "l-spine"}, "LSPINE"),
        ({"BodyPartExamined": "CHEST_ABDOMEN"}, "CHESTABDOMEN"),
        ({"BodyPartExamined": "DOEJOHN", "StudyDescription": "KNEE LEFT"}, "KNEE"),
        ({"StudyDescription": "CT CHEST ABDOMEN PELVIS W CONTRAST"}, "CHESTABDPELVIS"),
        ({"SeriesDescription": "SAG T2 LUMBAR SPINE", "StudyDescription": "MRI"}, "LSPINE"),
        ({"SeriesDescription": "AX T1", "StudyDescription": "MR HEAD FOR DOE^JOHN"}, "HEAD"),
        ({"StudyDescription": "DOE^JOHN 1952"}, None),
        ({}, None),
    ],
)
def test_body_part_comes_from_a_fixed_vocabulary(
    attributes: dict[str, str], expected: str | None
) -> None:
    ds = make_dataset(phi=False, extra=attributes)
    assert body_part(ds) == expected


def test_a_ct_folder_of_300_slices_gathers_fast(tmp_path: Path) -> None:
    for i in range(300):
        ds = disc_slice("CT", i, series_uid="1.2.3.4", study_uid="1.2.3", series_number=1)
        ds.save_as(tmp_path / f"IM{i:04d}", enforce_file_format=True)
    start = time.perf_counter()
    (only,) = gather([tmp_path]).series
    assert time.perf_counter() - start < 3.0
    assert len(only.slices) == 300
