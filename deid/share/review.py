"""`review.html`: the bundle as it will be sent, to look at before sending it.

Each image is shown from its own file, byte for byte (a data: URI of the file the
assistant will get), beside a small copy with every covered area outlined and numbered,
and with what the bundle says about it: its label, window, size, the safe facts and
why each area was covered. The page is one file that can be moved or passed on: styles
are inline, images are embedded, and a Content-Security-Policy forbids scripts and
requests. Every string is escaped; nothing in it comes from outside the bundle (a
`SharedImage` holds no covered text, and the bundle's own folder is not named).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from deid.errors import DeidError
from deid.output import Transaction
from deid.report import OUTLINE, Html, escape, inside
from deid.share.items import Cover, SharedImage

__all__ = ["NOT_FINDINGS", "THUMB_SIZE", "TITLE", "page", "write_review"]

TITLE = "Review before sending"
NOT_FINDINGS = "Black boxes cover text that was removed for privacy; they are not findings."
THUMB_SIZE = 360  # px: the long side of the copy the covers are outlined on
_OUTLINE_WIDTH = 2
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:24px;color:#1d1d1f;background:#fafafa}
h1{font-size:24px;margin:0 0 12px}h2{font-size:18px;margin:0 0 8px}
h3{font-size:15px;margin:12px 0 4px}
.context{white-space:pre-wrap;background:#fff;border:1px solid #ccc;padding:8px 12px;
font:14px/1.4 ui-monospace,monospace;margin:8px 0}
.note{background:#fff4d6;border:1px solid #e0b84c;padding:8px 12px;font-weight:600}
.image{background:#fff;border:1px solid #ddd;padding:12px 16px;margin:18px 0}
.pair{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:0}figcaption{font-size:12px;color:#555}
figure.sent{flex:0 1 auto;max-width:100%}
figure.sent img{display:block;max-width:100%;height:auto;border:1px solid #999;
background:#000}
figure.covers img{display:block;border:1px solid #999}
table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;
word-break:break-word}
th{background:#eee;white-space:nowrap}
code{word-break:break-all}.missing{color:#a33}
ol.covered li::marker{font-weight:700;color:#c02020}
"""


