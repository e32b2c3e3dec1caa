"""Burned-in text: found on real rendered images, covered, and gone when read again.

Every image here is drawn with Pillow onto a seeded, noisy, anatomy-like background,
and the proof of a redaction is that Tesseract no longer reads the text afterwards.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import anatomy, ct_slice
from PIL import Image, ImageDraw, ImageFont, ImageOps

from deid import text
from deid.boxes import Box
from deid.errors import ProfileError
from deid.ocr import Word, read_words
from deid.text import Region, TextPolicy, find_regions, redaction_boxes, second_look

MARKERS = TextPolicy(frozenset({"L", "R", "PA", "AP", "LAT"}))
NO_MARKERS = TextPolicy(frozenset())
PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def draw_text(
    image: np.ndarray, xy: tuple[int, int], words: str, size: int, fill: Any = 255
) -> np.ndarray:
    """Burn `words` into `image` (in place); returns the mask of every pixel they touch."""
    font = ImageFont.load_default(size=size)
    picture = Image.fromarray(image)
    ImageDraw.Draw(picture).text(xy, words, font=font, fill=fill)
    image[...] = np.asarray(picture)
    mask = Image.new("L", picture.size, 0)
    ImageDraw.Draw(mask).text(xy, words, font=font, fill=255)
    return np.asarray(mask) > 0


def blacked_out(image: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    out = image.copy()
    for b in boxes:
        out[b.top : b.bottom, b.left : b.right] = 0
    return out


def covered(shape: tuple[int, ...], regions: Sequence[Region]) -> np.ndarray:
    mask = np.zeros(shape[:2], dtype=bool)
    for b in redaction_boxes(regions):
        mask[b.top : b.bottom, b.left : b.right] = True
    return mask


def normalise(words: str) -> str:
    return "".join(ch for ch in words.upper() if not ch.isspace())


def read_both_ways(image: np.ndarray, **options: Any) -> tuple[set[str], str]:
    """What Tesseract reads in an image, in both polarities: each word, and all joined."""
    found = read_words(image, **options) + read_words(255 - image, **options)
    return {normalise(w.text) for w in found}, "".join(normalise(w.text) for w in found)


def read_back(image: np.ndarray, scale: float = 2.0) -> tuple[set[str], str]:
    """What Tesseract reads in the whole image."""
    return read_both_ways(image, scale=scale)


def read_spot(image: np.ndarray, mask: np.ndarray) -> tuple[set[str], str]:
    """The most favourable read of where the text was: its crop, contrast stretched."""
    ys, xs = np.nonzero(mask)
    top, left = max(0, ys.min() - 8), max(0, xs.min() - 8)
    crop = Image.fromarray(image[top : ys.max() + 9, left : xs.max() + 9])
    spot = np.asarray(ImageOps.autocontrast(crop.convert("L")))
    return read_both_ways(spot, psm=7, scale=3.0)


def readable(phrase: str, reading: tuple[set[str], str]) -> bool:
    """Whether any word of `phrase` is read, or the phrase run together."""
    words, joined = reading
    return normalise(phrase) in joined or any(part in words for part in phrase.split())


@dataclass
class Scan:
    image: np.ndarray
    masks: dict[str, np.ndarray]
    regions: list[Region]


PHI_TEXT = {
    "name": ("DOE JOHN", (10, 10), 14),
    "mrn": ("MRN4471923", (10, 30), 14),
    "date": ("2023-08-17", (330, 482), 14),
    "over-anatomy": ("SMITH ANNA", (200, 176), 16),
}


@pytest.fixture(scope="module")
def film() -> Scan:
    image = anatomy()
    masks = {key: draw_text(image, xy, words, size) for key, (words, xy, size) in PHI_TEXT.items()}
    return Scan(image, masks, find_regions(image, MARKERS))


@pytest.fixture(scope="module")
def large_film() -> Scan:
    image = anatomy(2500, 2000, seed=3)
    masks = {
        "name": draw_text(image, (40, 40), "DOE JOHN", 48),
        "mrn": draw_text(image, (40, 110), "MRN4471923", 48),
        "date": draw_text(image, (1500, 2400), "2023-08-17", 44),
        "marker": draw_text(image, (1850, 60), "R", 110),
    }
    return Scan(image, masks, find_regions(image, MARKERS))


@pytest.mark.parametrize("key", sorted(PHI_TEXT))
def test_every_pixel_of_each_word_is_covered(film: Scan, key: str) -> None:
    mask = film.masks[key]
    assert mask.sum() > 50
    assert covered(film.image.shape, film.regions)[mask].all()


def test_redacted_film_no_longer_reads(film: Scan) -> None:
    clean = blacked_out(film.image, redaction_boxes(film.regions))
    after = read_back(clean)
    for key, (words, _, _) in PHI_TEXT.items():
        assert readable(words, read_spot(film.image, film.masks[key]))  # the check can see it
        assert not readable(words, read_spot(clean, film.masks[key]))
        assert not readable(words, after)


def test_regions_carry_no_text(film: Scan) -> None:
    shown = repr(film.regions)
    for words, _, _ in PHI_TEXT.values():
        for part in words.split():
            assert part not in shown
    assert all(r.marker is None for r in film.regions if r.decision == "redact")


def test_anatomy_away_from_the_text_is_left_alone(film: Scan) -> None:
    body = np.s_[250:330, 150:350]
    assert not covered(film.image.shape, film.regions)[body].any()


@pytest.mark.parametrize("key", ["name", "mrn", "date"])
def test_large_film_words_are_covered(large_film: Scan, key: str) -> None:
    assert covered(large_film.image.shape, large_film.regions)[large_film.masks[key]].all()


def test_large_film_keeps_its_marker_and_reads_clean(large_film: Scan) -> None:
    kept = [r for r in large_film.regions if r.decision == "keep"]
    assert [r.marker for r in kept] == ["R"]
    assert not covered(large_film.image.shape, large_film.regions)[large_film.masks["marker"]].any()
    phrases = ("DOE JOHN", "MRN4471923", "2023-08-17")
    assert all(readable(p, read_back(large_film.image, 0.5)) for p in phrases)
    after = read_back(blacked_out(large_film.image, redaction_boxes(large_film.regions)), 0.5)
    assert not any(readable(p, after) for p in phrases)


@pytest.mark.parametrize(
    ("policy", "kept"),
    [(MARKERS, True), (NO_MARKERS, False), (TextPolicy(frozenset({" l "})), True)],
    ids=["allow-listed", "not-allow-listed", "allow-list-normalised"],
)
def test_lone_marker_kept_only_when_allow_listed(policy: TextPolicy, kept: bool) -> None:
    image = anatomy(seed=1)
    mask = draw_text(image, (462, 18), "L", 40)
    draw_text(image, (12, 12), "DOE JOHN", 14)
    regions = find_regions(image, policy)
    hidden = covered(image.shape, regions)[mask]
    if kept:
        assert not hidden.any()
        (marker,) = [r for r in regions if r.decision == "keep"]
        assert marker.marker == "L" and marker.reason == "allow-listed marker"
        ys, xs = np.nonzero(mask)
        assert marker.box.left <= xs.min() and marker.box.bottom > ys.max()
    else:
        assert hidden.all()
        assert all(r.decision == "redact" for r in regions)


def _grey_text() -> tuple[np.ndarray, np.ndarray]:
    image = anatomy(seed=2)
    return image, draw_text(image, (20, 440), "MRN4471923", 16, fill=150)


def _dark_on_bright() -> tuple[np.ndarray, np.ndarray]:
    image = anatomy(seed=4)
    image[0:40, :] = 235  # a light banner across the top
    return image, draw_text(image, (150, 10), "DOE JOHN 2023-08-17", 16, fill=10)


def _dark_over_anatomy() -> tuple[np.ndarray, np.ndarray]:
    image = anatomy(seed=5)
    return image, draw_text(image, (190, 300), "SMITH ANNA", 18, fill=30)


def _ultrasound_banner() -> tuple[np.ndarray, np.ndarray]:
    grey = anatomy(480, 640, seed=6)
    image = np.stack([grey // 2, grey // 2, grey // 2], axis=-1)
    image[60:400, 150:500, 0] = np.maximum(image[60:400, 150:500, 0], 90)  # doppler-ish tint
    image[0:36, :] = (20, 30, 90)  # a blue header bar
    return image, draw_text(image, (12, 8), "DOE JOHN  MRN4471923", 18, fill=(255, 230, 0))


def _blue_text_on_black() -> tuple[np.ndarray, np.ndarray]:
    image = np.stack([anatomy(seed=7) // 3] * 3, axis=-1)
    return image, draw_text(image, (40, 460), "2023-08-17", 18, fill=(40, 60, 255))


@pytest.mark.parametrize(
    "make",
    [_grey_text, _dark_on_bright, _dark_over_anatomy, _ultrasound_banner, _blue_text_on_black],
    ids=["grey", "dark-on-banner", "dark-over-anatomy", "yellow-ultrasound", "blue-on-black"],
)
def test_text_of_every_colour_is_covered(
    make: Callable[[], tuple[np.ndarray, np.ndarray]],
) -> None:
    image, mask = make()
    regions = find_regions(image, MARKERS)
    assert covered(image.shape, regions)[mask].all()
    assert all(r.decision == "redact" for r in regions)


@pytest.mark.parametrize(
    "image",
    [anatomy(seed=8), np.stack([anatomy(seed=9)] * 3, axis=-1), np.zeros((64, 64), np.uint8)],
    ids=["grey", "rgb", "blank"],
)
def test_text_free_image_has_no_regions(image: np.ndarray) -> None:
    assert find_regions(image, MARKERS) == []


@pytest.mark.parametrize(
    "image",
    [np.zeros((32, 32), np.float32), np.zeros((32, 32, 4), np.uint8)],
    ids=["float", "rgba"],
)
def test_only_display_images_are_accepted(image: np.ndarray) -> None:
    with pytest.raises(TypeError):
        find_regions(image, MARKERS)


# Decisions, with Tesseract replaced by fixed readings so each rule is seen alone.

W, H = 200, 100


def whole(policy: TextPolicy) -> TextPolicy:
    """The same policy on the whole-image engine, whose reads the fakes below replace."""
    return dataclasses.replace(policy, engine="whole-image")


def fake_ocr(monkeypatch: pytest.MonkeyPatch, words: list[Word]) -> None:
    """Make the sparse pass read `words` and every lone-glyph read find nothing."""
    monkeypatch.setattr(text, "read_words", lambda image, **kw: list(words))
    monkeypatch.setattr(text, "read_pages", lambda images, **kw: [[] for _ in images])


def inked(boxes: Sequence[Box]) -> np.ndarray:
    """A black image with a thin white stroke pattern in each box, so each reads as ink."""
    image = np.zeros((H, W), np.uint8)
    for b in boxes:
        image[b.top : b.bottom : 3, b.left : b.right] = 255
    return image


LEFT_WORD = Box(10, 10, 40, 22)
MARKER = Box(150, 40, 162, 60)
NEXT_TO_WORD = Box(44, 10, 56, 22)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([Word(MARKER, "L", 90)], [("keep", "allow-listed marker", "L")]),
        ([Word(MARKER, " l ", 90)], [("keep", "allow-listed marker", "L")]),
        ([Word(MARKER, "L.", 90)], [("redact", "text", None)]),
        ([Word(MARKER, "LEFT", 90)], [("redact", "text", None)]),
        ([Word(MARKER, "L", 40)], [("redact", "unreadable text", None)]),
        ([Word(LEFT_WORD, "DOE", 95)], [("redact", "text", None)]),
        ([Word(LEFT_WORD, "D0E", 20)], [("redact", "unreadable text", None)]),
        (
            [Word(LEFT_WORD, "DOE", 95), Word(NEXT_TO_WORD, "R", 95)],
            [("redact", "text", None)],
        ),
        (
            [Word(MARKER, "L", 90), Word(MARKER, "R", 90)],
            [("redact", "text", None)],
        ),
        (
            [Word(MARKER, "L", 90), Word(MARKER, "L", 80)],
            [("keep", "allow-listed marker", "L")],
        ),
        ([Word(LEFT_WORD, "---", 95)], []),
    ],
    ids=[
        "marker-kept",
        "marker-normalised",
        "punctuated-marker-covered",
        "longer-word-covered",
        "unsure-marker-covered",
        "word-covered",
        "unsure-word-covered",
        "marker-touching-a-word-covered",
        "passes-disagree-covered",
        "passes-agree-one-marker",
        "punctuation-ignored",
    ],
)
def test_decision_rules(
    monkeypatch: pytest.MonkeyPatch,
    words: list[Word],
    expected: list[tuple[str, str, str | None]],
) -> None:
    fake_ocr(monkeypatch, words)
    regions = find_regions(inked([w.box for w in words]), whole(MARKERS))
    assert [(r.decision, r.reason, r.marker) for r in regions] == expected


def test_words_without_ink_are_texture(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_ocr(monkeypatch, [Word(LEFT_WORD, "DOE", 95), Word(MARKER, "L", 95)])
    assert find_regions(np.full((H, W), 90, np.uint8), whole(MARKERS)) == []


def test_covers_are_padded_and_merged(monkeypatch: pytest.MonkeyPatch) -> None:
    words = [Word(LEFT_WORD, "DOE", 95), Word(NEXT_TO_WORD, "JO", 95), Word(MARKER, "X", 95)]
    fake_ocr(monkeypatch, words)
    regions = find_regions(inked([w.box for w in words]), whole(TextPolicy(frozenset(), padding=6)))
    boxes = sorted(redaction_boxes(regions))
    assert boxes == [Box(4, 4, 62, 28), Box(144, 34, 168, 66)]


def test_padding_grows_with_text_height(monkeypatch: pytest.MonkeyPatch) -> None:
    tall = Box(50, 20, 110, 60)
    fake_ocr(monkeypatch, [Word(tall, "MRN", 95)])
    (region,) = find_regions(inked([tall]), whole(TextPolicy(frozenset(), padding=2)))
    assert region.box == Box(40, 10, 120, 70)


def test_redaction_boxes_skips_kept_markers() -> None:
    regions = [
        Region(Box(0, 0, 5, 5), "redact", "text"),
        Region(Box(9, 9, 12, 12), "keep", "allow-listed marker", "L"),
        Region(Box(20, 20, 25, 25), "redact", "unreadable text"),
    ]
    assert redaction_boxes(regions) == [Box(0, 0, 5, 5), Box(20, 20, 25, 25)]


# The profile's [text] table.


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({}, TextPolicy(frozenset())),
        (
            {"allow_list": ["l", " PA "], "padding": 2, "min_confidence": 75, "policy": "all-text"},
            TextPolicy(frozenset({"L", "PA"}), 2, 75.0),
        ),
        ({"min_confidence": 50.5, "detect": "always"}, TextPolicy(frozenset(), 4, 50.5)),
        (
            {"policy": "phi-only", "engine": "whole-image"},
            TextPolicy(frozenset(), mode="phi-only", engine="whole-image"),
        ),
    ],
    ids=["defaults", "all-keys", "other-keys-ignored", "policy-and-engine"],
)
def test_policy_from_profile(section: dict[str, Any], expected: TextPolicy) -> None:
    assert TextPolicy.from_profile(section) == expected


@pytest.mark.parametrize(
    "section",
    [
        {"allow_list": "L"},
        {"allow_list": ["L", 1]},
        {"padding": -1},
        {"padding": 2.5},
        {"padding": True},
        {"min_confidence": "high"},
        {"min_confidence": 101},
        {"policy": "names-only"},
        {"engine": "magic"},
    ],
)
def test_bad_text_section_is_a_profile_error(section: dict[str, Any]) -> None:
    with pytest.raises(ProfileError):
        TextPolicy.from_profile(section)


def test_builtin_profile_allows_the_usual_markers() -> None:
    path = PROFILES / "safe-harbor.toml"
    if not path.exists():
        pytest.skip("no built-in profile in this checkout")
    section = tomllib.loads(path.read_text())["text"]
    policy = TextPolicy.from_profile(section)
    assert {"L", "R", "PA", "AP", "LAT"} <= policy.allow_list
    assert policy.mode == "all-text" and policy.min_confidence >= 50


# The phi-only policy: header values matched fuzzily, patterns from the data file.

HEADER = {
    "DOE^JOHN": "patient name",
    "DOE": "patient name",
    "JOHN": "patient name",
    "4471923": "patient ID",
    "19610412": "birth date",
    "ST MARY HOSPITAL": "institution",
}
PHI_ONLY = TextPolicy(frozenset({"L", "R"}), mode="phi-only")


@pytest.fixture(scope="module")
def phi_film() -> Scan:
    image = anatomy(seed=20)
    masks = {
        "fuzzy-name": draw_text(image, (12, 12), "D0E JOHN", 16),
        "date": draw_text(image, (300, 470), "2023-08-17", 16),
        "unrelated": draw_text(image, (12, 470), "120 kV 250 mAs", 16),
    }
    return Scan(image, masks, find_regions(image, PHI_ONLY, phi=HEADER))


@pytest.mark.parametrize(
    ("key", "hidden"), [("fuzzy-name", True), ("date", True), ("unrelated", False)]
)
def test_phi_only_covers_phi_and_keeps_other_text(phi_film: Scan, key: str, hidden: bool) -> None:
    mask = phi_film.masks[key]
    hit = covered(phi_film.image.shape, phi_film.regions)[mask]
    assert hit.all() if hidden else not hit.any()


def test_phi_only_reasons_name_the_kind_never_the_text(phi_film: Scan) -> None:
    reasons = {r.reason for r in phi_film.regions if r.decision == "redact"}
    assert "PHI match: patient name" in reasons
    assert "pattern: date" in reasons
    shown = repr(phi_film.regions)
    for secret in ("DOE", "JOHN", "D0E", "2023"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("words", "reason"),
    [
        (["D0E", "JOHN"], "PHI match: patient name"),
        (["John", "Doe"], "PHI match: patient name"),
        (["DOE,", "J0HN"], "PHI match: patient name"),
        (["ID:", "447I923"], "PHI match: patient ID"),
        (["DOB", "04/12/1961"], "PHI match: birth date"),
        (["12-APR-1961"], "PHI match: birth date"),
        (["ST", "MARV", "HOSPITAL"], "PHI match: institution"),
        (["2023-08-17"], "pattern: date"),
        (["14:32:07"], "pattern: time"),
        (["555-123-4567"], "pattern: phone"),
        (["jdoe@example.org"], "pattern: e-mail"),
        (["123-45-6789"], "pattern: SSN"),
        (["MRN", "88812345"], "pattern: record number"),
        (["120", "kV", "250", "mAs"], None),
        (["W", "400", "L", "40"], None),
        (["DOES"], None),
    ],
)
def test_phi_matching(words: list[str], reason: str | None) -> None:
    assert text._Matcher.build(HEADER).match(words) == reason


# Second look: what a too-small cover leaves readable is found again.


def test_second_look_catches_a_too_small_box() -> None:
    image = anatomy(seed=21)
    mask = draw_text(image, (60, 40), "SMITH ANNA 4471923", 18)
    ys, xs = np.nonzero(mask)
    left = int(xs.min())
    short = Box(left - 2, int(ys.min()) - 2, left + (int(xs.max()) - left) // 3, int(ys.max()) + 3)
    regions = [Region(short, "redact", "text")]
    after = blacked_out(image, [short])
    extra = second_look(after, regions, TextPolicy(frozenset()))
    assert extra and all(r.decision == "redact" for r in extra)
    grown = covered(image.shape, regions + extra)
    assert grown[mask].all()
    assert not second_look(
        blacked_out(image, redaction_boxes(regions + extra)),
        regions + extra,
        TextPolicy(frozenset()),
    )


def test_second_look_without_covers_reads_nothing() -> None:
    assert second_look(anatomy(seed=22), [], TextPolicy(frozenset())) == []


@pytest.mark.parametrize("xy", [(310, 110), (325, 125), (340, 125), (355, 125)])
def test_text_crossing_a_clipped_ring_is_covered_whole(xy: tuple[int, int]) -> None:
    # Letters over the white ring are lost in it; the cover runs on through the band,
    # so every pixel the words were drawn on is covered, seen or not.
    image = ct_slice()
    mask = draw_text(image, xy, "DOE 15:09:06", 14)
    assert covered(image.shape, find_regions(image, NO_MARKERS))[mask].all()


def test_a_clipped_ring_alone_is_not_text() -> None:
    assert find_regions(ct_slice(), NO_MARKERS) == []


@pytest.mark.parametrize("allowed", [True, False], ids=["allow-listed", "not-allow-listed"])
def test_marker_crossed_by_a_clipped_ring_is_read_whole(allowed: bool) -> None:
    # The ring hides the I: the top-hat view reads "SUP NE"; the levelled view, where
    # the band shows as the bar it looks like, reads the marker exactly.
    image = ct_slice()
    mask = draw_text(image, (324, 125), "SUPINE", 18)
    policy = TextPolicy(frozenset({"SUPINE" if allowed else "ERECT"}))
    regions = find_regions(image, policy)
    hidden = covered(image.shape, regions)[mask]
    if allowed:
        assert not hidden.any()
        assert [r.marker for r in regions] == ["SUPINE"]
    else:
        assert hidden.all()


def test_a_line_running_into_a_band_is_carried_through_it() -> None:
    band = np.zeros((40, 200), dtype=bool)
    band[:, 120:130] = True
    bands = (Box(0, 0, 200, 40), band)
    line = Box(20, 10, 118, 24)
    assert text._through_band(line, 14, bands) == Box(20, 10, 137, 24)
    assert text._through_band(Box(20, 10, 100, 24), 14, bands) == Box(20, 10, 100, 24)
    assert text._through_band(line, 14, None) == line


def test_pieces_of_a_word_cut_up_by_a_clipped_ring_are_covered() -> None:
    # The ring runs along the word: what shows of it are pieces scoring too low for a
    # line. Pieces beside a band are read and, read as nothing sure, covered.
    image = ct_slice()
    before = image.copy()
    mask = draw_text(image, (324, 110), "ERECT", 18)
    shown = mask & (np.abs(image.astype(np.int16) - before) >= 20)
    assert shown.sum() > 150
    assert covered(image.shape, find_regions(image, NO_MARKERS))[shown].all()
