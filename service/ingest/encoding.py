"""Decoding release bytes with an error that says where the first invalid byte is."""

from __future__ import annotations

from service.errors import AnnouncementError


def decode_as(
    raw: bytes, skip: int, codec: str, name: str, source: str, hint: str = "save the file as UTF-8"
) -> str:
    """`raw[skip:]` decoded with `codec`; on failure, an error naming `name`, the byte, offset and line."""
    data = raw[skip:]
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode(codec, "replace")
        line = before.replace("\r\n", "\n").replace("\r", "\n").count("\n") + 1
        offset = skip + exc.start
        raise AnnouncementError(
            source, f"not valid {name} (byte 0x{raw[offset]:02x} at offset {offset})", line=line, hint=hint
        ) from None
