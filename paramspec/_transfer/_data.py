"""An offline character-level text corpus for transfer sweeps: no downloads, ever.

The text is CPython's own documentation: `pydoc_data.topics` (the topics of
`help()`: the language reference in English, about 465k characters in Python
3.11). Builds that strip `pydoc_data` fall back to the docstrings of a fixed list
of standard-library modules. Either way the text depends on the Python version,
so losses are comparable only between runs on the same Python (the sweep should
record `platform.python_version()`).

Tokens are characters: `char_vocab` keeps the most frequent ones and maps the rest
to one `unk` token. `batches` draws deterministic random windows from a fixed
split: the first 90% of the tokens train, the last 10% validate.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._errors import SpecError

__all__ = [
    "DEFAULT_VOCAB_SIZE",
    "VAL_FRACTION",
    "CharVocab",
    "DataError",
    "batches",
    "char_vocab",
    "corpus",
    "split_tokens",
]

#: Tokens of the default vocabulary: 95 characters + unk, 99.99% of the pydoc text.
DEFAULT_VOCAB_SIZE = 96
#: The last `VAL_FRACTION` of the tokens are the validation split.
VAL_FRACTION = 0.1

# The fallback corpus: modules whose documentation is ordinary English prose.
_FALLBACK_MODULES = (
    "builtins",
    "argparse",
    "collections",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "enum",
    "fractions",
    "functools",
    "inspect",
    "itertools",
    "json",
    "logging",
    "pathlib",
    "random",
    "re",
    "statistics",
    "string",
    "textwrap",
    "typing",
    "unittest",
)


class DataError(SpecError, ValueError):
    """The corpus or a batch request is invalid."""


def _pydoc_topics() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def _docstrings() -> str:
    parts = []
    with warnings.catch_warnings():  # reading some docs warns (e.g. typing.io is deprecated)
        warnings.simplefilter("ignore")
        for name in _FALLBACK_MODULES:
            module = importlib.import_module(name)
            parts.append(inspect.getdoc(module) or "")
            for attribute, value in sorted(vars(module).items()):
                public = not attribute.startswith("_")
                if public and (inspect.isclass(value) or inspect.isroutine(value)):
                    parts.append(f"{attribute}\n{inspect.getdoc(value) or ''}")
    return "\n\n".join(part for part in dict.fromkeys(parts) if part.strip())


@functools.cache
def corpus(source: Literal["auto", "pydoc", "docstrings"] = "auto") -> str:
    """The corpus text (cached).

    - `"pydoc"`: `pydoc_data.topics`, the topics joined in sorted order.
    - `"docstrings"`: the docstrings of `_FALLBACK_MODULES` and their public classes
      and functions, in sorted order, duplicates dropped.
    - `"auto"`: `"pydoc"` if this Python ships it, else `"docstrings"`.

    ```python
    text = corpus()
    assert len(text) > 100_000 and text == corpus()
    ```
    """
    if source == "pydoc" or source == "auto":
        try:
            return _pydoc_topics()
        except ImportError:
            if source == "pydoc":
                raise DataError(
                    "This Python has no `pydoc_data` (some distributions strip it); use "
                    "corpus('docstrings') or corpus('auto')."
                ) from None
    if source in ("docstrings", "auto"):
        return _docstrings()
    raise DataError(f"Unknown corpus source {source!r}; use 'auto', 'pydoc' or 'docstrings'.")


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


@dataclass(frozen=True)
class CharVocab:
    """Characters to token ids: `chars[i]` is id `i`; every other character is `unk_id`."""

    chars: str  # the kept characters, most frequent first

    @property
    def size(self) -> int:
        """Number of token ids, unk included."""
        return len(self.chars) + 1

    @property
    def unk_id(self) -> int:
        """The id of every character not in `chars` (the last id)."""
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of `text`, an int32 array of `len(text)`."""
        points = _codepoints(text)
        ords = np.array([ord(c) for c in self.chars], dtype=np.int64)
        top = int(max(points.max(initial=0), ords.max(initial=0))) + 1
        # A lookup table over code points: one vectorised gather instead of a dict per char.
        table = np.full(top, self.unk_id, dtype=np.int32)
        table[ords] = np.arange(len(self.chars), dtype=np.int32)
        return table[points]

    def decode(self, ids: Any) -> str:
        """The text of token ids; `unk_id` decodes to U+FFFD."""
        alphabet = self.chars + "\ufffd"
        return "".join(alphabet[i] for i in np.asarray(ids).ravel().tolist())

    def coverage(self, text: str) -> float:
        """The fraction of the characters of `text` that are not unk."""
        return float(np.mean(self.encode(text) != self.unk_id)) if text else 1.0


