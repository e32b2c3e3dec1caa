"""The run report: one self-contained HTML page from an output folder's manifest.

A study team needs to see what a run did (totals, where pixels were covered, which
attribute got which action, what failed and why) without opening outputs one by one,
and must be able to pass the page on. So the page is built only from the manifest (which
holds actions and reasons, never values) and from the outputs (already de-identified);
every string is escaped; and nothing is loaded from anywhere: styles are inline,
thumbnails are data: URIs, and a Content-Security-Policy forbids scripts and requests.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from deid import __version__, pixels, reader
from deid.errors import DeidError, UsageError
from deid.manifest import Manifest, RunInfo
from deid.record import BoxRecord, FileRecord
from deid.stages import STAGES

__all__ = [
    "DEFAULT_LIMIT",
    "THUMB_SIZE",
    "Html",
    "StageTime",
    "Summary",
    "Thumbnail",
    "build",
    "escape",
    "page",
]

DEFAULT_LIMIT = 200
THUMB_SIZE = 256
OUTLINE = (255, 48, 48)
_OUTLINE_WIDTH = 2
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_FRAME_SUFFIX = re.compile(r"-f([0-9]{4,})\.png$", re.IGNORECASE)
_STATUSES = ("written", "skipped", "failed", "duplicate")

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d1d1f;background:#fafafa}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0;max-width:100%}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;
word-break:break-word}
th{background:#eee;white-space:nowrap}td.n{text-align:right}
.totals span{display:inline-block;margin-right:18px;font-size:16px}
.file{background:#fff;border:1px solid #ddd;padding:8px 12px;margin:10px 0}
.file h3{font-size:15px;margin:2px 0}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;max-width:260px}figure img{display:block;border:1px solid #999}
figcaption{font-size:12px;word-break:break-all}.note{color:#a33}
code{word-break:break-all}
"""


class Html(str):
    """Markup built here: passed through `escape` unchanged. Everything else is escaped."""


def escape(value: object) -> str:
    """`value` as HTML text: markup built as `Html` unchanged, anything else escaped."""
    return value if isinstance(value, Html) else html.escape(str(value), quote=True)


_Html, _esc = Html, escape


@dataclass(frozen=True)
class StageTime:
    """Seconds one stage took, over the files that ran it."""

    stage: str
    files: int
    total: float
    median: float


@dataclass(frozen=True)
class Thumbnail:
    """One output image as shown: a data: URI (empty when it could not be drawn)."""

    output: str
    frame: int | None
    image: str
    boxes: int
    note: str = ""


@dataclass
class Summary:
    """The counts of a whole run: every record counts, shown in detail or not."""

    statuses: Counter[str] = field(default_factory=Counter)
    objects: Counter[str] = field(default_factory=Counter)
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    box_reasons: Counter[str] = field(default_factory=Counter)
    boxes: int = 0
    stages: list[StageTime] = field(default_factory=list)

    @classmethod
    def of(cls, records: Iterable[FileRecord]) -> Summary:
        summary = cls()
        times: dict[str, list[float]] = {}
        for record in records:
            summary.statuses[record.status] += 1
            if record.object:
                summary.objects[record.object] += 1
            summary.actions.update({(a.path, a.action) for a in record.actions})
            summary.box_reasons.update(b.reason for b in record.boxes)
            summary.boxes += len(record.boxes)
            for stage, seconds in record.seconds.items():
                times.setdefault(stage, []).append(seconds)
        order = {stage.name: i for i, stage in enumerate(STAGES)}
        summary.stages = [
            StageTime(stage, len(values), sum(values), statistics.median(values))
            for stage, values in sorted(times.items(), key=lambda kv: order.get(kv[0], 99))
        ]
        return summary


def build(
    out_dir: Path, *, limit: int = DEFAULT_LIMIT, size: int = THUMB_SIZE, frame: str = "middle"
) -> str:
    """The report page of the run in `out_dir`; raises `UsageError` when it has no manifest."""
    with Manifest.read(out_dir) as manifest:
        info = manifest.info
        records = list(manifest.records())
        sessions = manifest.sessions()
    return page(info, records, out_dir, sessions=sessions, limit=limit, size=size, frame=frame)


