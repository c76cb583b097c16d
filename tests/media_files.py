"""Hand-made media files for the tests: headers that lie, animations, formats without an encoder
at hand (no Pillow needed)."""
from __future__ import annotations

import random
import struct
import zlib


def png_header_only(w: int, h: int) -> bytes:
    """A PNG signature and IHDR declaring w x h pixels, then garbage: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + random.Random(w * h).randbytes(400))


#: The classic 1x1 GIF (one frame with a graphic control extension).
TINY_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
            b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def gif_animation(width: int, height: int, frames: int, frame_size: tuple[int, int] = (1, 1)) -> bytes:
    """A GIF whose screen is width x height with ``frames`` frames of ``frame_size`` (only the
    block structure is real beyond 1 x 1 frames: enough for header checks, not for decoding)."""
    frame = bytearray(TINY_GIF[19:-1])  # graphic control extension + image descriptor + data
    frame[13:17] = struct.pack("<HH", *frame_size)
    return b"GIF89a" + struct.pack("<HH", width, height) + TINY_GIF[10:19] + bytes(frame) * frames + b";"


def bmp_bytes(w: int = 2, h: int = 2) -> bytes:
    row = (b"\x10\x80\xf0" * w).ljust((3 * w + 3) // 4 * 4, b"\0")
    pixels = row * h
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + dib + pixels
