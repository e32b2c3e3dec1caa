"""Upload-ready images: long side capped, format by content, byte cap met, no metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from deid import jpegmeta
from deid.errors import UsageError
from deid.phitext import Matcher
from deid.pngmeta import chunk_findings
from deid.share.encode import MIN_SIDE, encode, encoded_size, fit

MB = 1_000_000


def noisy_photo(width: int, height: int, seed: int = 3) -> np.ndarray:
    """Colour gradients under strong sensor noise: the worst case for a byte cap."""
    rng = np.random.default_rng(seed)
    x = np.arange(width, dtype=np.int16)[None, :] * 255 // width
    y = np.arange(height, dtype=np.int16)[:, None] * 255 // height
    base = np.stack(np.broadcast_arrays(x, y, (x + y) // 2), axis=-1)
    noise = rng.integers(-40, 41, base.shape, dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def grey_render(width: int = 1600, height: int = 2000, noise: int = 2) -> np.ndarray:
    """A radiograph as a viewer renders it: smooth grey anatomy, a little quantum noise."""
    rng = np.random.default_rng(5)
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    body = 120 + 70 * np.sin(x / 180) * np.cos(y / 240) - 40 * ((x - width / 2) / width) ** 2
    grain = rng.integers(-noise, noise + 1, body.shape, dtype=np.int16) if noise else 0
    return np.clip(np.rint(body) + grain, 0, 255).astype(np.uint8)


def screenshot() -> np.ndarray:
    """A phone screenshot: flat colours, bars and lines of text."""
    image = Image.new("RGB", (1170, 2532), (245, 245, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 1170, 180), fill=(30, 90, 200))
    font = ImageFont.load_default(size=36)
    for row in range(40):
        top = 220 + row * 56
        draw.text(
            (40, top), f"Result line {row}: haemoglobin 13.{row % 10} g/dL", (20, 20, 20), font
        )
        draw.rectangle((900, top + 8, 900 + 6 * row, top + 30), fill=(220, 60, 60))
    return np.asarray(image)


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def assert_bare(data: bytes, ext: str) -> None:
    """Nothing in the file but what its pixels need."""
    if ext == "png":
        assert chunk_findings(data, Matcher(None)) == []
        return
    assert jpegmeta.jpeg_findings(data, Matcher(None)) == []
    walked = jpegmeta.segments(data)
    assert walked is not None
    assert [s.name for s in walked if 0xE0 <= s.marker <= 0xEF or s.marker == 0xFE] == ["APP0"]
    assert b"Exif" not in data and b"ICC_PROFILE" not in data and b"http://ns.adobe" not in data


# --- fit ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((3000, 4000, 3), (1536, 2048, 3)),
        ((4000, 3000, 3), (2048, 1536, 3)),
        ((5000, 5000), (2048, 2048)),
        ((2048, 100), (2048, 100)),
        ((9000, 20, 3), (2048, 5, 3)),
    ],
)
def test_fit_caps_the_long_side(shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    image = np.full(shape, 77, dtype=np.uint8)
    out = fit(image)
    assert out.shape == expected and out.dtype == np.uint8
    assert int(out.min()) == int(out.max()) == 77  # a flat image stays flat: no ringing


def test_fit_never_enlarges() -> None:
    small = noisy_photo(300, 200)
    assert fit(small) is small
    assert fit(small, 300) is small
    assert fit(small, 150).shape == (100, 150, 3)


def test_fit_keeps_the_picture() -> None:
    image = grey_render(4000, 3000, noise=0)
    out = fit(image, 1000)
    assert out.shape == (750, 1000)
    expected = np.asarray(Image.fromarray(image).resize((1000, 750), Image.Resampling.BOX))
    assert np.abs(out.astype(int) - expected).mean() < 1.0


# --- encode ------------------------------------------------------------------------------


def test_noisy_photo_meets_the_cap_as_jpeg() -> None:
    data, ext = encode(noisy_photo(4000, 3000), MB, photo=True)
    assert ext == "jpg" and len(data) <= MB
    width, height = encoded_size(data)
    assert width * 3 == height * 4 or abs(width / height - 4 / 3) < 0.01  # aspect kept
    assert MIN_SIDE <= width < 4000
    assert decoded(data).mode == "RGB"
    assert_bare(data, ext)


def test_a_photo_that_fits_keeps_its_size_and_top_quality() -> None:
    image = noisy_photo(800, 600)
    data, ext = encode(image, 5 * MB, photo=True)
    assert ext == "jpg" and encoded_size(data) == (800, 600)
    out = io.BytesIO()
    Image.fromarray(image).save(out, "JPEG", quality=92, optimize=True, subsampling="4:2:0")
    assert data == out.getvalue()


def test_quality_steps_down_before_the_size_does() -> None:
    image = noisy_photo(1200, 900)
    best, _ = encode(image, 50 * MB, photo=True)
    data, ext = encode(image, int(len(best) * 0.8), photo=True)
    assert ext == "jpg" and len(data) <= len(best) * 0.8
    assert encoded_size(data) == (1200, 900)


def test_colourful_content_is_judged_a_photo_without_being_told() -> None:
    _, ext = encode(noisy_photo(1024, 768), 10 * MB, photo=False)
    assert ext == "jpg"


def test_grey_render_is_a_lossless_grey_png() -> None:
    image = grey_render()
    data, ext = encode(image, 8 * MB, photo=False)
    assert ext == "png" and len(data) <= 8 * MB
    out = decoded(data)
    assert out.mode == "L" and (np.asarray(out) == image).all()
    assert_bare(data, ext)


def test_grey_render_too_large_for_png_is_a_grey_jpeg() -> None:
    image = grey_render(noise=12)
    png, _ = encode(image, 50 * MB, photo=False)
    data, ext = encode(image, len(png) // 2, photo=False)
    assert ext == "jpg" and len(data) <= len(png) // 2
    assert decoded(data).mode == "L"
    assert_bare(data, ext)


def test_rgb_with_equal_channels_stays_grey() -> None:
    grey = grey_render(400, 300)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    for photo in (False, True):
        data, _ = encode(rgb, 10 * MB, photo=photo)
        assert decoded(data).mode == "L"


def test_screenshot_is_a_png() -> None:
    image = screenshot()
    data, ext = encode(fit(image), 4 * MB, photo=False)
    assert ext == "png" and len(data) <= 4 * MB
    assert (np.asarray(decoded(data)) == fit(image)).all()


def test_a_tight_cap_makes_the_image_smaller() -> None:
    image = grey_render(2000, 2000, noise=20)
    data, ext = encode(image, 100_000, photo=False)
    assert len(data) <= 100_000
    width, height = encoded_size(data)
    assert width == height and MIN_SIDE <= width < 2000
    assert_bare(data, ext)


def test_an_impossible_cap_is_a_clear_error() -> None:
    with pytest.raises(UsageError) as caught:
        encode(noisy_photo(1000, 800), 300, photo=True)
    assert "cannot fit an image in 300 bytes" in str(caught.value)
    with pytest.raises(UsageError):
        encode(noisy_photo(100, 80), 0, photo=True)


def test_wrong_images_are_refused() -> None:
    with pytest.raises(TypeError):
        encode(np.zeros((10, 10), dtype=np.uint16), MB, photo=True)
    with pytest.raises(TypeError):
        encode(np.zeros((10, 10, 4), dtype=np.uint8), MB, photo=True)
