"""What a media file is, and how big it will be decoded, from its first bytes only.

A 400 KB PNG can declare 12000 x 12000 pixels and take gigabytes to decode, and a WAV header
can promise hours of audio, so the catalog stage looks at the header before any decoder runs:
the format (so WebP or FLAC are reported as *unsupported*, not as corrupt files), the pixel
count of an image and the length of a clip. The serving graph makes the same pixel check with
TF ops (``media.image.image_pixels``); these pure-Python readers serve the catalog stage,
where a refusal must become a counted, named skip rather than a dropped tf.data element.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

#: Bytes read to classify a file: enough for PNG/GIF/BMP/WebP/WAV headers and a JPEG's
#: SOF marker behind typical EXIF/ICC segments (a JPEG whose SOF lies further is decoded
#: with the in-graph check of ``decode_image`` as the bound).
HEADER_BYTES = 256 * 1024

#: Image formats tf.io.decode_image reads.
DECODED_IMAGE_FORMATS = ("png", "jpeg", "gif", "bmp")


def image_format(header: bytes) -> str | None:
    """``png``/``jpeg``/``gif``/``bmp`` (decoded), ``webp``/``tiff``/``heic``/``avif``/``ico``/``svg``
    (recognised, not decoded), or None (not an image we recognise)."""
    if header.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if header.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if header[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if header.startswith(b"BM"):
        return "bmp"
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return "webp"
    if header[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if header[4:8] == b"ftyp":
        brand = header[8:12]
        return "avif" if brand in (b"avif", b"avis") else "heic" if brand[:3] in (b"hei", b"mif", b"hev") else None
    if header[:4] == b"\x00\x00\x01\x00":
        return "ico"
    if header.lstrip()[:5] in (b"<?xml", b"<svg ") or header.lstrip()[:4] == b"<svg":
        return "svg"
    return None


def image_size(header: bytes) -> tuple[int, int] | None:
    """(width, height) declared by a PNG, GIF, BMP or JPEG header; None when not readable."""
    fmt = image_format(header)
    try:
        if fmt == "png" and header[12:16] == b"IHDR":
            return struct.unpack(">II", header[16:24])
        if fmt == "gif":
            return struct.unpack("<HH", header[6:10])
        if fmt == "bmp":
            w, h = struct.unpack("<ii", header[18:26])
            return abs(w), abs(h)
        if fmt == "jpeg":
            return _jpeg_size(header)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments to the first start-of-frame marker."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


def gif_canvas(data: bytes) -> tuple[int, int, int]:
    """(frames, canvas width, canvas height) of a whole GIF file, walking its block structure.

    TF decodes every frame onto a canvas of the largest frame's width x height, even when it
    keeps only the first frame, so that is what an animation costs (not the screen size its
    header declares).
    """
    if len(data) < 13:
        return 0, 0, 0
    pos, frames, width, height = 13, 0, 0, 0
    if data[10] & 0x80:  # global colour table
        pos += 3 * 2 ** ((data[10] & 7) + 1)
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image descriptor (+ local colour table, LZW code size, sub-blocks)
            if pos + 10 > len(data):
                break
            frames += 1
            w, h = struct.unpack("<HH", data[pos + 5:pos + 9])
            width, height = max(width, w), max(height, h)
            flags = data[pos + 9]
            pos += 10 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
            pos = _skip_sub_blocks(data, pos + 1)
        else:
            break
    return frames, width, height


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while pos < len(data):
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
    return pos


@dataclass
class WavInfo:
    """The fields of a RIFF/WAVE header that decide whether and how long it decodes."""

    format_tag: int
    channels: int
    sample_rate: int
    bits: int
    data_bytes: int

    @property
    def frames(self) -> int:
        frame = self.channels * max(self.bits // 8, 1)
        return self.data_bytes // frame if frame else 0

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else float("inf")


def audio_format(header: bytes) -> str | None:
    """``wav`` (decoded), ``mp3``/``flac``/``ogg``/``m4a``/``aiff`` (recognised, not decoded), or None."""
    if header[:4] in (b"RIFF", b"RIFX") and header[8:12] == b"WAVE":
        return "wav"
    if header[:3] == b"ID3" or (len(header) > 1 and header[0] == 0xFF and header[1] & 0xE0 == 0xE0):
        return "mp3"
    if header[:4] == b"fLaC":
        return "flac"
    if header[:4] == b"OggS":
        return "ogg"
    if header[4:8] == b"ftyp":
        return "m4a"
    if header[:4] == b"FORM" and header[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    return None


def wav_info(header: bytes) -> WavInfo | None:
    """The ``fmt `` and ``data`` chunks of a RIFF/WAVE header (None if they are not in ``header``).

    ``data_bytes`` is the data chunk's *declared* size: a decoder may allocate by it, so a
    header promising hours is judged by its promise (a truncated file fails in the decoder).
    """
    if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(header):
        chunk, size = header[pos:pos + 4], struct.unpack("<I", header[pos + 4:pos + 8])[0]
        body = pos + 8
        if chunk == b"fmt " and body + 16 <= len(header):
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", header[body:body + 16])
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data" and fmt is not None:
            return WavInfo(fmt[0], fmt[1], fmt[2], fmt[3], size)
        pos = body + size + (size & 1)
    return None
