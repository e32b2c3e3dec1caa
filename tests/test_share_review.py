"""`review.html`: the bundle as it will be sent, read as HTML and as a browser shows it."""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
from conftest import Parsed, chromium, ct_slice, dumped
from PIL import Image

from deid.boxes import Box
from deid.output import TEMP_PREFIX
from deid.share import review
from deid.share.items import Cover, SharedImage

HOSTILE = "<script>alert(1)</script>"
DOM_PAYLOAD = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
CONTEXT = "De-identified medical images.\nModality: CT\nBody part: CHEST\nAge band: 50-59"
# On the CT's grey body, clear of its black lungs: each cover stands out on its own.
NAME_COVER = Cover(Box(190, 120, 320, 150), "text line: PHI match: name")
DATE_COVER = Cover(Box(200, 378, 312, 404), "text line: pattern: date")
FACE_COVER = Cover(Box(180, 60, 330, 250), "face")
SHOT = Path("/tmp/review_shot.png")


def blacked(image: np.ndarray, covers: list[Cover]) -> np.ndarray:
    """The image with each cover black, as the bundle sends it."""
    out = image.copy()
    for cover in covers:
        out[cover.box.top : cover.box.bottom, cover.box.left : cover.box.right] = 0
    return out


def encoded(image: np.ndarray, form: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, form, **({"quality": 85} if form == "JPEG" else {}))
    return buffer.getvalue()


