"""What a text line says: PP-OCR's line recogniser, in process, batched.

Each line box is cropped, scaled to the network's 48 px height and read by greedy CTC
decoding; every character comes with the network's probability, so a caller can tell
a confident read from a guess. The recogniser's alphabet ships inside the model file.

What is read is burned-in text, often identifying: `Reading.text` never leaves the
text search (regions carry reasons, never readings).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import cv2
import numpy as np

from deid.boxes import Box
from deid.text.detect import load_session

MODEL = "PP-OCRv6_rec_small.onnx"
_HEIGHT = 48  # px: the recogniser's input height
_MAX_WIDTH = 1600  # px after scaling: longer crops are read in pieces
_THREADED_PIXELS = 1 << 20  # lines of images this large are read on two threads


@dataclass(frozen=True)
class Reading:
    """A line as read: its text and one probability per character (same length)."""

    text: str
    confidences: tuple[float, ...]

    @property
    def confidence(self) -> float:
        """The mean probability of the letters and digits read (of all characters when
        there are none; 0 when nothing was read)."""
        values = [c for ch, c in zip(self.text, self.confidences, strict=True) if ch.isalnum()]
        values = values or list(self.confidences)
        return float(np.mean(values)) if values else 0.0

    @property
    def least(self) -> float:
        """The probability of the least certain letter or digit (1 when there is none)."""
        values = [c for ch, c in zip(self.text, self.confidences, strict=True) if ch.isalnum()]
        return min(values) if values else 1.0

    @property
    def alnum(self) -> int:
        return sum(ch.isalnum() for ch in self.text)


def read_lines(image: np.ndarray, boxes: Sequence[Box]) -> list[Reading]:
    """Read the text in each box of a uint8 grey or RGB image, in order.

    Each line is read on its own: padding lines to a common width costs more than
    the calls it saves. Lines of a large image are read on two threads.
    """
    crops = [_crop(image, box) for box in boxes]
    if len(crops) > 1 and image.shape[0] * image.shape[1] >= _THREADED_PIXELS:
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(_read_one, crops))
    return [_read_one(crop) for crop in crops]


def _crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The box's pixels as RGB scaled to the recogniser's height."""
    part = image[box.top : box.bottom, box.left : box.right]
    if part.ndim == 2:
        part = cv2.cvtColor(np.ascontiguousarray(part), cv2.COLOR_GRAY2RGB)
    height, width = part.shape[:2]
    new_width = max(8, min(_MAX_WIDTH, round(width * _HEIGHT / max(1, height))))
    return cv2.resize(part, (new_width, _HEIGHT), interpolation=cv2.INTER_LINEAR)


def _read_one(crop: np.ndarray) -> Reading:
    batch = (crop.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
    session, alphabet = _recogniser()
    probabilities = session.run(None, {session.get_inputs()[0].name: batch})[0]
    return _decode(probabilities[0], alphabet)


def _decode(probabilities: np.ndarray, alphabet: Sequence[str]) -> Reading:
    """Greedy CTC: the likeliest symbol per step, repeats merged, blanks (0) dropped."""
    best = probabilities.argmax(axis=1)
    chars: list[str] = []
    confidences: list[float] = []
    previous = 0
    for step, index in enumerate(best):
        if index != previous and index != 0 and index < len(alphabet):
            chars.append(alphabet[index])
            confidences.append(float(probabilities[step, index]))
        previous = int(index)
    return Reading("".join(chars), tuple(confidences))


@cache
def _recogniser() -> tuple[Any, tuple[str, ...]]:
    session = load_session(MODEL, 1)
    characters = session.get_modelmeta().custom_metadata_map.get("character", "")
    return session, ("", *characters.splitlines(), " ")
