"""The offline character corpus: real text, a covering vocabulary, deterministic batches."""

import itertools

import numpy as np
import pytest

from paramspec._transfer import _data
from paramspec._transfer._data import (
    DEFAULT_VOCAB_SIZE,
    VAL_FRACTION,
    DataError,
    batches,
    char_vocab,
    corpus,
    split_tokens,
)

from . import run_docstring_examples


@pytest.mark.parametrize("source", ["auto", "pydoc", "docstrings"])
def test_corpus_is_real_english_text(source):
    text = corpus(source)
    assert len(text) > 150_000
    assert text == corpus(source)
    words = text.split()
    assert sum(w.lower() in {"the", "a", "of", "is", "to"} for w in words) > 0.05 * len(words)


def test_pydoc_is_the_default_source():
    pytest.importorskip("pydoc_data.topics")
    assert corpus() == corpus("pydoc")
    assert 'The "if" statement' in corpus() or "if_stmt" in corpus()


def test_unknown_source():
    with pytest.raises(DataError, match="Unknown corpus source 'web'; use 'auto'"):
        corpus("web")


def test_vocab_keeps_the_most_frequent_characters():
    vocab = char_vocab("aaabbc!", size=3)
    assert vocab.chars == "ab" and vocab.size == 3 and vocab.unk_id == 2
    np.testing.assert_array_equal(vocab.encode("abc!a"), [0, 1, 2, 2, 0])
    assert vocab.decode([0, 1, 2]) == "ab\ufffd"
    assert vocab.coverage("aaabbc!") == pytest.approx(5 / 7)
    assert char_vocab("ba", size=3).chars == "ab"  # ties by code point


@pytest.mark.parametrize(("size", "coverage"), [(DEFAULT_VOCAB_SIZE, 0.999), (64, 0.99)])
def test_vocab_covers_most_of_the_corpus(size, coverage):
    text = corpus()
    vocab = char_vocab(text, size=size)
    assert vocab.size == size
    assert vocab.coverage(text) > coverage
    ids = vocab.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert ids.min() >= 0 and ids.max() < size
    sample = text[:2000]
    assert vocab.decode(vocab.encode(sample)) == "".join(
        c if c in vocab.chars else "\ufffd" for c in sample
    )


def test_vocab_errors():
    with pytest.raises(DataError, match="`size` counts the unk token too and must be an int >= 2"):
        char_vocab("abc", size=1)


def test_splits_are_a_fixed_partition():
    train, val = split_tokens("train"), split_tokens("val")
    assert len(val) == int((len(train) + len(val)) * VAL_FRACTION)
    whole = char_vocab(corpus()).encode(corpus())
    np.testing.assert_array_equal(np.concatenate([train, val]), whole)
    with pytest.raises(ValueError, match="read-only"):
        train[0] = 1
    with pytest.raises(DataError, match="Unknown split 'test'; use 'train' or 'val'"):
        split_tokens("test")


def test_batches_shapes_and_shift():
    xs, ys = next(batches(0, seq_len=32, batch_size=8))
    assert xs.shape == ys.shape == (8, 32) and xs.dtype == np.int32
    np.testing.assert_array_equal(xs[:, 1:], ys[:, :-1])


def test_batches_are_deterministic():
    def take(seed, split="train", n=3):
        return list(batches(seed, 16, 4, split, num_batches=n))

    first, again, other = take(1), take(1), take(2)
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(first[0][0], other[0][0])
    assert not np.array_equal(first[0][0], first[1][0])  # successive batches differ
    assert len(take(1, n=0)) == 0


def test_val_batches_come_from_the_val_split():
    val = split_tokens("val")
    windows = np.lib.stride_tricks.sliding_window_view(val, 17)
    for x, y in batches(3, 16, 4, "val", num_batches=2):
        for row in np.concatenate([x, y[:, -1:]], axis=1):
            assert (windows == row).all(axis=1).any()


def test_a_jax_key_seeds_batches():
    jax = pytest.importorskip("jax")
    typed = next(batches(jax.random.key(7), 8, 2))[0]
    raw = next(batches(jax.random.PRNGKey(7), 8, 2))[0]
    np.testing.assert_array_equal(typed, raw)
    assert not np.array_equal(typed, next(batches(jax.random.key(8), 8, 2))[0])


def test_batches_on_custom_text():
    vocab = char_vocab("hello world", size=9)  # all 8 characters + unk
    (x, y), *_ = itertools.islice(batches(0, 4, 2, text="hello world" * 10, vocab=vocab), 2)
    assert vocab.decode(x[0]) in "hello world" * 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(seq_len=0), r"`seq_len` must be an int >= 1; got 0"),
        (dict(batch_size=2.0), r"`batch_size` must be an int >= 1; got 2\.0"),
        (dict(num_batches=-1), r"`num_batches` must be None or an int >= 0"),
        (dict(seed=-1), r"seed must be an int >= 0 or a JAX PRNG key; got -1"),
        (dict(seed=1.5), r"seed must be an int >= 0 or a JAX PRNG key; got float"),
        (dict(seq_len=10**7), r"The 'train' split has \d+ tokens, fewer than seq_len \+ 1"),
    ],
)
def test_batch_errors(kwargs, message):
    arguments = dict(seed=0, seq_len=8, batch_size=2) | kwargs
    with pytest.raises(DataError, match=message):
        batches(**arguments)


def test_docstring_examples_run():
    assert run_docstring_examples(_data) >= 1
