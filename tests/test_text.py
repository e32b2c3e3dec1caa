"""The text search on whole images: what is covered, what is kept, what is left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import PHI, anatomy, ct_slice, draw_text, real_negative_files
from pydicom.data import get_testdata_file

from deid import pixels, reader
from deid.boxes import Box
from deid.errors import LeakError
from deid.text import TextPolicy, decide, detect, redaction_boxes, search, search_image
from deid.text import second_look as second_look_module
from deid.text.policy import Region

POLICY = TextPolicy(frozenset())
ORIGINALS = {PHI["name"]: "patient name", PHI["patient_id"]: "patient ID"}


def covered(shape: tuple[int, ...], boxes: list[Box]) -> np.ndarray:
    mask = np.zeros(shape[:2], dtype=bool)
    for b in boxes:
        mask[b.top : b.bottom, b.left : b.right] = True
    return mask


def rendered(path: Path) -> np.ndarray:
    ds = reader.read(path)
    frames = pixels.decode(ds, str(path))
    return pixels.render(ds, frames[len(frames) // 2])


@pytest.mark.skipif(not real_negative_files(), reason="shared real negatives not present")
@pytest.mark.parametrize("path", real_negative_files(), ids=lambda p: f"{p.parent.name}-{p.name}")
def test_a_real_textless_slice_gets_no_box(path: Path) -> None:
    assert redaction_boxes(search_image(rendered(path), POLICY)) == []


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"])
def test_pydicoms_textless_scans_get_no_box(name: str) -> None:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    assert redaction_boxes(search_image(rendered(Path(path)), POLICY)) == []


def test_a_grey_name_on_grey_anatomy_is_covered_whole() -> None:
    image, ink = draw_text(anatomy(), [("DOE, JOHN", (150, 205), 22, 200)])
    boxes = redaction_boxes(search_image(image, POLICY, phi=ORIGINALS))
    assert covered(image.shape, boxes)[ink].all()


def test_a_line_with_one_phi_token_is_covered_whole() -> None:
    image, ink = draw_text(ct_slice(), [("LIVER MRN4471923", (30, 20), 16, 255)])
    regions = search_image(image, POLICY, phi=ORIGINALS)
    assert covered(image.shape, redaction_boxes(regions))[ink].all()
    assert any(r.reason.startswith(("PHI match", "pattern")) for r in regions)


@pytest.mark.parametrize(
    ("line", "reason"),
    [("LIVER", "kept marker"), ("120 kV", "technical text"), ("W 400 L 40", "technical text")],
)
def test_labels_and_technical_text_are_kept(line: str, reason: str) -> None:
    image, _ = draw_text(ct_slice(), [(line, (30, 470), 18, 255)])
    regions = search_image(image, POLICY, phi=ORIGINALS)
    assert redaction_boxes(regions) == []
    assert [r.reason for r in regions] == [reason]
    if reason == "kept marker":
        assert regions[0].marker == line


def test_regions_never_carry_what_was_read() -> None:
    image, _ = draw_text(ct_slice(), [("DOE, JOHN", (30, 20), 16, 255), ("R", (480, 250), 24, 255)])
    regions = search_image(image, POLICY, phi=ORIGINALS)
    assert regions
    for region in regions:
        assert "DOE" not in region.reason and "JOHN" not in region.reason
        assert region.marker is None or region.decision == "keep"


def test_large_coloured_words_on_a_real_file_are_covered_whole() -> None:
    path = get_testdata_file("GDCMJ2K_TextGBR.dcm")
    if path is None:
        pytest.skip("GDCMJ2K_TextGBR.dcm is not bundled with this pydicom")
    image = rendered(Path(path))
    words = [np.all(image == colour, axis=2) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    assert all(word.sum() > 500 for word in words)  # red, green and blue are drawn
    mask = covered(image.shape, redaction_boxes(search_image(image, POLICY)))
    assert all(mask[word].all() for word in words)


@pytest.mark.parametrize("size", [12, 14])
def test_grey_text_beside_bone_found_in_part_is_covered_whole(size: int) -> None:
    """Grey letters on noisy tissue beside a rib: the first look finds the digits only;
    the second look finds the rest of the line and the cover takes it whole."""
    image, ink = draw_text(ct_slice(), [("DOE JOHN 4471923", (220, 400), size, 190)])
    matcher = decide.Matcher.build(ORIGINALS)
    first = covered(image.shape, redaction_boxes(search.look(image, POLICY, matcher)))
    assert 0 < first[ink].mean() < 1  # the case is real: a line found in part
    assert covered(image.shape, redaction_boxes(search_image(image, POLICY, phi=ORIGINALS)))[
        ink
    ].all()


def test_a_line_found_in_pieces_is_covered_whole() -> None:
    image, ink = draw_text(ct_slice(), [("LIVER    MRN4471923", (60, 100), 16, 255)])
    ys, _ = np.nonzero(ink)
    pieces = [ln for ln in detect.find_lines(image) if ln.box.top <= ys.max() < ln.box.bottom]
    assert len(pieces) >= 2  # the kept word and the identifier are found apart
    regions = search_image(image, POLICY, phi=ORIGINALS)
    assert covered(image.shape, redaction_boxes(regions))[ink].all()
    assert not [r for r in regions if r.decision == "keep"]


def test_text_still_found_after_the_last_look_fails_the_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image, _ = draw_text(ct_slice(), [("DOE, JOHN", (30, 20), 16, 255)])
    calls: list[int] = []

    def always_more(*args: object, **kwargs: object) -> list[Region]:
        calls.append(1)
        return [Region(Box(0, 0, 4 + len(calls), 4), "redact", "text")]

    monkeypatch.setattr(second_look_module, "second_look", always_more)
    with pytest.raises(LeakError, match="text stays readable after redaction"):
        search_image(image, POLICY, phi=ORIGINALS, where="IM0001")
    assert len(calls) == second_look_module.LOOKS + 1
