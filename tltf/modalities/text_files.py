"""Texts: UTF-8 decoding and the checks every text loader applies."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tltf.errors import DataError

TEXT_EXTENSIONS = (".txt",)


def decode_utf8(raw: bytes, path: str) -> str:
    """UTF-8 (BOM allowed) -> str; other bytes raise `DataError` naming the line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path} line {line}: not valid UTF-8 (byte {raw[e.start : e.start + 1]!r}). "
            "Re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`."
        ) from None


def check_texts(texts: Sequence[str], where: Callable[[int], str], column: str = "") -> None:
    """Refuses an empty text, naming its row (`where(i)`) and column."""
    for i, t in enumerate(texts):
        if not t.strip():
            col = f" in column {column!r}" if column else ""
            raise DataError(f"{where(i)}: empty text{col}; fill it in or delete the row.")


def read_text_file(path: str) -> str:
    """One example's text from a ``.txt`` file, stripped; an empty file is a `DataError`."""
    with open(path, "rb") as f:
        text = decode_utf8(f.read(), path).strip()
    if not text:
        raise DataError(f"{path}: empty text file. Write the example's text into it, or delete it.")
    return text
