"""Decoding text items, shared by every modality that accepts text (text, image-text queries).

Text files may start with a byte-order mark: UTF-8's is dropped, UTF-16 and UTF-32 files are
decoded as what their mark says; anything else must be UTF-8. Mojibake is never embedded.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multiembed.errors import InputError
from multiembed.sources import MAX_LINE_BYTES, LineTooLong, Loaded, read_bytes, sha256_hex

#: a text file bigger than this is an item error, not 64 MB of tokenizer input (``max_bytes=``)
DEFAULT_TEXT_MAX_BYTES = 64 * 1024 * 1024

#: byte-order marks, longest first (UTF-32 LE starts with UTF-16 LE's mark)
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


#: how common binary files begin: a file of lines that starts like this is refused whole, instead
#: of having its bytes between 0x0A's embedded as "texts". A signature of printable letters only
#: counts when a control byte follows it (text may begin "GIF8", "RIFF" or "OggS"; those files don't).
_SIGNATURES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WAV audio, WebP image or AVI video)"),
    (b"fLaC", "FLAC audio"),
    (b"OggS", "an Ogg file"),
    (b"ID3", "MP3 audio"),
    (b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or a .docx/.xlsx)"),
    (b"\x1f\x8b", "a gzip file"),
    (b"PAR1", "a Parquet file"),
    (b"\x93NUMPY", "a NumPy array"),
)
_CONTROL = frozenset(range(0x20)) - {0x09, 0x0A, 0x0D}


def binary_kind(head: bytes) -> str | None:
    """What binary file ``head`` (a file's first 8 bytes) begins, if it begins one we know."""
    control = any(byte in _CONTROL for byte in head)
    if head[4:8] == b"ftyp" and control:
        return "an MP4/MOV video (or other ISO media file)"
    for magic, kind in _SIGNATURES:
        printable = all(0x20 <= byte < 0x7F for byte in magic) and magic != b"%PDF-"
        if head.startswith(magic) and (control or not printable):
            return kind
    return None


def encoding_of(head: bytes) -> str:
    """The encoding a file's first bytes announce (by byte-order mark); UTF-8 when there is none."""
    return next((encoding for bom, encoding in BOMS if head.startswith(bom)), "utf-8")


def decode_text(data: bytes) -> str:
    """UTF-8 text, or UTF-16/32 announced by a byte-order mark; anything else is an item error."""
    encoding = encoding_of(data[:4])
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise InputError(not_valid_text(encoding, f"byte {error.start}")) from None


def not_valid_text(encoding: str, where: str) -> str:
    """Why text did not decode, and for UTF-8 what to do (the usual culprit is Latin-1/cp1252)."""
    if not encoding.startswith("utf-8"):
        return f"not valid {encoding.upper()} text ({where})"
    return (
        f"not valid UTF-8 text ({where}); convert it to UTF-8 first (from Latin-1: iconv -f LATIN1 -t UTF-8)"
    )


@dataclass(frozen=True)
class TextLoader:
    """Accept str, bytes or a path to a text file; empty text is an error, not a vector."""

    max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES

    def __call__(self, value: Any) -> Loaded:
        if isinstance(value, LineTooLong):
            raise InputError(
                f"line too long: {value.size:,} bytes (the limit for one line is {MAX_LINE_BYTES:,})"
            )
        if isinstance(value, Path):
            value = read_bytes(value, self.max_bytes)
        if isinstance(value, (bytes, bytearray)):
            value = decode_text(bytes(value))
        if not isinstance(value, str):
            raise InputError(f"expected text (str), got {type(value).__name__}")
        if not value.strip():
            raise InputError("empty text")
        if "\x00" in value:
            raise InputError("text contains NUL characters (UTF-16 without a byte-order mark?)")
        return Loaded(value, sha256_hex(value.encode("utf-8")))


load_text = TextLoader()


#: a first cut keeps this many characters per token the model reads (doubled until it is enough)
CHARS_PER_TOKEN = 16
#: how far past the bound a word may run before the text is cut inside it
MAX_WORD_CHARS = 64 * 1024
#: where a cut may fall: plain whitespace, which every tokenizer splits words at (not the Unicode
#: separators some normalizers delete, joining the words around them)
_SPACE = re.compile(r"[ \t\n\r]")


def count_tokens(tokenizer: Any, text: str) -> int:
    """How many tokens ``text`` is, without the special tokens a model adds around it."""
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def cut_for_tokenizer(text: str, tokenizer: Any, max_tokens: int) -> str:
    """The start of ``text`` that still holds every token a model truncating at ``max_tokens`` reads.

    Tokenizing a 50 MB line whole only to keep its first few hundred tokens costs gigabytes. The
    text is cut at a space, tab or line break, so every word before the cut is whole and tokenizes
    exactly as in the full text (tokenizers split words there first); once the cut holds more
    than ``max_tokens`` tokens, the model's truncation keeps the same tokens as from the full text.
    Otherwise the cut is made twice as long. A word running more than ``MAX_WORD_CHARS`` past the
    bound is cut inside only once the part before it already holds enough tokens.
    """
    limit = CHARS_PER_TOKEN * max_tokens
    while limit < len(text):
        space = _SPACE.search(text, limit, limit + MAX_WORD_CHARS)
        if space is None:
            if len(text) - limit <= MAX_WORD_CHARS:
                return text
            cut = text[:limit]  # inside a giant word: safe only if what comes before is enough
            before = cut[: max((match.start() for match in _SPACE.finditer(cut)), default=0)]
            if count_tokens(tokenizer, before) > max_tokens:
                return before
            limit *= 2
            continue
        cut = text[: space.start()]
        if count_tokens(tokenizer, cut) > max_tokens:
            return cut
        limit = 2 * space.start() + 1
    return text


def tokens_read(text: str, tokenizer: Any, max_tokens: int, added: int = 0) -> int:
    """Tokens a model truncating at ``max_tokens`` reads for ``text`` plus ``added`` (specials, prompt).

    Exact for tokenizers that split at whitespace first (every word before the cut is whole), so a
    batch's padded length is the largest of its items' counts; a long text costs a cut, not a full pass.
    """
    return min(max_tokens, count_tokens(tokenizer, cut_for_tokenizer(text, tokenizer, max_tokens)) + added)