def char_vocab(text: str, size: int = DEFAULT_VOCAB_SIZE) -> CharVocab:
    """The `size - 1` most frequent characters of `text` (ties by code point), plus unk.

    ```python
    vocab = char_vocab("abracadabra", size=3)
    assert vocab.chars == "ab" and vocab.decode(vocab.encode("abc")) == "ab\\ufffd"
    ```
    """
    if not (isinstance(size, int) and size >= 2):
        raise DataError(f"`size` counts the unk token too and must be an int >= 2; got {size!r}.")
    counts = Counter(text)
    ranked = sorted(counts, key=lambda c: (-counts[c], ord(c)))
    return CharVocab("".join(ranked[: size - 1]))


@functools.lru_cache(maxsize=4)
def _encoded(text: str, vocab: CharVocab) -> np.ndarray:
    tokens = vocab.encode(text)
    tokens.setflags(write=False)
    return tokens


@functools.cache
def _default_vocab() -> CharVocab:
    return char_vocab(corpus(), DEFAULT_VOCAB_SIZE)


def split_tokens(
    split: Literal["train", "val"] = "train",
    *,
    vocab: CharVocab | None = None,
    text: str | None = None,
) -> np.ndarray:
    """The (read-only) int32 tokens of one split: the first 90% train, the last 10% val.

    `text` defaults to `corpus()` and `vocab` to `char_vocab(corpus())`.
    """
    text = corpus() if text is None else text
    vocab = _default_vocab() if vocab is None else vocab
    tokens = _encoded(text, vocab)
    cut = len(tokens) - int(len(tokens) * VAL_FRACTION)
    if split == "train":
        return tokens[:cut]
    if split == "val":
        return tokens[cut:]
    raise DataError(f"Unknown split {split!r}; use 'train' or 'val'.")


def _generator(seed: Any) -> np.random.Generator:
    """A numpy generator from an int seed or a JAX PRNG key (typed or raw uint32)."""
    if isinstance(seed, bool):
        raise DataError(f"The seed must be an int >= 0 or a JAX PRNG key; got {seed!r}.")
    if isinstance(seed, int | np.integer):
        if seed < 0:
            raise DataError(f"The seed must be an int >= 0 or a JAX PRNG key; got {seed!r}.")
        return np.random.default_rng(int(seed))
    if "key<" in str(getattr(seed, "dtype", "")):  # a typed key: jax.random.key(...)
        import jax

        seed = jax.random.key_data(seed)
    words = np.asarray(seed)
    if words.dtype != np.uint32 or words.size == 0:
        raise DataError(
            f"The seed must be an int >= 0 or a JAX PRNG key; got {type(seed).__name__} "
            f"of dtype {words.dtype}."
        )
    return np.random.default_rng(np.random.SeedSequence(words.ravel().tolist()))


def batches(
    seed: Any,
    seq_len: int,
    batch_size: int,
    split: Literal["train", "val"] = "train",
    *,
    num_batches: int | None = None,
    vocab: CharVocab | None = None,
    text: str | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Deterministic batches `(inputs, targets)` of int32 tokens, `[batch_size, seq_len]`.

    Each row is a window of `seq_len + 1` consecutive tokens of the split, at a start
    drawn uniformly (with replacement) by a numpy generator seeded with `seed` (an
    int, or a JAX PRNG key); `targets` is `inputs` shifted by one token. The same
    seed gives the same batches. Endless unless `num_batches` is given.

    ```python
    x, y = next(batches(0, seq_len=16, batch_size=4))
    assert x.shape == y.shape == (4, 16) and (x[:, 1:] == y[:, :-1]).all()
    ```
    """
    for name, value in (("seq_len", seq_len), ("batch_size", batch_size)):
        if not (isinstance(value, int) and value >= 1):
            raise DataError(f"`{name}` must be an int >= 1; got {value!r}.")
    if num_batches is not None and not (isinstance(num_batches, int) and num_batches >= 0):
        raise DataError(f"`num_batches` must be None or an int >= 0; got {num_batches!r}.")
    tokens = split_tokens(split, vocab=vocab, text=text)
    if len(tokens) < seq_len + 1:
        raise DataError(
            f"The {split!r} split has {len(tokens)} tokens, fewer than seq_len + 1 = "
            f"{seq_len + 1}; use a shorter seq_len or a longer text."
        )
    rng = _generator(seed)
    return _windows(rng, tokens, seq_len, batch_size, num_batches)


def _windows(
    rng: np.random.Generator,
    tokens: np.ndarray,
    seq_len: int,
    batch_size: int,
    num_batches: int | None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    offsets = np.arange(seq_len + 1)
    count = 0
    while num_batches is None or count < num_batches:
        starts = rng.integers(0, len(tokens) - seq_len, size=batch_size)
        window = tokens[starts[:, None] + offsets]
        yield window[:, :-1], window[:, 1:]
        count += 1
