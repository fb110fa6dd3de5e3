"""BM25 analyzers: tokenise, lower-case, drop punctuation and stop words, stem; all offline.

The classes and their registered names are pymilvus.model's (``StandardTokenizer``,
``LowercaseFilter``, ``PunctuationFilter``, ``StopwordFilter``, ``StemmingFilter``,
``JiebaTokenizer``, ...), so its YAML analyzer configs build here too. What differs is where the
language data comes from: nothing is downloaded (pymilvus.model calls ``nltk.download``).

- ``StandardTokenizer``: a regular expression close to NLTK's ``word_tokenize`` on ordinary prose
  (words, numbers, inner apostrophes, hyphens and periods kept in a token; every other punctuation
  mark a token of its own, which ``PunctuationFilter`` drops). Contractions stay whole (``don't``),
  where NLTK splits them (``do``, ``n't``); NLTK's stop-word list holds both forms.
- ``StopwordFilter``: English from the list shipped in :mod:`.stopwords` (NLTK's), other languages
  from the ``stopwordsiso`` package.
- ``StemmingFilter``: the Snowball stemmers of the ``snowballstemmer`` package (the same algorithms
  NLTK's ``SnowballStemmer`` implements).
- ``JiebaTokenizer``: ``jieba``, which ships its dictionary.

An :class:`Analyzer` is a plain picklable callable ``text -> list[str]``; pymilvus.model's
``BM25EmbeddingFunction(analyzer=...)`` accepts it as well.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from multiembed.errors import ConfigError
from multiembed.extras import require
from multiembed.model.sparse.bm25.stopwords import ENGLISH

#: NLTK's language names (what pymilvus.model's configs use) -> ISO 639-1 codes (stopwordsiso's)
ISO_CODES = {
    "arabic": "ar",
    "danish": "da",
    "dutch": "nl",
    "english": "en",
    "finnish": "fi",
    "french": "fr",
    "german": "de",
    "greek": "el",
    "hungarian": "hu",
    "indonesian": "id",
    "italian": "it",
    "norwegian": "no",
    "portuguese": "pt",
    "romanian": "ro",
    "russian": "ru",
    "spanish": "es",
    "swedish": "sv",
    "turkish": "tr",
    "chinese": "zh",
}

#: full-width and CJK punctuation pymilvus.model's Chinese analyzer drops (its ``lang.yaml``)
CHINESE_PUNCTUATION = (
    " 、＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～"  # noqa: RUF001
    "｟｠｢｣､〃〈〉《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰–—‘’‛“”„‟…‧﹏﹑﹔·．！？｡。"  # noqa: RUF001
)


class Preprocessor(Protocol):
    def apply(self, text: str) -> str: ...


class TextFilter(Protocol):
    def apply(self, tokens: list[str]) -> list[str]: ...


class Tokenizer(Protocol):
    def tokenize(self, text: str) -> list[str]: ...


_class_registry: dict[str, Callable[..., Any]] = {}


def register_class(name: str) -> Callable[[type[Any]], type[Any]]:
    """Name a component for analyzer configs, as pymilvus.model's ``register_class`` does."""

    def decorator(cls: type[Any]) -> type[Any]:
        _class_registry[name] = cls
        return cls

    return decorator


# ---- preprocessors ---------------------------------------------------------------------------------
@register_class("CharacterfilterPreprocessor")
class CharacterfilterPreprocessor:
    """Replace each of ``chars_to_replace`` by a space."""

    def __init__(self, chars_to_replace: Iterable[str]) -> None:
        self.replacement_table = str.maketrans(dict.fromkeys(chars_to_replace, " "))

    def apply(self, text: str) -> str:
        return text.translate(self.replacement_table)


@register_class("ReplacePreprocessor")
class ReplacePreprocessor:
    """Replace each key of ``replacement_mapping`` by its value."""

    def __init__(self, replacement_mapping: Mapping[str, str]) -> None:
        self.replacement_mapping = dict(replacement_mapping)
        self.pattern = re.compile("|".join(map(re.escape, self.replacement_mapping)))

    def apply(self, text: str) -> str:
        if not self.replacement_mapping:
            return text
        return self.pattern.sub(lambda match: self.replacement_mapping[match.group(0)], text)


# ---- tokenizers ------------------------------------------------------------------------------------
#: a word with inner apostrophes, hyphens or periods (don't, e-mail, 3.14, U.S), or one other character
_WORD = re.compile(r"\w+(?:['\-.]\w+)*|[^\w\s]")


@register_class("StandardTokenizer")
class StandardTokenizer:
    """Words, numbers and single punctuation marks, by a regular expression (no NLTK data)."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.replace("\u2019", "'"))


@register_class("JiebaTokenizer")
class JiebaTokenizer:
    """Chinese word segmentation with jieba (its dictionary ships in the package)."""

    def __init__(self) -> None:
        jieba = require("jieba", "all")
        jieba.setLogLevel(logging.WARNING)  # not "Building prefix dict..." on every first use

    def tokenize(self, text: str) -> list[str]:
        return list(require("jieba", "all").lcut(text))


# ---- filters ---------------------------------------------------------------------------------------
@register_class("LowercaseFilter")
class LowercaseFilter:
    def apply(self, tokens: list[str]) -> list[str]:
        return [token.lower() for token in tokens]


@register_class("PunctuationFilter")
class PunctuationFilter:
    """Drop tokens that are one punctuation mark (ASCII, plus ``extras``), or only white space."""

    def __init__(self, extras: str = "") -> None:
        self.punctuation = set(string.punctuation + extras)

    def apply(self, tokens: list[str]) -> list[str]:
        return [token for token in tokens if token not in self.punctuation and token.strip()]


def stopwords_for(language: str) -> frozenset[str]:
    """The stop words of ``language`` (an NLTK name such as ``english``, or an ISO code)."""
    code = ISO_CODES.get(language.lower(), language.lower())
    if code == "en":
        return ENGLISH
    stopwordsiso = require("stopwordsiso", "all")
    if not stopwordsiso.has_lang(code):
        raise ConfigError(f"no stop-word list for language {language!r}")
    return frozenset(stopwordsiso.stopwords(code))


@register_class("StopwordFilter")
class StopwordFilter:
    """Drop the language's stop words and any in ``stopword_list``."""

    def __init__(self, language: str = "english", stopword_list: Sequence[str] | None = None) -> None:
        self.language = language
        self.stopwords = stopwords_for(language) | frozenset(stopword_list or ())

    def apply(self, tokens: list[str]) -> list[str]:
        return [token for token in tokens if token not in self.stopwords]