def page(
    info: RunInfo,
    records: Sequence[FileRecord],
    out_dir: Path,
    *,
    sessions: Sequence[tuple[float, float | None, str, int, str | None]] = (),
    limit: int = DEFAULT_LIMIT,
    size: int = THUMB_SIZE,
    frame: str = "middle",
) -> str:
    """One HTML page: run facts, totals, failures, duplicates, images, actions.

    At most `limit` written files are shown one by one, with at most `limit` thumbnails
    (long side `size` px) in all; the page says how many were left out. A DICOM-only
    output is shown by its `frame` ("middle", "all" meaning the first, or a number).
    """
    summary = Summary.of(records)
    parts = [
        _run_section(info, sessions),
        _totals_section(summary, len(records)),
        _failures_section([r for r in records if r.status == "failed"]),
        _duplicates_section([r for r in records if r.status == "duplicate"]),
        _skipped_section([r for r in records if r.status == "skipped"]),
        _files_section([r for r in records if r.status == "written"], out_dir, limit, size, frame),
        _actions_section(summary),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>deid report</title><style>{_STYLE}</style></head>\n<body>\n"
        "<h1>deid report</h1>\n"
        "<p>Built from the run's manifest and its de-identified outputs only: it holds "
        "no original value and no key.</p>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: int = 0) -> str:
    """A table of escaped cells; the last `numeric` columns are right-aligned."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = [
            f'<td class="n">{_esc(c)}</td>' if i >= len(row) - numeric else f"<td>{_esc(c)}</td>"
            for i, c in enumerate(row)
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _count(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _short(name: str) -> str:
    """The first characters of an input id or digest: enough to tell inputs apart."""
    return name.split(":", 1)[-1][:12]


def _label(record: FileRecord) -> str:
    return _short(record.input_id or record.digest) or "-"


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _run_section(
    info: RunInfo, sessions: Sequence[tuple[float, float | None, str, int, str | None]]
) -> str:
    facts = [
        ("deid version of the run", info.version or "unknown"),
        ("deid version of this report", __version__),
        ("profile", info.profile),
        ("profile digest", _Html(f"<code>{_esc(info.profile_digest)}</code>")),
        ("key id", f"{info.key_id} ({info.key_kind} key; the key itself is never stored)"),
    ]
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in facts)
    text = f"<h2>Run</h2>\n<table>{rows}</table>"
    if sessions:
        text += "\n" + _table(
            ("session started", "ended", "version", "inputs", "outcome"),
            [(_when(s), _when(e), v, n, o or "-") for s, e, v, n, o in sessions],
        )
    return text


def _totals_section(summary: Summary, inputs: int) -> str:
    counts = summary.statuses
    spans = [f"<span><b>{inputs}</b> input{'' if inputs == 1 else 's'}</span>"] + [
        f"<span><b>{counts[s]}</b> {s}{'s' if s == 'duplicate' and counts[s] != 1 else ''}</span>"
        for s in _STATUSES
    ]
    others = sum(n for s, n in counts.items() if s not in _STATUSES)
    if others:
        spans.append(f"<span><b>{others}</b> unfinished</span>")
    text = (
        f'<h2>Totals</h2>\n<p class="totals">{"".join(spans)}</p>\n'
        f"<p>{_count(summary.boxes, 'box', 'boxes')} covered, "
        f"{_count(len(summary.actions), 'distinct attribute action')}.</p>"
    )
    if summary.objects:
        text += "\n" + _table(("object", "files"), summary.objects.most_common(), numeric=1)
    if summary.stages:
        rows = [(t.stage, t.files, f"{t.total:.2f}", f"{t.median:.3f}") for t in summary.stages]
        text += "\n" + _table(("stage", "files", "seconds, sum", "seconds, median"), rows, 3)
    if summary.box_reasons:
        rows2 = summary.box_reasons.most_common()
        text += "\n" + _table(("why a box was covered", "boxes"), rows2, numeric=1)
    return text


def _failures_section(failed: Sequence[FileRecord]) -> str:
    if not failed:
        return "<h2>Failures</h2>\n<p>None.</p>"
    rows = [(_label(r), r.kind or "-", r.object or "-", r.exit_code, r.reason) for r in failed]
    return f"<h2>Failures ({len(failed)})</h2>\n" + _table(
        ("input", "kind", "object", "exit code", "reason"), rows
    )


def _duplicates_section(duplicates: Sequence[FileRecord]) -> str:
    if not duplicates:
        return "<h2>Duplicates</h2>\n<p>None.</p>"
    rows = [(_label(r), _short(r.duplicate_of) or "-", r.reason) for r in duplicates]
    return f"<h2>Duplicates ({len(duplicates)})</h2>\n" + _table(
        ("input", "same content as", "note"), rows
    )


def _skipped_section(skipped: Sequence[FileRecord]) -> str:
    if not skipped:
        return ""
    reasons = Counter(r.reason or r.kind or "-" for r in skipped)
    return f"<h2>Skipped ({len(skipped)})</h2>\n" + _table(
        ("reason", "files"), reasons.most_common(), numeric=1
    )


def _files_section(
    written: Sequence[FileRecord], out_dir: Path, limit: int, size: int, frame: str
) -> str:
    cards: list[str] = []
    budget = max(0, limit)
    shown_images = total_images = 0
    for index, record in enumerate(written):
        images = _image_outputs(record)
        total_images += len(images)
        if index >= limit:
            continue
        thumbs = thumbnails(record, out_dir, size=size, frame=frame, limit=budget - shown_images)
        shown_images += len(thumbs)
        cards.append(_card(record, thumbs))
    text = f"<h2>Written files ({len(written)})</h2>"
    left_files = max(0, len(written) - limit)
    if left_files or shown_images < total_images:
        text += (
            f'\n<p class="note">Showing {len(cards)} of {len(written)} files and '
            f"{shown_images} of {total_images} images; {left_files} files left out here are "
            "still in every count and table.</p>"
        )
    return text + "\n" + "\n".join(cards)


def _card(record: FileRecord, thumbs: Sequence[Thumbnail]) -> str:
    figures = "".join(_figure(t) for t in thumbs)
    outputs = ", ".join(f"<code>{_esc(o)}</code>" for o in record.outputs)
    actions = _table(("attribute", "action"), [(a.path, a.action) for a in record.actions])
    boxes = _table(
        ("frame", "left", "top", "right", "bottom", "reason"),
        [
            ("all" if b.frame is None else b.frame + 1, b.left, b.top, b.right, b.bottom, b.reason)
            for b in record.boxes
        ],
    )
    return (
        f'<div class="file"><h3>{_esc(record.object or "DICOM")} · '
        f"<code>{_esc(_label(record))}</code></h3>"
        f"<p>{_count(record.frames, 'frame')}, {_count(len(record.actions), 'attribute')} "
        f"changed, {_count(len(record.boxes), 'box', 'boxes')} covered. "
        f"Outputs: {outputs or 'none'}</p>"
        f'<div class="thumbs">{figures}</div>'
        f"<details><summary>Attributes changed ({len(record.actions)})</summary>{actions}"
        "</details>"
        f"<details><summary>Boxes covered ({len(record.boxes)})</summary>{boxes}</details>"
        "</div>"
    )


def _figure(thumb: Thumbnail) -> str:
    where = "" if thumb.frame is None else f", frame {thumb.frame + 1}"
    caption = f"<code>{_esc(thumb.output)}</code>{_esc(where)}, "
    caption += _count(thumb.boxes, "box", "boxes")
    if thumb.note:
        caption += f'<br><span class="note">{_esc(thumb.note)}</span>'
    img = f'<img src="{thumb.image}" alt="output image">' if thumb.image else ""
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def _actions_section(summary: Summary) -> str:
    rows = sorted((path, action, n) for (path, action), n in summary.actions.items())
    if not rows:
        return "<h2>Actions per attribute</h2>\n<p>None recorded.</p>"
    return "<h2>Actions per attribute</h2>\n" + _table(("attribute", "action", "files"), rows, 1)


def _image_outputs(record: FileRecord) -> list[str]:
    """The outputs shown as pictures: every PNG, or else the DICOM output."""
    pngs = [o for o in record.outputs if o.lower().endswith(".png")]
    if pngs:
        return pngs
    return [o for o in record.outputs if o.lower().endswith(".dcm")][:1]


def thumbnails(
    record: FileRecord,
    out_dir: Path,
    *,
    size: int = THUMB_SIZE,
    frame: str = "middle",
    limit: int = DEFAULT_LIMIT,
) -> list[Thumbnail]:
    """The record's output images, small, with their covered boxes outlined.

    PNG outputs are shown as written (frame from the `-fNNNN` name); when a PNG was
    downsized by a size cap, the boxes (in pixels of the rendered frame, which is Rows x
    Columns) are scaled to it. Without a PNG, the DICOM output's `frame` is rendered.
    A file that cannot be read gets a note instead of a picture.
    """
    shown: list[Thumbnail] = []
    names = _image_outputs(record)[: max(0, limit)]
    dicoms = [o for o in record.outputs if o.lower().endswith(".dcm")]
    geometry: tuple[int, int] | None = None
    if dicoms and any(name.lower().endswith(".png") for name in names):
        geometry = _frame_size(out_dir, dicoms[0])  # only PNG boxes need it
    for name in names:
        try:
            path = inside(out_dir, name)
            if name.lower().endswith(".png"):
                shown.append(_png_thumbnail(record, name, path, geometry, size))
            else:
                shown.append(_dicom_thumbnail(record, name, path, frame, size))
        except (DeidError, OSError, ValueError) as exc:
            shown.append(Thumbnail(name, None, "", 0, f"not shown: {_reason(exc)}"))
    return shown


def _reason(exc: Exception) -> str:
    return exc.message if isinstance(exc, DeidError) else type(exc).__name__


def inside(
    folder: Path, name: str, outside: str = "the manifest names a file outside the output folder"
) -> Path:
    """The path of a file a record names, refused (`outside`) when the name leads out of
    `folder`, or when no file is there: a page shows only what its own folder holds."""
    root = folder.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise UsageError(outside)
    if not path.is_file():
        raise UsageError("the file is missing")
    return path


def _frame_size(out_dir: Path, name: str) -> tuple[int, int] | None:
    """(rows, columns) of the DICOM output: the size boxes are measured in."""
    try:
        ds = reader.read(inside(out_dir, name), stop_before_pixels=True)
        return int(ds.Rows), int(ds.Columns)
    except (DeidError, OSError, ValueError, AttributeError, TypeError):
        return None


def _png_thumbnail(
    record: FileRecord, name: str, path: Path, geometry: tuple[int, int] | None, size: int
) -> Thumbnail:
    match = _FRAME_SUFFIX.search(name)
    index = int(match.group(1)) - 1 if match else 0
    boxes = _boxes_of(record.boxes, index)
    with Image.open(path) as opened:
        picture = opened.convert("RGB")
    width, height = picture.size
    if geometry is None:
        if any(b.right > width or b.bottom > height for b in boxes):
            uri = _data_uri(picture, [], 1.0, 1.0, size)
            note = "boxes not drawn: the image was downsized and its frame size is unknown"
            return Thumbnail(name, index, uri, len(boxes), note)
        geometry = (height, width)
    rows, columns = geometry
    uri = _data_uri(picture, boxes, width / columns, height / rows, size)
    return Thumbnail(name, index if match or record.frames > 1 else None, uri, len(boxes))


def _dicom_thumbnail(record: FileRecord, name: str, path: Path, frame: str, size: int) -> Thumbnail:
    ds = reader.read(path)
    frames = pixels.Frames(ds, str(path))
    try:
        index = pixels.select_frames(len(frames), frame)[0]
    except UsageError:
        index = len(frames) // 2
    image = pixels.render(ds, frames[index])
    boxes = _boxes_of(record.boxes, index)
    picture = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    uri = _data_uri(picture, boxes, 1.0, 1.0, size)
    return Thumbnail(name, index if len(frames) > 1 else None, uri, len(boxes))


def _boxes_of(boxes: Sequence[BoxRecord], index: int) -> list[BoxRecord]:
    return [b for b in boxes if b.frame is None or b.frame == index]


def _data_uri(
    picture: Image.Image, boxes: Sequence[BoxRecord], scale_x: float, scale_y: float, size: int
) -> str:
    """A JPEG data: URI of `picture` shrunk to `size`, each box outlined just outside it.

    `scale_x`/`scale_y` take box coordinates to `picture`'s pixels.
    """
    width, height = picture.size
    factor = min(1.0, size / max(width, height))
    if factor < 1.0:
        small = (max(1, round(width * factor)), max(1, round(height * factor)))
        picture = picture.resize(small, Image.Resampling.LANCZOS)
    fx = picture.size[0] / width * scale_x
    fy = picture.size[1] / height * scale_y
    draw = ImageDraw.Draw(picture)
    w = _OUTLINE_WIDTH
    for box in boxes:
        left, top = math.floor(box.left * fx), math.floor(box.top * fy)
        right, bottom = math.ceil(box.right * fx) - 1, math.ceil(box.bottom * fy) - 1
        draw.rectangle((left - w, top - w, right + w, bottom + w), outline=OUTLINE, width=w)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
