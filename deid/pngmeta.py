"""What a PNG output carries besides its image: chunks and data after its end.

A PNG the pipeline writes holds only the chunks that describe its pixels. Text chunks
(tEXt, zTXt, iTXt), EXIF, a modification time, any other chunk and bytes after IEND are
places where a name could travel with the image, so the check of finished outputs
(`deid.verify.check_png`) reports each of them, and reads the text chunks too.
"""

from __future__ import annotations

import zlib

from deid.phitext import Matcher, text_kinds

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that only describe the pixels; any other chunk can carry text or other data.
_IMAGE_CHUNKS = frozenset(b"IHDR PLTE IDAT IEND tRNS gAMA cHRM sRGB sBIT bKGD pHYs".split())
_CHUNK_KINDS = {
    b"tEXt": "text metadata",
    b"zTXt": "text metadata",
    b"iTXt": "text metadata",
    b"eXIf": "EXIF metadata",
    b"tIME": "modification time",
}


def _chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """(type, data) of each chunk of a PNG, or None if the bytes are not one.

    Bytes after the IEND chunk come last, with an empty type.
    """
    if not data.startswith(SIGNATURE):
        return None
    found: list[tuple[bytes, bytes]] = []
    pos = len(SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return None
        found.append((kind, data[pos + 8 : pos + 8 + length]))
        pos = end
        if kind == b"IEND":
            if pos < len(data):
                found.append((b"", data[pos:]))
            return found
    return None


def _chunk_text(kind: bytes, body: bytes) -> str:
    """The readable text of a tEXt, zTXt or iTXt chunk (keyword included), else ""."""
    try:
        if kind == b"tEXt":
            return body.replace(b"\0", b" ").decode("latin-1")
        if kind == b"zTXt":
            keyword, _, rest = body.partition(b"\0")
            return (keyword + b" " + _inflate(rest[1:])).decode("latin-1")
        if kind == b"iTXt":
            keyword, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            language, _, rest = rest.partition(b"\0")
            translated, _, text = rest.partition(b"\0")
            if compressed:
                text = _inflate(text)
            return b" ".join((keyword, language, translated, text)).decode("utf-8", "replace")
    except (zlib.error, IndexError):
        return ""
    return ""


def _inflate(data: bytes) -> bytes:
    """Decompress a text chunk, at most 1 MiB of it: enough to find a name in."""
    return zlib.decompressobj().decompress(data, 1 << 20)


def chunk_findings(data: bytes, matcher: Matcher) -> list[tuple[str, str]] | None:
    """(where, kind) of what a PNG holds besides its image, or None if it is not a PNG.

    Any chunk the image does not need is a finding, and so are the original values and
    patterns in the text of a text chunk, and any data after the end.
    """
    chunks = _chunks(data)
    if chunks is None:
        return None
    found = []
    for kind, body in chunks:
        if not kind:
            found.append(("after PNG IEND", "data after the image end"))
            continue
        if kind in _IMAGE_CHUNKS:
            continue
        where = f"PNG {kind.decode('latin-1')} chunk"
        found.append((where, _CHUNK_KINDS.get(kind, "unexpected chunk")))
        found += [(where, k) for k in text_kinds(_chunk_text(kind, body), matcher)]
    return found
