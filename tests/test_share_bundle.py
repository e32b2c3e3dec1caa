"""`deid share` end to end: a disc, photos and documents into a bundle, run through the
command line in-process; what must not appear in the bundle or the output is asserted."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import DISC_CT_SLICES, PHI, make_disc
from PIL import Image, ImageDraw, ImageFont
from test_share_documents import TD3, passport_page
from test_share_photos import PLANTED, assert_nothing_sent, phone_jpeg
from typer.testing import CliRunner

from deid.cli import app
from deid.errors import ExitCode
from deid.faces import find_faces
from deid.share.montage import montage_placed
from deid.share.note import FACES

runner = CliRunner()
_DATA_URI = r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+"
# The values printed on `passport_page()` below their labels: the holder's name,
# nationality and birth date.
HOLDER_LINES = ("ERIKSSON", "ANNA MARIA", "UTOPIAN", "12 AUG 1974")


def share(*args: str) -> tuple[int, str]:
    """`deid share ARGS` in-process: its exit code and everything it printed. An
    exception the command did not turn into an exit code is raised, not read as one."""
    result = runner.invoke(app, ["share", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def astronaut_face() -> Image.Image:
    skimage_data = pytest.importorskip("skimage.data")
    return Image.fromarray(skimage_data.astronaut()).crop((150, 20, 300, 210))


def face_photo(path: Path, *, name: str | None = "JANE DOE") -> Path:
    """A phone photo: a face on a wall, a name printed on a card below it, EXIF GPS."""
    rng = np.random.default_rng(3)
    wall = rng.normal(170, 12, (900, 1200, 3)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(wall)
    image.paste(astronaut_face().resize((300, 380)), (450, 80))
    if name:
        draw = ImageDraw.Draw(image)
        draw.rectangle((380, 560, 820, 660), fill=(250, 250, 250))
        draw.text((400, 575), name, fill=(10, 10, 10), font=ImageFont.load_default(size=64))
    return phone_jpeg(path, np.asarray(image))


def test_a_disc_gives_one_image_per_series(tmp_path: Path) -> None:
    disc = make_disc(tmp_path / "disc")
    bundle = tmp_path / "bundle"
    code, output = share(str(disc), "--out", str(bundle))
    assert code == 0, output
    names = sorted(p.name for p in bundle.iterdir())
    ct_first = ["context.txt", "series1-lung.png", "series1-mediastinum.png", "series2-brain.png"]
    mr_first = ["context.txt", "series1-brain.png", "series2-lung.png", "series2-mediastinum.png"]
    assert names in (ct_first, mr_first)
    assert f"3 images ready in {bundle} (2 series, 0 photos); nothing identifying found" in output
    assert "DOE" not in output
    note = (bundle / "context.txt").read_text()
    assert "Black boxes cover text that was removed for privacy; they are not findings." in note
    assert "Modality: CT" in note and "DOE" not in note
    assert FACES not in note  # no face was covered


def test_the_middle_slice_is_the_key_slice(tmp_path: Path) -> None:
    disc = make_disc(tmp_path / "disc")
    bundle = tmp_path / "bundle"
    code, output = share(str(disc), "--out", str(bundle), "--window", "soft-tissue")
    assert code == 0, output
    ct = next(p for p in bundle.glob("series*-soft-tissue.png"))
    # slice i holds 1000 + 100 i stored, -1024 intercept: the middle one (i = 4) is 376 HU,
    # above the soft-tissue window's top (240 HU), so it shows white; slice 0 would be grey.
    assert DISC_CT_SLICES // 2 == 4
    assert np.asarray(Image.open(ct)).min() == 255


def test_a_ct_chest_montage_shows_lung_and_mediastinum(
    ct_chest_folder: Path, tmp_path: Path
) -> None:
    """Each slice is half lung (-600 HU), half soft tissue (50 HU): the lung row shows
    the lung mid-grey and the tissue near white, the mediastinum row the lung black and
    the tissue mid-grey. A montage in one window only fails one of the rows."""
    bundle = tmp_path / "bundle"
    code, output = share(str(ct_chest_folder), "--out", str(bundle), "--montage", "--slices", "3")
    assert code == 0, output
    assert sorted(p.name for p in bundle.iterdir()) == ["context.txt", "series1-montage.png"]
    montage = np.asarray(Image.open(bundle / "series1-montage.png"))
    assert montage.ndim == 2
    labels = [f"{w} slice {n} of 5" for w in ("lung", "mediastinum") for n in (2, 3, 4)]
    tiles = [(np.zeros((64, 64), np.uint8), label) for label in labels]
    _, placed = montage_placed(tiles, rows=2)
    # (lung half, tissue half) of each tile, by row: lung window, then mediastinum
    expected = [(128, 238)] * 3 + [(0, 128)] * 3
    for place, (lung, tissue) in zip(placed, expected, strict=True):
        tile = montage[place.top : place.top + place.height, place.left : place.left + place.width]
        half, margin = tile.shape[1] // 2, tile.shape[1] // 8
        inner = tile[margin:-margin]
        assert np.median(inner[:, margin : half - margin]) == pytest.approx(lung, abs=3)
        assert np.median(inner[:, half + margin : -margin]) == pytest.approx(tissue, abs=3)
    note = (bundle / "context.txt").read_text()
    assert "series1-montage.png: series 1, lung+mediastinum window;" in note


def test_a_photo_loses_its_metadata_face_and_printed_name(tmp_path: Path) -> None:
    photo = face_photo(tmp_path / "IMG_2201.jpg")
    bundle = tmp_path / "bundle"
    code, output = share(str(photo), "--out", str(bundle), "--review")
    assert code == 0, output
    sent = bundle / "photo1.jpg"
    data = sent.read_bytes()
    assert_nothing_sent(data, "jpg")
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert find_faces(image) == []
    assert image[590:640, 400:700].mean() < 40  # the printed name is blacked out
    assert "1 face covered" in output and "text line" in output
    assert "1 image ready in" in output and "(0 series, 1 photo)" in output
    page = (bundle / "review.html").read_text()
    assert "face" in page and "data:image/jpeg;base64," in page
    page = re.sub(_DATA_URI, "", page)  # random base64 spells a short name now and then
    for value in PLANTED:
        assert value.decode("latin-1", "replace") not in page


def test_an_identity_document_is_refused_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    page = passport_page()
    Image.fromarray(page).save(path)
    bundle = tmp_path / "bundle"
    code, output = share(str(path), "--out", str(bundle))
    assert code == ExitCode.REFUSED
    assert "identity document" in output and "--allow-documents" in output
    assert not list(bundle.glob("photo*"))
    allowed = tmp_path / "allowed"
    code, output = share(str(path), "--out", str(allowed), "--allow-documents")
    assert code == ExitCode.OK, output
    assert "1 image ready in" in output
    assert "nothing identifying found by the final check" in output
    assert "1 face covered" in output
    assert sorted(p.name for p in allowed.iterdir()) == ["context.txt", "photo1.jpg"]
    sent = np.asarray(Image.open(allowed / "photo1.jpg").convert("RGB"))
    assert sent.shape == page.shape
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    printed = [(line, (40, 700 + 60 * i), 38) for i, line in enumerate(TD3)]
    printed += [(value, (380, 202 + 68 * i), 30) for i, value in enumerate(HOLDER_LINES)]
    for line, xy, size in printed:
        left, top, right, bottom = measure.textbbox(xy, line, font=ImageFont.load_default(size))
        assert page[top:bottom, left:right].mean() > 120, line  # light paper, dark letters
        assert sent[top:bottom, left:right].mean() < 10, line  # one black box
    (face,) = find_faces(page)
    box = face.box
    before = page[box.top : box.bottom, box.left : box.right].astype(int)
    after = sent[box.top : box.bottom, box.left : box.right].astype(int)
    assert np.abs(before - after).mean() > 20  # the portrait is blurred, not re-encoded
    assert find_faces(sent) == []


def test_a_bundle_folder_with_files_is_refused_before_any_work(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "mine.txt").write_text("keep me")
    code, output = share(str(make_disc(tmp_path / "disc")), "--out", str(bundle))
    assert code == ExitCode.OUTPUT_EXISTS, output
    assert sorted(p.name for p in bundle.iterdir()) == ["mine.txt"]


def test_without_out_a_new_folder_is_made_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disc = make_disc(tmp_path / "disc")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deid-share").mkdir()
    code, output = share(str(disc))
    assert code == 0, output
    assert (tmp_path / "deid-share-2" / "context.txt").exists()
    assert "deid-share-2" in output


def test_paths_are_hidden_with_redact_paths(tmp_path: Path) -> None:
    photo = face_photo(tmp_path / f"{PHI['name'].replace('^', '_')}.jpg", name=None)
    code, output = share(str(photo), "--out", str(tmp_path / "b"), "--redact-paths")
    assert code == 0, output
    assert PHI["name_words"][0] not in output
    assert "input #1" in output


def test_a_bad_window_is_a_usage_error(tmp_path: Path) -> None:
    code, output = share(str(tmp_path), "--window", "liver-ish", "--out", str(tmp_path / "b"))
    assert code == ExitCode.USAGE
    assert "--window" in output
    assert not (tmp_path / "b").exists()


def test_the_sample_disc_makes_a_clean_bundle(tmp_path: Path) -> None:
    """The README's first example: every series and the wristband photo, nothing of the
    patients' names in what is printed or written."""
    samples = Path(__file__).resolve().parents[1] / "sample_dicom"
    bundle = tmp_path / "bundle"
    code, output = share(str(samples), "--out", str(bundle), "--review")
    assert code == 0, output
    assert "(7 series, 1 photo); nothing identifying found by the final check" in output
    assert "IMG_0412.JPG -> " in output and "metadata dropped: EXIF, GPS" in output
    page = re.sub(
        r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", (bundle / "review.html").read_text()
    )
    written = page + (bundle / "context.txt").read_text()
    for value in ("SMITH", "DOE", "GARCIA", "MRN3390415", "FAKEPHONE", "RIVERBEND"):
        assert value not in output
        assert value not in written
    photo = Image.open(bundle / "photo1.jpg")
    assert photo.size == (900, 1200)  # upright: stored sideways with Orientation 6
    assert not photo.getexif()
