"""Text to numbers: tokenizer, vocabulary, bag-of-words and TF-IDF, word2vec (skip-gram with
negative sampling) trained on the corpus, and document vectors (TF-IDF rows or averaged
word vectors).

Word2vec trains on the array backend (``xp``): one code for NumPy and CuPy.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xsharp import backend

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def tokenize(text: str, lowercase: bool = True, ngrams: int = 1) -> list[str]:
    """Words (letters and digits, inner apostrophes kept: ``don't``), then optionally the
    ``n``-grams up to ``ngrams`` joined by spaces (``"not good"``)."""
    words = _TOKEN.findall(text.lower() if lowercase else text)
    words = [w.replace("’", "'") for w in words]
    out = list(words)
    for n in range(2, ngrams + 1):
        out.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return out


@dataclass
class Vocabulary:
    """Tokens kept for a corpus, most frequent first; ``index`` maps a token to its id."""

    tokens: list[str]
    counts: np.ndarray  # corpus count of each kept token

    def __post_init__(self):
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, documents: Iterable[Sequence[str]], min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        """Keep tokens seen at least ``min_count`` times, the ``max_size`` most frequent (ties by
        token, so the vocabulary never depends on document order)."""
        counts = Counter()
        for doc in documents:
            counts.update(doc)
        kept = sorted(((c, t) for t, c in counts.items() if c >= min_count), key=lambda ct: (-ct[0], ct[1]))
        if max_size is not None:
            kept = kept[:max_size]
        return cls([t for _, t in kept], np.array([c for c, _ in kept], dtype=np.int64))

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Token ids; tokens outside the vocabulary are dropped."""
        index = self.index
        return np.fromiter((index[t] for t in tokens if t in index), dtype=np.int64)


def bag_of_words(ids: Sequence[np.ndarray], size: int, binary: bool = False) -> np.ndarray:
    """Count (or presence) of each vocabulary id per document: ``(n_docs, size)`` float32."""
    out = np.zeros((len(ids), size), np.float32)
    rows = np.repeat(np.arange(len(ids)), [len(d) for d in ids])
    cols = np.concatenate(ids) if len(ids) else np.zeros(0, np.int64)
    np.add.at(out, (rows, cols), 1.0)
    if binary:
        np.minimum(out, 1.0, out=out)
    return out


def inverse_document_frequency(counts: np.ndarray) -> np.ndarray:
    """Smoothed idf from a bag-of-words matrix: ``log((1 + n) / (1 + df)) + 1``."""
    n = counts.shape[0]
    df = (counts > 0).sum(axis=0)
    return (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)


def tfidf(counts: np.ndarray, idf: np.ndarray, sublinear: bool = True) -> np.ndarray:
    """TF-IDF rows, L2-normalised; sublinear tf is ``1 + log(count)``."""
    tf = counts.copy()
    if sublinear:
        nz = tf > 0
        tf[nz] = 1.0 + np.log(tf[nz])
    x = tf * idf
    norms = np.sqrt((x * x).sum(axis=1, keepdims=True))
    return x / np.maximum(norms, 1e-12)


# --------------------------------------------------------------------------- word2vec
def skipgram_pairs(ids: Sequence[np.ndarray], window: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(centre, context) pairs within a window whose radius is drawn per centre from 1..window
    (word2vec's dynamic window: near words count more)."""
    centres, contexts = [], []
    for doc in ids:
        n = len(doc)
        if n < 2:
            continue
        radius = rng.integers(1, window + 1, size=n)
        for offset in range(1, min(window, n - 1) + 1):
            keep = radius[: n - offset] >= offset  # centre i, context i + offset
            centres.append(doc[: n - offset][keep])
            contexts.append(doc[offset:][keep])
            keep = radius[offset:] >= offset  # centre i, context i - offset
            centres.append(doc[offset:][keep])
            contexts.append(doc[: n - offset][keep])
    if not centres:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(centres), np.concatenate(contexts)


def _sigmoid(xp: Any, z: Any) -> Any:
    return 0.5 * (xp.tanh(0.5 * z) + 1.0)


def train_word2vec(
    ids: Sequence[np.ndarray],
    vocab_size: int,
    counts: np.ndarray,
    *,
    dim: int = 100,
    window: int = 5,
    negative: int = 5,
    epochs: int = 5,
    learning_rate: float = 0.025,
    subsample: float = 1e-3,
    batch_size: int = 1024,
    seed: int = 0,
    device: str = "cpu",
) -> np.ndarray:
    """Skip-gram with negative sampling (Mikolov et al. 2013); returns the input vectors ``(V, dim)``.

    For each (centre c, context o) pair and ``negative`` words k drawn from the unigram
    distribution to the 3/4 power, minimise ``-log s(u_o . v_c) - sum_k log s(-u_k . v_c)``
    by minibatch SGD with a learning rate falling linearly to zero. Frequent words are dropped
    with probability ``1 - sqrt(t / f)`` (``subsample`` = t).
    """
    xp = backend.xp(device)
    rng = np.random.default_rng(seed)
    host_v = ((rng.random((vocab_size, dim)) - 0.5) / dim).astype(np.float32)
    v = xp.asarray(host_v)  # input (word) vectors
    u = xp.zeros((vocab_size, dim), dtype=xp.float32)  # output (context) vectors
    freq = counts / max(counts.sum(), 1)
    keep_p = np.minimum(1.0, np.sqrt(subsample / np.maximum(freq, 1e-12))) if subsample else np.ones(vocab_size)
    noise = counts.astype(np.float64) ** 0.75
    noise_cdf = xp.asarray(np.cumsum(noise / noise.sum()))

    epoch_pairs = []
    for _ in range(epochs):
        kept = [doc[rng.random(len(doc)) < keep_p[doc]] for doc in ids]
        c, o = skipgram_pairs(kept, window, rng)
        order = rng.permutation(len(c))
        epoch_pairs.append((c[order], o[order]))
    total = sum(len(c) for c, _ in epoch_pairs)
    done = 0
    device_rng = backend.rng((seed, 0x2E2), device)
    for c_all, o_all in epoch_pairs:
        for lo in range(0, len(c_all), batch_size):
            c = xp.asarray(c_all[lo : lo + batch_size])
            o = xp.asarray(o_all[lo : lo + batch_size])
            b = c.shape[0]
            lr = learning_rate * max(1e-4, 1.0 - done / max(total, 1))
            done += b
            negs = xp.searchsorted(noise_cdf, device_rng.random((b, negative)))
            negs = xp.minimum(negs, vocab_size - 1)
            targets = xp.concatenate([o[:, None], negs], axis=1)  # (b, 1 + negative)
            labels = xp.zeros((b, 1 + negative), dtype=xp.float32)
            labels[:, 0] = 1.0
            vc = v[c]  # (b, dim)
            ut = u[targets]  # (b, 1+k, dim)
            score = _sigmoid(xp, xp.einsum("bd,bkd->bk", vc, ut))
            g = (score - labels) * lr  # d loss / d logit, times the step size
            grad_v = xp.einsum("bk,bkd->bd", g, ut)
            grad_u = g[:, :, None] * vc[:, None, :]
            xp.add.at(u, targets.reshape(-1), -grad_u.reshape(-1, dim))
            xp.add.at(v, c, -grad_v)
    return backend.to_host(v)


def average_embeddings(ids: Sequence[np.ndarray], vectors: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Each document as the (optionally weighted) mean of its words' vectors; empty ones are zeros."""
    out = np.zeros((len(ids), vectors.shape[1]), np.float32)
    for i, doc in enumerate(ids):
        if len(doc):
            w = np.ones(len(doc), np.float32) if weights is None else weights[doc]
            out[i] = (w[:, None] * vectors[doc]).sum(axis=0) / max(float(w.sum()), 1e-12)
    return out


def nearest(word: str, vocab: Vocabulary, vectors: np.ndarray, k: int = 5) -> list[str]:
    """The ``k`` words whose vectors have the highest cosine similarity to ``word``'s."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit[vocab.index[word]]
    best = [i for i in np.argsort(-sims) if i != vocab.index[word]][:k]
    return [vocab.tokens[i] for i in best]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(math.sqrt(float(a @ a) * float(b @ b)), 1e-12))
