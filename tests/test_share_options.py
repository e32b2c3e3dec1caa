"""`deid share` options end to end, through the command line: size caps, slices and
montages, windows, and how faces are covered; each asserted on the pixels written."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    BURNED_LINES,
    BURNED_NAME,
    CINE_FRAMES,
    ONE_WINDOW_NAME_AT,
    ONE_WINDOW_NAME_SIZE,
    ONE_WINDOW_TEXT,
    cine_frame_value,
    ct_chest_with_name,
    draw_text,
)
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from test_share_bundle import astronaut_face, face_photo, share
from test_share_photos import phone_jpeg

from deid.errors import ExitCode
from deid.faces import find_faces
from deid.share import bundle as bundle_module
from deid.share.items import SharedImage
from deid.share.montage import montage_placed
from deid.share.note import FACES
from deid.share.review import write_review
from deid.share.windows import choose, render_window


def linear(value: float, center: float, width: float) -> float:
    """A stored or HU value as the grey a LINEAR window shows it (PS3.3 C.11.2.1.2.1)."""
    return float(np.clip(((value - (center - 0.5)) / (width - 1) + 0.5) * 255, 0, 255))


@pytest.fixture
def reviewed(monkeypatch: pytest.MonkeyPatch) -> list[SharedImage]:
    """The images `share --review` draws on the review page, covers and all, as the
    bundle hands them over."""
    seen: list[SharedImage] = []
    real = write_review

    def spy(images: list[SharedImage], folder: Path, context: str) -> Path:
        seen.extend(images)
        return real(images, folder, context)

    monkeypatch.setattr(bundle_module, "write_review", spy)
    return seen


def big_face_photo(path: Path) -> Path:
    """A 2000x1500 phone photo of a grainy wall with a face and a printed name: as a
    JPEG it needs about twice the 0.1 MB the size cap below allows."""
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.normal(150, 40, (1500, 2000, 3)).clip(0, 255).astype(np.uint8))
    image.paste(astronaut_face().resize((450, 570)), (775, 120))
    draw = ImageDraw.Draw(image)
    draw.rectangle((640, 840, 1360, 1000), fill=(250, 250, 250))
    draw.text((670, 860), "JANE DOE", fill=(10, 10, 10), font=ImageFont.load_default(size=100))
    return phone_jpeg(path, np.asarray(image))


def assert_covers_on_black(folder: Path, images: list[SharedImage]) -> None:
    """Every recorded cover lies on the image as written and on black there: the boxes
    followed the image through every resize."""
    for image in images:
        with Image.open(folder / image.name) as opened:
            pixels = np.asarray(opened.convert("L"))
            assert opened.size == (image.width, image.height)
        assert image.covers, image.name
        for cover in image.covers:
            box = cover.box
            assert 0 <= box.left < box.right <= image.width, (image.name, cover)
            assert 0 <= box.top < box.bottom <= image.height, (image.name, cover)
            inner = pixels[box.top + 2 : box.bottom - 2, box.left + 2 : box.right - 2]
            assert inner.mean() < 8, (image.name, cover)


def test_max_side_caps_every_image_and_its_covers(
    burned_in_file: Path, tmp_path: Path, reviewed: list[SharedImage]
) -> None:
    inputs = burned_in_file.parent  # a 512x512 radiograph with a burned-in name
    face_photo(inputs / "IMG_2201.jpg")  # 1200x900
    bundle = tmp_path / "bundle"
    code, output = share(
        str(inputs), "--out", str(bundle), "--max-side", "256", "--faces", "black", "--review"
    )
    assert code == ExitCode.OK, output
    sizes = {i.name: Image.open(bundle / i.name).size for i in reviewed}
    assert sizes == {"series1.png": (256, 256), "photo1.jpg": (256, 192)}
    assert_covers_on_black(bundle, reviewed)
    # the name burned in at (20, 16) in 512 px lies under a cover at half the scale
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(
        (20, 16), BURNED_NAME, font=ImageFont.load_default(size=30)
    )
    (scan,) = (i for i in reviewed if i.name == "series1.png")
    assert any(
        c.box.left <= left // 2
        and c.box.top <= top // 2
        and c.box.right >= -(-right // 2)
        and c.box.bottom >= -(-bottom // 2)
        for c in scan.covers
    ), scan.covers


def test_max_mb_caps_every_file_and_its_covers_follow_a_smaller_image(
    burned_in_file: Path, tmp_path: Path, reviewed: list[SharedImage]
) -> None:
    inputs = burned_in_file.parent
    big_face_photo(inputs / "IMG_2202.jpg")
    bundle = tmp_path / "bundle"
    code, output = share(
        str(inputs), "--out", str(bundle), "--max-mb", "0.1", "--faces", "black", "--review"
    )
    assert code == ExitCode.OK, output
    assert {i.name for i in reviewed} == {"series1.jpg", "photo1.jpg"}  # no PNG fits
    for image in reviewed:
        assert (bundle / image.name).stat().st_size <= 100_000
    (photo,) = (i for i in reviewed if i.name == "photo1.jpg")
    assert photo.width < 2000 and abs(photo.width * 3 / 4 - photo.height) <= 1  # same shape
    assert {c.why for c in photo.covers} >= {"face"}
    assert_covers_on_black(bundle, reviewed)


def test_a_ct_window_asked_for_another_modality_is_said(disc_folder: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    code, output = share(str(disc_folder), "--out", str(bundle), "--window", "lung")
    assert code == ExitCode.OK, output
    notes = [line for line in output.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1, output  # once for the MR series, never for the CT
    assert re.fullmatch(
        r"note: series \d \(MR BRAIN, 5 images\): the lung window is in Hounsfield units, "
        r"for CT only; MR is shown in its own window",
        notes[0],
    )
    assert "DOE" not in output
    names = sorted(p.name for p in bundle.glob("*.png"))
    assert names in (
        ["series1-brain.png", "series2-lung.png"],
        ["series1-lung.png", "series2-brain.png"],
    )


def test_slices_without_montage_are_separate_images(disc_folder: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    code, output = share(
        str(disc_folder), "--out", str(bundle), "--slices", "3", "--window", "bone"
    )
    assert code == ExitCode.OK, output
    ct = sorted(bundle.glob("series*-*of3-bone.png"))
    mr = sorted(bundle.glob("series*-*of3-brain.png"))
    assert [p.name.split("-")[1] for p in ct] == ["1of3", "2of3", "3of3"]
    assert [p.name.split("-")[1] for p in mr] == ["1of3", "2of3", "3of3"]
    assert len(list(bundle.iterdir())) == 7  # and context.txt
    # Slices 2, 5 and 8 of 9, counted from the head: disc slice index 7, 4 and 1, whose
    # pixels hold 1000 + 100 index stored (-1024 intercept), shown in the bone window.
    for path, index in zip(ct, (7, 4, 1), strict=True):
        expected = linear(1000 + 100 * index - 1024, 400, 1800)
        assert np.asarray(Image.open(path)).mean() == pytest.approx(expected, abs=1)
    note = (bundle / "context.txt").read_text()
    assert all(f"{p.name}: " in note for p in [*ct, *mr])
    assert "6 images ready in" in output


def test_a_multiframe_file_makes_one_grid_of_its_frames_in_order(
    cine_file: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    code, output = share(str(cine_file), "--out", str(bundle), "--montage")
    assert code == ExitCode.OK, output
    assert sorted(p.name for p in bundle.iterdir()) == ["context.txt", "series1-montage.png"]
    grid = np.asarray(Image.open(bundle / "series1-montage.png"))
    frames = [0, 2, 3, 4, 6, 7, 8, 10, 11]  # nine of twelve, evenly spaced
    labels = [f"frame {f + 1} of {CINE_FRAMES}" for f in frames]
    _, placed = montage_placed([(np.zeros((128, 128), np.uint8), t) for t in labels])
    for place, frame in zip(placed, frames, strict=True):
        tile = grid[
            place.top + 8 : place.top + place.height - 8,
            place.left + 8 : place.left + place.width - 8,
        ]
        expected = linear(cine_frame_value(frame), 2048, 4096)
        assert np.median(tile) == pytest.approx(expected, abs=2), frame
    assert "series1-montage.png: series 1; Modality: XA" in (bundle / "context.txt").read_text()


@pytest.mark.parametrize("how", ["blur", "black"])
def test_faces_are_blurred_or_blacked_out(tmp_path: Path, how: str) -> None:
    photo = face_photo(tmp_path / "IMG_2201.jpg")
    with Image.open(photo) as opened:
        before = np.asarray(opened.convert("RGB"))
    (face,) = find_faces(before)
    bundle = tmp_path / "bundle"
    code, output = share(str(photo), "--out", str(bundle), "--faces", how)
    assert code == ExitCode.OK, output
    assert "1 face covered" in output
    after = np.asarray(Image.open(bundle / "photo1.jpg").convert("RGB"))
    box = face.box
    was = before[box.top : box.bottom, box.left : box.right].astype(int)
    now = after[box.top : box.bottom, box.left : box.right].astype(int)
    if how == "black":
        assert now.mean() < 8
    else:
        assert now.mean() > 60 and np.abs(was - now).mean() > 15  # still a picture, no face
    assert find_faces(after) == []
    assert FACES in (bundle / "context.txt").read_text()


def _ink(text: str, xy: tuple[int, int], size: int) -> np.ndarray:
    """Where `text` drawn at `xy` in `size` puts its letters on a 512x512 image."""
    return draw_text(np.zeros((512, 512), np.uint8), [(text, xy, size, 255)])[1]


def test_a_burned_in_name_is_blacked_out_in_the_shared_image(
    burned_in_file: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    code, output = share(str(burned_in_file), "--out", str(bundle))
    assert code == ExitCode.OK, output
    shared = np.asarray(Image.open(bundle / "series1.png"))
    assert shared.shape == (512, 512)
    name, mrn, marker = (_ink(text, xy, size) for text, xy, size in BURNED_LINES)
    assert (shared[name] == 0).all() and (shared[mrn] == 0).all()  # white letters, now black
    assert (shared[marker] == 255).all()  # the "L" marker is kept


@pytest.mark.parametrize("shows_in", sorted(ONE_WINDOW_TEXT))
def test_text_seen_in_one_window_only_is_covered_where_it_shows(
    shows_in: str, write_dicom: Callable[..., Path], tmp_path: Path
) -> None:
    ds = ct_chest_with_name(shows_in)
    other = "mediastinum" if shows_in == "lung" else "lung"
    letters = _ink(BURNED_NAME, ONE_WINDOW_NAME_AT, ONE_WINDOW_NAME_SIZE)
    assert _visible(ds, letters, shows_in) and not _visible(ds, letters, other)
    path = write_dicom(ds, "IM0001")
    bundle = tmp_path / "bundle"
    code, output = share(str(path), "--out", str(bundle))
    assert code == ExitCode.OK, output
    shown = np.asarray(Image.open(bundle / f"series1-{shows_in}.png"))
    assert (shown[letters] == 0).all()
    rows, cols = np.nonzero(letters)
    assert (shown[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] == 0).all()
    hidden = np.asarray(Image.open(bundle / f"series1-{other}.png"))
    patch = ONE_WINDOW_TEXT[shows_in][0]
    window = {w.name: w for w in choose("CT", "CHEST")}[other]
    assert window.center is not None and window.width is not None
    assert (hidden[letters] == round(linear(patch, window.center, window.width))).all()


def _visible(ds: Dataset, letters: np.ndarray, window_name: str) -> bool:
    """Whether the letters differ from the patch around them in that window."""
    (window,) = (w for w in choose("CT", "CHEST") if w.name == window_name)
    shown = render_window(ds, ds.pixel_array, window)
    return bool(np.abs(shown[letters].astype(int).mean() - shown[12:22, 250:320].mean()) > 30)
