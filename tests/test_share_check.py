"""The final check of `deid share` (`deid verify` on the bundle: metadata, pixel text,
faces) finding something: the covering stages are made to miss a face or a burned-in
name, and what the check does about it is asserted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import BURNED_NAME, PHI
from PIL import Image
from test_share_bundle import face_photo, share

from deid import profiles
from deid.errors import ExitCode
from deid.pixelwork import find_text
from deid.share import pictures, scans
from deid.share.note import FACES
from deid.text import TextPolicy
from deid.verify import verify_outputs

POLICY = TextPolicy.from_profile(profiles.load(profiles.DEFAULT_PROFILE).section("text"))
# Values of the inputs below that nothing printed or written may hold: the fake PHI of
# the radiograph's header and burned-in text, and the name printed in the photo.
IDENTIFYING = [
    *BURNED_NAME.split(),
    *(str(PHI[key]) for key in ("patient_id", "accession", "birth_date", "institution")),
    "JANE",
]


def _faces_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faces in photos are found but not covered."""
    monkeypatch.setattr(pictures, "cover_faces", lambda image, faces, how: image)


def _text_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text on scans is searched (and each image rendered) but nothing is found."""
    real = find_text

    def nothing_found(*args: Any, **kwargs: Any) -> dict[int, list[Any]]:
        return {frame: [] for frame in real(*args, **kwargs)}

    monkeypatch.setattr(scans, "find_text", nothing_found)


@pytest.mark.parametrize(
    ("miss", "flagged", "kept", "kind"),
    [
        (_faces_left, "photo1.jpg", "series1.png", "face"),
        (_text_left, "series1.png", "photo1.jpg", "patient name"),
    ],
    ids=["face", "burned-in-name"],
)
def test_what_the_covering_missed_is_taken_out_of_the_bundle(
    burned_in_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    miss: Callable[[pytest.MonkeyPatch], None],
    flagged: str,
    kept: str,
    kind: str,
) -> None:
    inputs = burned_in_file.parent
    face_photo(inputs / "IMG_2201.jpg")
    miss(monkeypatch)
    bundle = tmp_path / "bundle"
    code, output = share(str(inputs), "--out", str(bundle), "--review")
    assert code == ExitCode.LEAK_FOUND, output
    assert sorted(p.name for p in bundle.iterdir()) == sorted(["context.txt", kept, "review.html"])
    lines = [line for line in output.splitlines() if line.startswith("final check: ")]
    assert lines and all(line.startswith(f"final check: {flagged}: pixels x ") for line in lines)
    assert all(line.endswith("; image taken out of the bundle") for line in lines)
    assert any(f": {kind};" in line for line in lines)
    count = len(lines)
    problems = f"{count} problem{'' if count == 1 else 's'}"
    assert f"1 image ready in {bundle} (" in output
    assert f"the final check found {problems}" in output
    note = (bundle / "context.txt").read_text()
    assert flagged not in note and f"{kept}: " in note
    assert (FACES in note) == (kept == "photo1.jpg")  # the faces sentence follows the photo
    page = (bundle / "review.html").read_text()
    assert flagged not in page and kept in page
    for value in IDENTIFYING:
        assert value not in output, value
        assert value not in note, value


def test_without_a_miss_the_same_inputs_pass_the_final_check(
    burned_in_file: Path, tmp_path: Path
) -> None:
    """The twin of the test above: the inputs are flagged only when a stage misses."""
    inputs = burned_in_file.parent
    face_photo(inputs / "IMG_2201.jpg")
    bundle = tmp_path / "bundle"
    code, output = share(str(inputs), "--out", str(bundle))
    assert code == ExitCode.OK, output
    assert "final check: " not in output
    assert "2 images ready in" in output and "nothing identifying found" in output
    assert sorted(p.name for p in bundle.iterdir()) == ["context.txt", "photo1.jpg", "series1.png"]


@pytest.fixture
def checked_folder(tmp_path: Path) -> Path:
    """A folder as a bundle holds it: a photo of a face, and one of a bare wall, both
    plain JPEGs (no metadata), nothing printed on either."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    made = face_photo(tmp_path / "face-source.jpg", name=None)
    with Image.open(made) as opened:
        pixels = np.asarray(opened.convert("RGB"))
    Image.fromarray(pixels).save(folder / "face.jpg", quality=92)
    wall = np.random.default_rng(3).normal(170, 12, (900, 1200, 3))
    Image.fromarray(wall.clip(0, 255).astype(np.uint8)).save(folder / "wall.jpg", quality=92)
    return folder


@pytest.mark.parametrize(
    ("faces", "expected"),
    [
        (True, ["face.jpg"]),
        (frozenset({"face.jpg", "wall.jpg"}), ["face.jpg"]),
        (frozenset({"wall.jpg"}), []),  # faces are looked for only where asked
        (False, []),
    ],
    ids=["all", "both-named", "wall-named", "off"],
)
def test_verify_flags_a_face_only_where_it_looks_for_faces(
    checked_folder: Path, faces: bool | frozenset[str], expected: list[str]
) -> None:
    report = verify_outputs([checked_folder], None, POLICY, faces=faces)
    assert report.jpeg == 2
    found = [leak for leak in report.leaks if leak.kind == "face"]
    assert sorted({Path(leak.file).name for leak in found}) == expected
    assert all(leak.where.startswith("pixels x ") for leak in found)
    assert [leak for leak in report.leaks if leak.kind != "face"] == []


def test_a_bundle_whose_every_image_is_taken_out_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = face_photo(tmp_path / "IMG_2201.jpg", name=None)
    _faces_left(monkeypatch)
    bundle = tmp_path / "bundle"
    code, output = share(str(photo), "--out", str(bundle))
    assert code == ExitCode.LEAK_FOUND, output
    assert sorted(p.name for p in bundle.iterdir()) == ["context.txt"]
    assert "0 images ready in" in output and "the final check found 1 problem" in output
    assert "error: nothing to share: the final check took every image out" in output
    assert "could be made" not in output
    assert "photo1.jpg" not in (bundle / "context.txt").read_text()