def photo() -> np.ndarray:
    """A 480x360 colour photo: a warm gradient with a face-sized bright patch."""
    y, x = np.mgrid[0:360, 0:480]
    rgb = np.stack([150 + x // 6, 110 + y // 6, 90 + (x + y) // 12], axis=-1)
    rgb[60:250, 180:330] = (230, 190, 170)
    return np.asarray(np.clip(rgb, 0, 255), dtype=np.uint8)


def make_bundle(folder: Path, *, label: str = "series 2") -> list[SharedImage]:
    """A bundle folder with a lung-window CT PNG (two covers) and a photo JPEG (a face)."""
    folder.mkdir(parents=True, exist_ok=True)
    series = encoded(blacked(ct_slice(seed=2), [NAME_COVER, DATE_COVER]), "PNG")
    (folder / "IMa1b2c3d4.png").write_bytes(series)
    snap = encoded(blacked(photo(), [FACE_COVER]), "JPEG")
    (folder / "PHe5f6a7b8.jpg").write_bytes(snap)
    return [
        SharedImage(
            name="IMa1b2c3d4.png",
            source="series",
            label=label,
            facts=["Modality: CT", "Body part: CHEST", "Age band: 50-59", "Sex: female"],
            window="lung",
            covers=[NAME_COVER, DATE_COVER],
            width=512,
            height=512,
            size=len(series),
        ),
        SharedImage(
            name="PHe5f6a7b8.jpg",
            source="photo",
            label="photo 1",
            covers=[FACE_COVER],
            width=480,
            height=360,
            size=len(snap),
        ),
    ]


def sources(parsed: Parsed) -> list[str]:
    return [attrs.get("src") or "" for tag, attrs in parsed.tags if tag == "img"]


def decoded(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


def test_each_image_is_embedded_as_sent_with_its_outlined_copy(tmp_path: Path) -> None:
    images = make_bundle(tmp_path)
    parsed = Parsed(review.page(images, tmp_path))
    sent, outlined_ct, sent_photo, outlined_photo = sources(parsed)
    assert sent.startswith("data:image/png;base64,")
    assert decoded(sent) == (tmp_path / "IMa1b2c3d4.png").read_bytes()  # byte for byte
    assert sent_photo.startswith("data:image/jpeg;base64,")
    assert decoded(sent_photo) == (tmp_path / "PHe5f6a7b8.jpg").read_bytes()

    # The small copies: 512 -> 360, each cover outlined in red just outside it.
    for uri, covers, scale in ((outlined_ct, [NAME_COVER, DATE_COVER], 360 / 512),
                               (outlined_photo, [FACE_COVER], 360 / 480)):  # fmt: skip
        small = np.asarray(Image.open(io.BytesIO(decoded(uri))).convert("RGB"), dtype=int)
        assert max(small.shape[:2]) == 360
        red = (small[..., 0] > 180) & (small[..., 1] < 100) & (small[..., 2] < 100)
        for cover in covers:
            b = cover.box
            left, top = round(b.left * scale), round(b.top * scale)
            right, bottom = round(b.right * scale), round(b.bottom * scale)
            assert red[top + 2 : bottom - 2, left - 2].mean() > 0.8  # left edge
            assert red[top + 2 : bottom - 2, right + 1].mean() > 0.8  # right edge
            assert small[top + 4 : bottom - 4, left + 4 : right - 4].max() < 60  # black


def test_the_page_lists_facts_windows_and_why_each_area_was_covered(tmp_path: Path) -> None:
    images = make_bundle(tmp_path)
    words = Parsed(review.page(images, tmp_path, context=CONTEXT)).words
    assert review.NOT_FINDINGS in words
    assert "Modality: CT Body part: CHEST Age band: 50-59" in words  # the context note
    assert "2 images" in words
    for cover in (NAME_COVER, DATE_COVER, FACE_COVER):
        assert cover.why in words
    assert "at 190, 120 to 320, 150: 130 × 30 px" in words
    series, snap = words.split("1. series 2")[1].split("2. photo 1")
    assert "window lung" in series and "dimensions 512 × 512 px" in series
    assert f"size {images[0].size / 1024:.0f} KB" in series
    assert "Sex: female" in series and "Covered (2)" in series
    assert "window -" in snap and "dimensions 480 × 360 px" in snap and "Covered (1)" in snap
    assert words.index(review.NOT_FINDINGS) < words.index("1. series 2")  # at the top


def test_an_image_with_nothing_covered_is_shown_once(tmp_path: Path) -> None:
    images = make_bundle(tmp_path)
    images[1].covers = []
    parsed = Parsed(review.page(images, tmp_path))
    assert len(sources(parsed)) == 3  # the CT and its outlined copy, the photo alone
    assert "Covered (0) Nothing was covered." in parsed.words


def test_hostile_strings_come_out_as_text(tmp_path: Path) -> None:
    images = make_bundle(tmp_path, label=HOSTILE)
    images[1].facts = [DOM_PAYLOAD]
    images[1].covers = [Cover(FACE_COVER.box, HOSTILE)]
    page = review.page(images, tmp_path, title=HOSTILE, context=DOM_PAYLOAD)
    parsed = Parsed(page)
    assert HOSTILE not in page and DOM_PAYLOAD not in page
    assert "script" not in [tag for tag, _ in parsed.tags]
    assert [tag for tag, _ in parsed.tags].count("img") == 4
    assert not [name for _, attrs in parsed.tags for name in attrs if name.startswith("on")]
    assert parsed.words.count(HOSTILE) >= 4  # title, heading, table, cover
    assert parsed.words.count(DOM_PAYLOAD) == 2  # context, fact


def test_the_page_loads_nothing_from_anywhere(tmp_path: Path) -> None:
    page = review.page(make_bundle(tmp_path), tmp_path, context=CONTEXT)
    parsed = Parsed(page)
    text = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"https?:|//[a-z]", text, re.IGNORECASE)
    assert "url(" not in page and "@import" not in page
    links = [
        (tag, name, value or "")
        for tag, attrs in parsed.tags
        for name, value in attrs.items()
        if name in ("src", "href", "srcset", "action", "data", "poster")
    ]
    assert len(links) == 4 and all(
        tag == "img" and name == "src" and value.startswith("data:image/")
        for tag, name, value in links
    )
    assert not {"link", "script", "iframe", "object", "embed", "base", "a"} & {
        t for t, _ in parsed.tags
    }
    csp = [a["content"] for t, a in parsed.tags if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp == ["default-src 'none'; img-src data:; style-src 'unsafe-inline'"]
    assert str(tmp_path) not in page  # the bundle's folder is not named


def test_missing_outside_and_unreadable_files_get_a_note(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (tmp_path / "secret.png").write_bytes(encoded(ct_slice(), "PNG"))
    (bundle / "IMbroken.png").write_bytes(b"\x89PNG not really")
    images = [
        SharedImage(name="../secret.png", source="series", label="series 1"),
        SharedImage(name="IMgone.png", source="series", label="series 2"),
        SharedImage(name="IMbroken.png", source="photo", label="photo 1"),
    ]
    parsed = Parsed(review.page(images, bundle))
    assert "img" not in [tag for tag, _ in parsed.tags]
    assert "outside the bundle's folder" in parsed.words
    assert "the file is missing" in parsed.words
    assert "the file could not be read" in parsed.words


def test_write_review_replaces_the_page_at_once(tmp_path: Path) -> None:
    images = make_bundle(tmp_path)
    (tmp_path / "review.html").write_text("old", encoding="utf-8")
    path = review.write_review(images, tmp_path, CONTEXT)
    assert path == tmp_path / "review.html"
    text = path.read_text("utf-8")
    assert text.startswith("<!DOCTYPE html>") and "Body part: CHEST" in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]


# --- In a browser: what a person sees. ---


def test_browser_shows_the_bundle_and_runs_no_payload(browser: str, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    images = make_bundle(bundle, label=HOSTILE)
    images[1].facts = [DOM_PAYLOAD]
    page = review.page(images, bundle, context=CONTEXT)
    seen = dumped(browser, tmp_path / "review.html", page)
    assert f"TITLE={review.TITLE}" in seen.words
    assert review.NOT_FINDINGS in seen.words and HOSTILE in seen.words
    for cover in (NAME_COVER, DATE_COVER, FACE_COVER):
        assert cover.why in seen.words
    assert "data-pwned" not in next(attrs for tag, attrs in seen.tags if tag == "body")
    assert [tag for tag, _ in seen.tags].count("img") == 4


def test_screenshot_shows_the_images_and_their_outlines(browser: str, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    images = make_bundle(bundle)
    path = review.write_review(images, bundle, CONTEXT)
    shot = tmp_path / "shot.png"
    chromium(browser, path, f"--screenshot={shot}", "--window-size=1200,1800")
    shutil.copy(shot, SHOT)  # to look at
    seen = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    assert seen.std() > 20  # not blank
    # Each black cover shows twice: at full size in the image as sent, and at 360/512 or
    # 360/480 of it in the small copy, where it is outlined in red.
    black = (seen < 25).all(axis=2).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(black, connectivity=4)
    solid = sorted(
        (int(w), int(h))
        for _, _, w, h, area in stats[1:count]
        if area >= 0.97 * w * h and w * h >= 1000
    )
    for cover, scale in ((NAME_COVER, 360 / 512), (DATE_COVER, 360 / 512), (FACE_COVER, 0.75)):
        width, height = cover.box.width, cover.box.height
        assert any(abs(w - width) <= 2 and abs(h - height) <= 2 for w, h in solid), solid
        small = (width * scale, height * scale)
        assert any(abs(w - small[0]) <= 3 and abs(h - small[1]) <= 3 for w, h in solid), solid
    red = (seen[..., 0] > 180) & (seen[..., 1] < 100) & (seen[..., 2] < 100)
    assert red.sum() > 1000  # the outlines and their numbers
