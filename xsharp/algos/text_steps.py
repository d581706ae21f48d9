"""The text steps of ``data.features``: texts to bag-of-words counts, TF-IDF rows or averaged
word2vec vectors, over a vocabulary fitted on the training texts."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from .feature_step import Step, StepOptions
from .nlp import Vocabulary, average_embeddings, bag_of_words, inverse_document_frequency, tfidf, tokenize, train_word2vec


class VocabularyOptions(StepOptions):
    min_count: int = Field(2, ge=1, le=1_000_000_000, description="drop tokens seen fewer times in the training texts")
    max_size: int = Field(20000, gt=0, le=1_000_000, description="keep at most this many tokens, most frequent first")
    ngrams: int = Field(1, ge=1, le=3, description="1: words; 2: words and word pairs; 3: also triples")
    lowercase: bool = True


class _Text(Step):
    """Steps that tokenise and keep a vocabulary fitted on the training texts."""

    def _ids(self, texts) -> list[np.ndarray]:
        if not hasattr(self, "_vocab"):
            self._vocab = Vocabulary([str(t) for t in self.state["tokens"]], self.state["counts"])
        o = self.options
        return [self._vocab.encode(tokenize(str(t), o.lowercase, o.ngrams)) for t in texts]

    def _fit_vocabulary(self, texts) -> list[np.ndarray]:
        o = self.options
        vocab = Vocabulary.build((tokenize(str(t), o.lowercase, o.ngrams) for t in texts), o.min_count, o.max_size)
        if not len(vocab):
            raise ValueError(f"{self.kind}: no token occurs {o.min_count} times in the training texts; lower min_count")
        self._vocab = vocab
        self.state = {"tokens": np.array(vocab.tokens, dtype=str), "counts": vocab.counts}
        return self._ids(texts)


class BagOfWordsOptions(VocabularyOptions):
    binary: bool = Field(False, description="1 for a token present, instead of its count")


class BagOfWords(_Text):
    kind = "bow"
    summary = "texts -> token counts over the training vocabulary (n, vocabulary)"
    Options = BagOfWordsOptions

    def fit(self, x, seed, device):
        self._fit_vocabulary(x)

    def transform(self, x):
        return bag_of_words(self._ids(x), len(self.state["tokens"]), self.options.binary)


class TfIdfOptions(VocabularyOptions):
    sublinear: bool = Field(True, description="term frequency 1 + log(count) instead of the count")


class TfIdf(_Text):
    kind = "tfidf"
    summary = "texts -> L2-normalised TF-IDF rows over the training vocabulary (n, vocabulary)"
    Options = TfIdfOptions

    def fit(self, x, seed, device):
        ids = self._fit_vocabulary(x)
        self.state["idf"] = inverse_document_frequency(bag_of_words(ids, len(self.state["tokens"])))

    def transform(self, x):
        return tfidf(bag_of_words(self._ids(x), len(self.state["tokens"])), self.state["idf"], self.options.sublinear)


class Word2VecOptions(VocabularyOptions):
    ngrams: Literal[1] = Field(1, description="word2vec learns vectors of single words")
    dim: int = Field(100, gt=0, le=4096, description="size of a word vector")
    window: int = Field(5, gt=0, le=50, description="largest distance between a word and its context words")
    negative: int = Field(5, gt=0, le=100, description="noise words per (word, context) pair")
    epochs: int = Field(5, gt=0, le=1000)
    learning_rate: float = Field(0.025, gt=0, le=10, description="start; falls linearly to zero")
    subsample: float = Field(1e-3, ge=0, le=1, description="frequent-word down-sampling threshold t; 0 turns it off")
    batch_size: int = Field(1024, gt=0, le=1_000_000, description="(word, context) pairs per update")
    weighting: Literal["mean", "tfidf"] = Field("mean", description="document vector: plain mean of its word vectors, or idf-weighted")


class Word2Vec(_Text):
    kind = "word2vec"
    summary = "texts -> averaged skip-gram word vectors trained on the training texts (n, dim)"
    Options = Word2VecOptions

    def fit(self, x, seed, device):
        ids = self._fit_vocabulary(x)
        o = self.options
        size = len(self.state["tokens"])
        self.state["vectors"] = train_word2vec(
            ids,
            size,
            self.state["counts"],
            dim=o.dim,
            window=o.window,
            negative=o.negative,
            epochs=o.epochs,
            learning_rate=o.learning_rate,
            subsample=o.subsample,
            batch_size=o.batch_size,
            seed=seed,
            device=device,
        )
        self.state["idf"] = inverse_document_frequency(bag_of_words(ids, size))

    def transform(self, x):
        weights = self.state["idf"] if self.options.weighting == "tfidf" else None
        return average_embeddings(self._ids(x), self.state["vectors"], weights)
