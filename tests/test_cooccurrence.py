"""TADA's co-occurrence model and candidate sets (recbole_faerec/data/cooccurrence.py): SLIS against
a direct dense computation on ml-100k's real training sequences, the lists, the labels, adjacency,
and the cache beside the atomic files."""

import logging

import numpy as np
import pytest
from conftest import TINY_SASREC, build_model

from recbole_faerec.data.cooccurrence import (adjacency, candidate_sets, cooccurrence_model,
                                              slis_matrix, top_similar, training_head,
                                              training_sequences)


@pytest.fixture(scope="module")
def ml100k():
    config, model, train = build_model("SASRec", {**TINY_SASREC, "MAX_ITEM_LIST_LENGTH": 50,
                                                  "state": "WARNING"})
    seqs = training_sequences(train._dataset, "item_id_list", "item_length", "item_id", "user_id")
    return seqs, model.n_items


def test_training_sequences_are_each_users_training_part(ml100k):
    seqs, n_items = ml100k
    assert len(seqs) == 943  # one per user
    assert all(len(s) >= 2 and (s > 0).all() and (s < n_items).all() for s in seqs)


def test_slis_equals_the_dense_closed_form(ml100k):
    seqs, n_items = ml100k
    items, b = slis_matrix(seqs, n_items)
    # by the formula, in float64, with a dense user x item matrix over every seen item
    seen = np.unique(np.concatenate([s[-50:] for s in seqs]))
    assert np.array_equal(items, seen)
    x = np.zeros((len(seqs), len(seen)))
    for u, s in enumerate(seqs):
        x[u, np.searchsorted(seen, np.unique(s[-50:]))] = 1
    p = np.linalg.inv(x.T @ x + 0.1 * np.eye(len(seen)))
    gamma = np.array([0.1 if 1 - 0.1 * p[j, j] <= 0.2 else 0.8 / p[j, j] for j in range(len(seen))])
    expected = np.eye(len(seen)) - p @ np.diag(gamma)
    np.fill_diagonal(expected, np.minimum(np.diag(expected), 0.2))
    np.testing.assert_allclose(b, expected, atol=2e-4)


def test_top_similar_by_hand():
    items = np.array([3, 5, 8, 9])
    b = np.array([[0.2, 0.5, 0.1, 0.4],
                  [0.0, 0.2, 0.05, 0.01],
                  [0.3, 0.3, 0.2, 0.9],
                  [0.1, 0.1, 0.1, 0.2]])
    lists = top_similar(items, b, th=0.3, top_k=2)
    assert lists[3].tolist() == [5, 9]  # both pass, best first, not itself
    assert lists[5].tolist() == [8, 9]  # none passes: the plain top 2
    assert lists[8].tolist() == [9, 3]  # 0.9, then the first of the 0.3 tie
    assert lists[9].tolist() == [3, 5]


def test_head_tail_labels_and_adjacency_by_hand():
    seqs = [np.array([1, 2, 3, 2]), np.array([4, 2, 1, 5]), np.array([6, 1])]
    label = training_head(seqs, 8, 0.4)  # 6 seen items: the top 2 by count are head
    assert label.tolist() == [-1, 1, 1, 0, 0, 0, 0, -1]  # 1 and 2 (3 each); 0 and 7 unseen
    head_rel, tail_rel = adjacency(seqs, label)
    assert head_rel == {2: {3, 4}, 1: {5, 6}}  # tail items right before or after a head item
    assert tail_rel == {3: {2}, 5: {1}}  # every item right before a tail item
    sets = candidate_sets(seqs, 8, 0.4, th=0.0, top_k=1)
    for h in (1, 2):
        assert set(head_rel[h]) <= set(sets.head[h].tolist())
    assert set(sets.tail) == {3, 4, 5, 6} and set(sets.head) == {1, 2}


def test_the_model_is_cached_and_recomputed_when_the_data_change(ml100k, tmp_path, caplog):
    seqs, n_items = ml100k
    path = str(tmp_path / "ml-100k.tada.npz")
    log = logging.getLogger("tada-test")
    with caplog.at_level(logging.INFO, "tada-test"):
        first = cooccurrence_model(path, seqs, n_items, 0.2, 0.3, 10, log)
        again = cooccurrence_model(path, seqs, n_items, 0.2, 0.3, 10, log)
        other = cooccurrence_model(path, seqs[:-1], n_items, 0.2, 0.3, 10, log)
    assert caplog.text.count("computed and cached") == 2 and caplog.text.count("reused") == 1
    assert np.array_equal(first.label, again.label)
    assert first.head.keys() == again.head.keys() and first.tail.keys() == again.tail.keys()
    assert all(np.array_equal(first.head[h], again.head[h]) for h in first.head)
    assert all(np.array_equal(first.tail[t], again.tail[t]) for t in first.tail)
    assert len(other.label) == n_items  # the changed data were computed anew (the log above)


def test_a_capped_model_keeps_the_items_in_the_most_sequences(ml100k):
    seqs, n_items = ml100k
    items, b = slis_matrix(seqs, n_items, max_items=300)
    per_item = np.zeros(n_items, dtype=int)
    for s in seqs:
        per_item[np.unique(s[-50:])] += 1
    assert len(items) == 300 and set(items) == set(np.argsort(-per_item, kind="stable")[:300])
    # the same closed form over those columns only
    x = np.zeros((len(seqs), 300))
    for u, s in enumerate(seqs):
        kept = np.intersect1d(np.unique(s[-50:]), items)
        x[u, np.searchsorted(items, kept)] = 1
    p = np.linalg.inv(x.T @ x + 0.1 * np.eye(300))
    gamma = np.where(1 - 0.1 * np.diag(p) <= 0.2, 0.1, 0.8 / np.diag(p))
    expected = np.eye(300) - p * gamma[None, :]
    np.fill_diagonal(expected, np.minimum(np.diag(expected), 0.2))
    np.testing.assert_allclose(b, expected, atol=2e-4)
    sets = candidate_sets(seqs, n_items, 0.2, 0.3, 10, max_items=300)
    _, tail_rel = adjacency(seqs, sets.label)
    left_out = [t for t in sets.tail if t not in set(items)]
    assert left_out and all(set(sets.tail[t].tolist()) == tail_rel.get(t, set()) for t in left_out)
