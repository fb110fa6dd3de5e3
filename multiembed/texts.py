"""Decoding text items, shared by every modality that accepts text (text, image-text queries).

Text files may start with a byte-order mark: UTF-8's is dropped, UTF-16 and UTF-32 files are
decoded as what their mark says; anything else must be UTF-8. Mojibake is never embedded.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
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
    (b"PK\x03\x04", "a ZIP archive (or a .docx/.xlsx)"),
    (b"\x1f\x8b", "a gzip file"),
    (b"PAR1", "a Parquet file"),
    (b"\x93NUMPY", "a NumPy array"),
)
_CONTROL = frozenset(range(0x20)) - {0x09, 0x0A, 0x0D}


#: a PDF's first line is its version alone ("%PDF-1.7"); a note that starts "%PDF-1.4 explained" is text
_PDF = re.compile(rb"%PDF-\d\.\d[ \t]*[\r\n]")


def binary_kind(head: bytes) -> str | None:
    """What binary file ``head`` (a file's first 16 bytes) begins, if it begins one we know."""
    control = any(byte in _CONTROL for byte in head)
    if head[4:8] == b"ftyp" and control:
        return "an MP4/MOV video (or other ISO media file)"
    if _PDF.match(head):
        return "a PDF document"
    for magic, kind in _SIGNATURES:
        printable = all(0x20 <= byte < 0x7F for byte in magic)
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
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError as error:  # a str holding half of a UTF-16 pair (U+D800..U+DFFF)
            raise InputError(
                f"text contains a lone surrogate (U+{ord(value[error.start]):04X}) at character "
                f"{error.start}: not valid Unicode"
            ) from None
        return Loaded(value, sha256_hex(data))


load_text = TextLoader()


#: a first cut keeps this many characters per token the model reads (doubled until it is enough)
CHARS_PER_TOKEN = 16
#: the most a cut keeps, per token the model reads: the tokenizer never sees much more of a text than
#: this (a text holding fewer tokens in so many characters is whitespace, unknown words or removed
#: characters; what follows them may then be lost)
MAX_CHARS_PER_TOKEN = 1024
#: how far past the bound a word may run before the text is cut inside it
MAX_WORD_CHARS = 64 * 1024
#: where a cut may fall: plain whitespace, which every tokenizer splits words at (not the Unicode
#: separators some normalizers delete, joining the words around them)
_SPACE = re.compile(r"[ \t\n\r]")
#: the CJK ideographs BERT's normalizer puts spaces around (a character class's ranges)
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
#: letters and digits, less those ideographs: a run of them is one word to BERT's pre-tokenizer, and
#: stays one through its normalizer (lowercasing, accent stripping)
_LETTERS = rf"[^\W_{_CJK}]"
_NOT_LETTER = re.compile(rf"[\W_{_CJK}]")
#: a run of letters and digits this long is one unknown word ([UNK]) to WordPiece (when it reads
#: no word of 255 characters or more; see ``_unknown_word_keep``)
_MIN_RUN = 512
_LONG_RUN = re.compile(f"(?<!{_LETTERS}){_LETTERS}{{{_MIN_RUN},}}")


def token_ids(tokenizer: Any, text: str) -> list[int]:
    """The tokens ``text`` is, without the special tokens a model adds around it."""
    ids: list[int] = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return ids


def count_tokens(tokenizer: Any, text: str) -> int:
    """How many tokens ``text`` is, without the special tokens a model adds around it."""
    return len(token_ids(tokenizer, text))


def _unknown_word_keep(tokenizer: Any) -> int | None:
    """For BERT's WordPiece: how much of each end of a run of letters keeps it one [UNK]; else None.

    WordPiece reads a word of more than ``max_input_chars_per_word`` characters as one [UNK] whatever
    its letters, so such a run's middle can go. Only BERT's own normalizer and pre-tokenizer are
    known to keep a run of letters one word, and no added token may be letters alone (it could match
    inside the run); the ends kept are at least as long as any added token, so matches at the run's
    edges see the same characters.
    """
    try:
        from tokenizers import models, normalizers, pre_tokenizers
    except ImportError:  # pragma: no cover - transformers' fast tokenizers need it
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (
        backend is None
        or not isinstance(backend.model, models.WordPiece)
        or not isinstance(backend.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
        or not (backend.normalizer is None or isinstance(backend.normalizer, normalizers.BertNormalizer))
    ):
        return None
    added = [token.content for token in backend.get_added_tokens_decoder().values()]
    if not all(any(_NOT_LETTER.match(char) and not _is_mark(char) for char in token) for token in added):
        return None
    return max([int(backend.model.max_input_chars_per_word) + 1, *map(len, added)])


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def _drop_unknown_middles(text: str, tokenizer: Any, size: int) -> str:
    """``text`` with the middle of each run of letters long enough to be one [UNK] dropped, where that
    provably leaves its tokens as they are (WordPiece tokenizers only; in about its first ``size``
    characters). A 30 MB word is then a few hundred characters, and the words after it are still read.
    """
    match = _LONG_RUN.search(text, 0, size)
    if match is None:
        return text
    keep = _unknown_word_keep(tokenizer)
    if keep is None or 2 * keep >= _MIN_RUN:
        return text
    parts: list[str] = []
    start = kept = 0
    while match is not None and kept < size:
        stop = _NOT_LETTER.search(text, match.end())  # where the run ends, past the window too
        end = len(text) if stop is None else stop.start()
        parts += [text[start : match.start() + keep], text[end - keep : end]]
        kept += match.start() + 2 * keep - start
        start = end
        match = _LONG_RUN.search(text, start, start + size - kept)
    parts.append(text[start:])
    return "".join(parts)


def _same_start(tokenizer: Any, text: str, longer: str) -> int:
    """How many tokens ``text`` and ``longer`` (which starts with it) begin with alike."""
    first, second = token_ids(tokenizer, text), token_ids(tokenizer, longer)
    differ = (i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    return next(differ, min(len(first), len(second)))


def cut_for_tokenizer(text: str, tokenizer: Any, max_tokens: int) -> str:
    """A short text that still holds every token a model truncating at ``max_tokens`` reads in ``text``.

    Tokenizing a 50 MB line whole only to keep its first few hundred tokens costs gigabytes. The
    text is cut at a space, tab or line break, so every word before the cut is whole and tokenizes
    exactly as in the full text (tokenizers split words there first); once the cut holds more
    than ``max_tokens`` tokens, the model's truncation keeps the same tokens as from the full text.
    Otherwise the cut is made twice as long. A word running more than ``MAX_WORD_CHARS`` past the
    bound is cut inside, at the bound, once the tokens before the bound stay the same when the cut
    is ``MAX_WORD_CHARS`` longer: only a word's last pieces depend on where it ends (a word WordPiece
    reads as [UNK] stays [UNK] however long; BPE and unigram pieces span a few characters). Before
    a cut is first made longer, WordPiece's [UNK] words lose their middles, so that the words after
    a giant one are still read. No cut holds more than ``MAX_CHARS_PER_TOKEN`` characters per
    token, plus ``MAX_WORD_CHARS``, and the tokenizer never sees more.
    """
    limit = CHARS_PER_TOKEN * max_tokens
    most = MAX_CHARS_PER_TOKEN * max_tokens
    shortened = False
    while limit < len(text):
        space = _SPACE.search(text, limit, limit + MAX_WORD_CHARS)
        if space is not None:
            cut = text[: space.start()]
            if limit >= most or count_tokens(tokenizer, cut) > max_tokens:
                return cut
            longer = 2 * space.start() + 1
        elif len(text) - limit <= MAX_WORD_CHARS:
            return text
        else:  # inside a word running more than MAX_WORD_CHARS past the bound
            cut = text[:limit]
            if limit >= most or _same_start(tokenizer, cut, text[: limit + MAX_WORD_CHARS]) > max_tokens:
                return cut
            longer = 2 * limit
        if not shortened:
            shortened, length = True, len(text)
            text = _drop_unknown_middles(text, tokenizer, most + MAX_WORD_CHARS)
            if len(text) < length:
                continue  # the same bound again, in the shorter text
        limit = min(longer, most)
    return text


def tokens_read(text: str, tokenizer: Any, max_tokens: int, added: int = 0) -> int:
    """Tokens a model truncating at ``max_tokens`` reads for ``text`` plus ``added`` (specials, prompt).

    Exact for tokenizers that split at whitespace first (every word before the cut is whole), so a
    batch's padded length is the largest of its items' counts; a long text costs a cut, not a full pass.
    """
    return min(max_tokens, count_tokens(tokenizer, cut_for_tokenizer(text, tokenizer, max_tokens)) + added)
