"""Seconds from inputs to a `deid share` bundle, beside floors timed in the same run.

- a 300-slice CT chest folder (512x512, full PHI headers) to a bundle, as a user runs
  it (`deid share FOLDER`, in a new process, text search, final check and all), against
  the floors "read every header" and "render and write one PNG";
- a 12-megapixel phone photo (4000x3000 JPEG with EXIF, a face and a printed name) to a
  bundle, against the floor "decode the JPEG and encode it again";
- faces found per image by `deid.faces` on scikit-image's sample photos with faces,
  composites of a face at several sizes and angles (found/expected), and images with no
  face: the other sample photos and real scans (`../shared/real-negatives/` when present,
  pydicom's bundled images), target 0.

Each figure is the median of `--rounds` runs, each floor timed in the same rounds.
Run: python benchmarks/share.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from real_negatives import real_images
from test_share_photos import phone_jpeg
from throughput import make_corpus

from deid import pixels
from deid.faces import find_faces
from deid.output import png_bytes

DEID = str(Path(sys.executable).with_name("deid"))


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def share_run(inputs: Path, out: Path) -> None:
    done = subprocess.run([DEID, "share", str(inputs), "--out", str(out), "-q"], check=False)
    if done.returncode != 0:
        raise SystemExit(f"deid share exited {done.returncode}")


def read_headers(paths: list[Path]) -> None:
    for path in paths:
        dcmread(path, stop_before_pixels=True)


def one_png(path: Path) -> None:
    ds = dcmread(path)
    png_bytes(pixels.render(ds, ds.pixel_array))


def phone_photo(path: Path) -> Path:
    """4000x3000: a face, a name on a card, texture; EXIF, GPS, XMP and the rest."""
    skimage_data = __import__("skimage.data", fromlist=["astronaut"])
    rng = np.random.default_rng(7)
    wall = rng.normal(150, 20, (3000, 4000, 3)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(wall)
    face = Image.fromarray(skimage_data.astronaut()).crop((150, 20, 300, 210))
    image.paste(face.resize((600, 760)), (1700, 400))
    draw = ImageDraw.Draw(image)
    draw.rectangle((1500, 1300, 2600, 1500), fill=(250, 250, 250))
    draw.text((1540, 1330), "JANE DOE", fill=(10, 10, 10), font=ImageFont.load_default(size=120))
    return phone_jpeg(path, np.asarray(image))


def reencode(path: Path) -> None:
    with Image.open(path) as opened:
        opened.convert("RGB").save(path.with_suffix(".floor.jpg"), quality=90)


def faces_table() -> None:
    skimage_data = __import__("skimage.data", fromlist=["astronaut"])
    print("faces found per image (sample photos):")
    for name, expected in (("astronaut", 1), ("camera", 1)):
        image = getattr(skimage_data, name)()
        print(f"  {name:<12} {len(find_faces(image))} found, {expected} expected")
    face = Image.fromarray(skimage_data.astronaut()).crop((150, 20, 300, 210))
    rng = np.random.default_rng(1)
    backdrop = rng.normal(140, 25, (1500, 2000, 3)).clip(0, 255).astype(np.uint8)
    found = total = 0
    for width in (60, 120, 240, 480):
        for angle in (0, 30, 90, 180, 270):
            canvas = Image.fromarray(backdrop)
            tile = face.resize((width, int(width * 1.27))).rotate(angle, expand=True)
            canvas.paste(tile, (700, 400))
            found += bool(find_faces(np.asarray(canvas)))
            total += 1
    print(f"  composites (4 sizes x 5 angles on 2000x1500): {found}/{total} found")
    false = 0
    others = ("coffee", "chelsea", "rocket", "coins", "hubble_deep_field", "text", "page")
    for name in others:
        false += bool(find_faces(np.asarray(getattr(skimage_data, name)())))
    print(f"  sample photos without a face: {false} of {len(others)} with a face found")
    scans = real_images()
    flagged = 0
    for path in scans:
        try:
            ds = dcmread(path)
            frame = ds.pixel_array if int(ds.get("NumberOfFrames", 1) or 1) == 1 else None
            if frame is None or frame.ndim not in (2, 3):
                continue
            flagged += bool(find_faces(pixels.render(ds, frame)))
        except Exception:  # a sample pydicom cannot decode here says nothing about faces
            continue
    print(f"  real scans: {flagged} of {len(scans)} with a face found (target 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ct = make_corpus(root / "ct", args.slices)
        photo = phone_photo(root / "IMG_0001.jpg")
        rows: dict[str, list[float]] = {k: [] for k in ("ct", "headers", "png", "photo", "jpeg")}
        for n in range(args.rounds):
            rows["headers"].append(seconds(lambda: read_headers(ct)))
            rows["png"].append(seconds(lambda: one_png(ct[len(ct) // 2])))
            rows["ct"].append(seconds(lambda n=n: share_run(root / "ct", root / f"b{n}")))
            rows["jpeg"].append(seconds(lambda: reencode(photo)))
            rows["photo"].append(seconds(lambda n=n: share_run(photo, root / f"p{n}")))
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(f"CT folder of {args.slices} slices -> bundle: {med['ct']:.1f} s")
        ratio = med["ct"] / med["headers"]
        print(f"  floor, read every header: {med['headers']:.2f} s ({ratio:.0f}x)")
        print(f"  floor, render + PNG of one slice: {med['png']:.3f} s")
        print(f"12-MP phone photo -> bundle: {med['photo']:.1f} s")
        ratio = med["photo"] / med["jpeg"]
        print(f"  floor, decode + re-encode the JPEG: {med['jpeg']:.2f} s ({ratio:.0f}x)")
    faces_table()


if __name__ == "__main__":
    main()
