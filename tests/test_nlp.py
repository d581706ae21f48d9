"""Tokenizer, vocabulary, bag-of-words / TF-IDF (checked against scikit-learn) and word2vec."""

import numpy as np

from xsharp.algos import nlp

DOCS = ["The cat sat on the mat.", "The dog didn't sit; the dog ran!", "A cat and a dog", "Mats, cats and DOGS"]


def test_tokenizer_keeps_words_and_inner_apostrophes():
    assert nlp.tokenize("Didn't the dog’s 2 cats run?") == ["didn't", "the", "dog's", "2", "cats", "run"]
    assert nlp.tokenize("not very good", ngrams=2) == ["not", "very", "good", "not very", "very good"]
    assert nlp.tokenize("Keep Case", lowercase=False) == ["Keep", "Case"]


def test_vocabulary_min_count_max_size_and_stable_order():
    docs = [nlp.tokenize(d) for d in DOCS]
    vocab = nlp.Vocabulary.build(docs, min_count=2)
    assert vocab.tokens[:2] == ["the", "dog"] and "mat" not in vocab.index  # by count, then alphabetically
    assert vocab.tokens == nlp.Vocabulary.build(docs[::-1], min_count=2).tokens
    assert len(nlp.Vocabulary.build(docs, max_size=3)) == 3
    assert vocab.encode(["the", "zebra", "dog"]).tolist() == [0, 1]


def test_bag_of_words_and_tfidf_match_scikit_learn():
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    docs = [nlp.tokenize(d) for d in DOCS]
    vocab = nlp.Vocabulary.build(docs)
    ids = [vocab.encode(d) for d in docs]
    counts = nlp.bag_of_words(ids, len(vocab))
    ref_counts = CountVectorizer(tokenizer=nlp.tokenize, lowercase=False, token_pattern=None, vocabulary=vocab.index).fit_transform(DOCS).toarray()
    np.testing.assert_array_equal(counts, ref_counts)
    assert nlp.bag_of_words(ids, len(vocab), binary=True).max() == 1
    ours = nlp.tfidf(counts, nlp.inverse_document_frequency(counts), sublinear=True)
    ref = TfidfVectorizer(tokenizer=nlp.tokenize, lowercase=False, token_pattern=None, vocabulary=vocab.index, sublinear_tf=True).fit_transform(DOCS)
    np.testing.assert_allclose(ours, ref.toarray(), rtol=1e-5, atol=1e-6)


def test_skipgram_pairs_stay_inside_the_window():
    doc = np.arange(6)
    c, o = nlp.skipgram_pairs([doc, np.array([9])], window=2, rng=np.random.default_rng(0))
    assert len(c) == len(o) > 0 and np.all(np.abs(c - o) <= 2) and np.all(c != o) and 9 not in c


def test_word2vec_puts_words_of_shared_contexts_together():
    """Two topics that never mix: words of one topic end up closer to each other than to the other's."""
    rng = np.random.default_rng(0)
    topics = [["cat", "dog", "pet", "fur", "paw"], ["stock", "bond", "market", "fund", "trade"]]
    docs = [" ".join(rng.choice(topics[i % 2], 8)) for i in range(300)]
    vocab = nlp.Vocabulary.build([nlp.tokenize(d) for d in docs])
    ids = [vocab.encode(nlp.tokenize(d)) for d in docs]
    vectors = nlp.train_word2vec(ids, len(vocab), vocab.counts, dim=16, window=3, negative=3, epochs=3, subsample=0, seed=1)
    again = nlp.train_word2vec(ids, len(vocab), vocab.counts, dim=16, window=3, negative=3, epochs=3, subsample=0, seed=1)
    np.testing.assert_array_equal(vectors, again)  # seeded: the same vectors every run
    v = {w: vectors[vocab.index[w]] for w in topics[0] + topics[1]}
    within = np.mean([nlp.cosine(v["cat"], v[w]) for w in topics[0][1:]])
    across = np.mean([nlp.cosine(v["cat"], v[w]) for w in topics[1]])
    assert within > across + 0.5
    assert set(nlp.nearest("stock", vocab, vectors, 3)) <= set(topics[1])
    docs_vec = nlp.average_embeddings([vocab.encode(["cat", "dog"]), np.zeros(0, np.int64)], vectors)
    np.testing.assert_allclose(docs_vec[0], (v["cat"] + v["dog"]) / 2, rtol=1e-5)
    assert not docs_vec[1].any()