def _snowball(language: str) -> Any:
    snowballstemmer = require("snowballstemmer", "all")
    if language not in snowballstemmer.algorithms():
        known = ", ".join(snowballstemmer.algorithms())
        raise ConfigError(f"no Snowball stemmer for {language!r}; known: {known}")
    return snowballstemmer.stemmer(language)


@register_class("StemmingFilter")
class StemmingFilter:
    """Snowball stemming (``snowballstemmer``); the stemmer is rebuilt after unpickling."""

    def __init__(self, language: str = "english") -> None:
        self.language = language.lower()
        self._stemmer = _snowball(self.language)

    def __getstate__(self) -> dict[str, Any]:
        return {"language": self.language}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.language = state["language"]
        self._stemmer = _snowball(self.language)

    def apply(self, tokens: list[str]) -> list[str]:
        return list(self._stemmer.stemWords(tokens))


# ---- the analyzer ----------------------------------------------------------------------------------
class Analyzer:
    """``text -> tokens``: preprocessors, then the tokenizer, then each filter in order."""

    def __init__(
        self,
        name: str,
        tokenizer: Tokenizer,
        preprocessors: Sequence[Preprocessor] | None = None,
        filters: Sequence[TextFilter] | None = None,
    ) -> None:
        self.name = name
        self.tokenizer = tokenizer
        self.preprocessors = list(preprocessors or [])
        self.filters = list(filters or [])

    def __call__(self, text: str) -> list[str]:
        for preprocessor in self.preprocessors:
            text = preprocessor.apply(text)
        tokens = self.tokenizer.tokenize(text)
        for text_filter in self.filters:
            tokens = text_filter.apply(tokens)
        return tokens

    def __repr__(self) -> str:
        return f"Analyzer(name={self.name!r})"


def _latin(stopwords: str, stemmer: str, punctuation: str = "") -> dict[str, Any]:
    return {
        "tokenizer": {"class": "StandardTokenizer", "params": {}},
        "filters": [
            {"class": "LowercaseFilter", "params": {}},
            {"class": "PunctuationFilter", "params": {"extras": punctuation}},
            {"class": "StopwordFilter", "params": {"language": stopwords}},
            {"class": "StemmingFilter", "params": {"language": stemmer}},
        ],
    }


#: the languages of pymilvus.model's ``lang.yaml`` that need no native library (not jp, kr)
DEFAULT_CONFIGS: dict[str, dict[str, Any]] = {
    "en": _latin("english", "english"),
    "de": _latin("german", "german"),
    "fr": _latin("french", "french"),
    "ru": _latin("russian", "russian"),
    "sp": _latin("spanish", "spanish", "¡¿"),
    "it": _latin("italian", "italian"),
    "pt": _latin("portuguese", "portuguese"),
    "zh": {
        "tokenizer": {"class": "JiebaTokenizer", "params": {}},
        "filters": [
            {"class": "StopwordFilter", "params": {"language": "chinese"}},
            {"class": "PunctuationFilter", "params": {"extras": CHINESE_PUNCTUATION}},
        ],
    },
}


def _component(config: Mapping[str, Any]) -> Any:
    name = config.get("class")
    if name not in _class_registry:
        raise ConfigError(f"unknown analyzer component {name!r}; known: {', '.join(sorted(_class_registry))}")
    return _class_registry[name](**(config.get("params") or {}))


def build_analyzer(name: str, config: Mapping[str, Any]) -> Analyzer:
    """An analyzer from a pymilvus.model-style config: ``tokenizer``, ``preprocessors``, ``filters``."""
    return Analyzer(
        name=name,
        tokenizer=_component(config["tokenizer"]),
        preprocessors=[_component(item) for item in config.get("preprocessors") or []],
        filters=[_component(item) for item in config.get("filters") or []],
    )


def build_default_analyzer(language: str = "en") -> Analyzer:
    """The analyzer for ``language`` (en, de, fr, ru, sp, it, pt, zh), as pymilvus.model names them."""
    config = DEFAULT_CONFIGS.get(language)
    if config is None:
        raise ConfigError(
            f"no default analyzer for language {language!r}; known: {', '.join(DEFAULT_CONFIGS)}"
        )
    return build_analyzer(language, config)


def build_analyzer_from_yaml(filepath: str | Path, name: str) -> Analyzer:
    """An analyzer from a YAML file of named configs, as pymilvus.model's function of that name."""
    yaml = require("yaml", "all")
    with Path(filepath).open(encoding="utf-8") as file:
        configs = yaml.safe_load(file) or {}
    if name not in configs:
        raise ConfigError(f"no configuration named {name!r} in {filepath}")
    return build_analyzer(name, configs[name])
