"""Decode, render and black out DICOM pixel data.

Burned-in text can only be found on an image that looks the way a radiologist's viewer
shows it, and can only be removed by changing the stored values a viewer reads. This
module does both halves:

* `decode` turns a dataset's pixel data (native or compressed) into one numpy array of
  stored values with a frame axis, colour already converted to RGB; `Frames` gives
  the same frames one at a time, so a long cine never sits in memory whole.
* `render` applies the DICOM greyscale pipeline (Modality LUT, VOI LUT or window,
  MONOCHROME1 inversion) or the palette, giving the uint8 picture an OCR engine sees.
* `redact` fills boxes in the stored values with the value that renders darkest, and
  `store` writes the result back as uncompressed pixel data.
* `plan` and `store_streamed` do what `redact` and `store` do for a DICOM output, with
  the new pixel data made a frame at a time as it is written.
* `clear_unused_bits` clears what native pixel data holds above Bits Stored (a legacy
  overlay, a name), `encoded_bits_set` finds it in compressed data (which then goes out
  native, masked), and `unused_bit_frames` finds it in an output.

Rendering never resizes, so a box found on a rendered frame addresses the same pixels in
the stored frames.

This package is the face; the work is done in `frames` (choosing and decoding frames,
codec errors), `luts` (lookup tables and palettes), `rendering` (display pipeline),
`redaction` (blacking out and storing back), `framewise` (one frame at a time),
`stream` (pixel data written a frame at a time) and `bits` (the bits above Bits Stored).
"""

from __future__ import annotations

from deid.pixels.bits import (
    clear_unused_bits,
    encoded_bits_set,
    unused_bit_frames,
    unused_bits_set,
)
from deid.pixels.frames import (
    check_pixel_data,
    frame_count,
    frame_digest,
    is_compressed,
    select_frames,
)
from deid.pixels.framewise import Frames, decode
from deid.pixels.redaction import black_out, redact, store
from deid.pixels.rendering import RenderOptions, Switch, darkest_value, render
from deid.pixels.stream import Rewritten, plan, store_streamed

__all__ = [
    "Frames",
    "RenderOptions",
    "Rewritten",
    "Switch",
    "black_out",
    "check_pixel_data",
    "clear_unused_bits",
    "darkest_value",
    "decode",
    "encoded_bits_set",
    "frame_count",
    "frame_digest",
    "is_compressed",
    "plan",
    "redact",
    "render",
    "select_frames",
    "store",
    "store_streamed",
    "unused_bit_frames",
    "unused_bits_set",
]