def page(
    images: Sequence[SharedImage], bundle: Path, *, title: str = TITLE, context: str = ""
) -> str:
    """One self-contained HTML page showing each image of `bundle` as it will be sent.

    Each image is read from `bundle / image.name`; a file that is missing, outside the
    bundle or not an image gets a note instead of a picture. `context` is the bundle's
    context note, shown at the top as it is written.
    """
    total = sum(_size(image, bundle) for image in images)
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">{escape(NOT_FINDINGS)}</p>',
        f"<p>{_count(len(images), 'image')}, {_kb(total)} in all, each shown as the "
        "assistant will get it.</p>",
    ]
    if context.strip():
        parts.append(
            f'<h2>The context note sent with them</h2>\n<div class="context">'
            f"{escape(context.strip())}</div>"
        )
    parts += [_section(i, image, bundle) for i, image in enumerate(images, 1)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


def write_review(images: Sequence[SharedImage], bundle: Path, context_text: str) -> Path:
    """Write `page` to `bundle / "review.html"` at once (a temporary file renamed)."""
    target = bundle / "review.html"
    txn = Transaction(overwrite=True)
    txn.add(target, page(images, bundle, context=context_text).encode("utf-8"))
    txn.commit()
    return target


def _section(index: int, image: SharedImage, bundle: Path) -> str:
    shown = _pictures(index, image, bundle)
    width, height = image.width, image.height
    if not (width and height) and isinstance(shown, _Shown):
        width, height = shown.size
    facts = [
        ("file", Html(f"<code>{escape(image.name)}</code>")),
        ("from", image.label),
        ("kind", "DICOM series" if image.source == "series" else "photo"),
        ("window", image.window or "-"),
        ("size", _kb(_size(image, bundle))),
        ("dimensions", f"{width} × {height} px" if width and height else "-"),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    if isinstance(shown, str):
        pictures = f'<p class="missing">Not shown: {escape(shown)}.</p>'
    else:
        pictures = f'<div class="pair">{shown.sent}{shown.outlined}</div>'
    safe = (
        "<ul>" + "".join(f"<li>{escape(fact)}</li>" for fact in image.facts) + "</ul>"
        if image.facts
        else "<p>None.</p>"
    )
    return (
        f'<section class="image"><h2>{index}. {escape(image.label)} · '
        f"<code>{escape(image.name)}</code></h2>\n{pictures}\n<table>{rows}</table>\n"
        f"<h3>Safe facts sent with it</h3>{safe}\n"
        f"<h3>Covered ({len(image.covers)})</h3>{_covers(image.covers)}</section>"
    )


def _covers(covers: Sequence[Cover]) -> str:
    if not covers:
        return "<p>Nothing was covered.</p>"
    items = "".join(
        f"<li>{escape(c.why)} <small>(at {c.box.left}, {c.box.top} to {c.box.right}, "
        f"{c.box.bottom}: {c.box.width} × {c.box.height} px)</small></li>"
        for c in covers
    )
    return f'<ol class="covered">{items}</ol>'


@dataclass(frozen=True)
class _Shown:
    """An image as sent and its copy with the covers outlined (<figure>s), and its size."""

    sent: str
    outlined: str
    size: tuple[int, int]


def _pictures(index: int, image: SharedImage, bundle: Path) -> _Shown | str:
    """How the image is shown, or why it is not."""
    try:
        path = _inside(bundle, image.name)
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as opened:
            mime = _MIME.get(opened.format or "")
            if mime is None:
                return "the file is not a PNG, JPEG, WebP or GIF image"
            picture = opened.convert("RGB")
    except DeidError as exc:  # outside the bundle, or missing
        return exc.message
    except (OSError, ValueError, Image.DecompressionBombError):
        return "the file could not be read"
    uri = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    sent = (
        f'<figure class="sent"><img src="{uri}" alt="image {index} as it will be sent">'
        "<figcaption>As it will be sent</figcaption></figure>"
    )
    outlined = ""
    if image.covers:
        outlined = (
            f'<figure class="covers"><img src="{_outlined(picture, image.covers)}" '
            f'alt="where image {index} was covered"><figcaption>Covered areas outlined and '
            f"numbered ({len(image.covers)})</figcaption></figure>"
        )
    return _Shown(sent, outlined, picture.size)


def _inside(bundle: Path, name: str) -> Path:
    return inside(bundle, name, "the name leads outside the bundle's folder")


def _outlined(picture: Image.Image, covers: Sequence[Cover]) -> str:
    """A JPEG data: URI of a small copy with each cover outlined just outside it and
    numbered as in the list."""
    width, height = picture.size
    factor = min(1.0, THUMB_SIZE / max(width, height))
    small = picture
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = picture.resize(size, Image.Resampling.LANCZOS)
    fx, fy = small.size[0] / width, small.size[1] / height
    draw = ImageDraw.Draw(small)
    font = ImageFont.load_default(size=12)
    w = _OUTLINE_WIDTH
    for number, cover in enumerate(covers, 1):
        box = cover.box
        left, top = math.floor(box.left * fx), math.floor(box.top * fy)
        right, bottom = math.ceil(box.right * fx) - 1, math.ceil(box.bottom * fy) - 1
        draw.rectangle((left - w, top - w, right + w, bottom + w), outline=OUTLINE, width=w)
        label = str(number)
        x0, y0, x1, y1 = draw.textbbox((0, 0), label, font=font)
        tag_w, tag_h = x1 - x0 + 6, y1 - y0 + 4
        tx = min(max(0, left - w), small.size[0] - tag_w)
        ty = top - w - tag_h if top - w - tag_h >= 0 else min(small.size[1] - tag_h, bottom + w)
        draw.rectangle((tx, ty, tx + tag_w - 1, ty + tag_h - 1), fill=OUTLINE)
        draw.text((tx + 3 - x0, ty + 2 - y0), label, fill=(255, 255, 255), font=font)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=85, subsampling=0)  # thin red lines stay red
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _size(image: SharedImage, bundle: Path) -> int:
    """The image's size in bytes: as recorded, else as on disc (0 when unreadable)."""
    if image.size:
        return image.size
    try:
        return _inside(bundle, image.name).stat().st_size
    except (DeidError, OSError):
        return 0


def _kb(size: int) -> str:
    kb = size / 1024
    return f"{kb:.1f} KB" if kb < 10 else f"{kb:,.0f} KB"


def _count(n: int, word: str) -> str:
    return f"{n} {word if n == 1 else word + 's'}"
