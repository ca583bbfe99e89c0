"""Tail-aware metrics in RecBole's evaluator: hand-computed values, popularity, config errors."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.evaluator import Evaluator

import recbole_faerec  # noqa: F401  (registers the metrics)
from recbole_faerec.evaluator import (
    EvaluationConfigError,
    ItemPopularity,
    TailCollector,
    attach_item_popularity,
)
from recbole_faerec.evaluator.metrics import POPULARITY, TAIL_MASK
from recbole_faerec.evaluator.popularity import check_against_data, evaluation_popularity
from recbole_faerec.quick_start import build_config

from conftest import REPO, hand_train_popularity, run_py

TAIL_METRICS = ["Hit", "NDCG", "TailHit", "TailNDCG", "HeadHit", "HeadNDCG", "Coverage",
                "TailCoverage", "ItemCoverage", "GroupHit", "GroupNDCG"]

# Ten items; counts per internal id (0 = padding). Items 2 and 3 tie at 40 and item 3 was seen
# first, so with head_ratio 0.2 (2 head items) the head is {1, 3} and item 2 is tail.
COUNTS = np.array([0, 50, 40, 40, 20, 10, 5, 5, 5, 2, 1])
FIRST_SEEN = np.array([99, 0, 7, 3, 1, 2, 4, 5, 6, 8, 9])


def _config(**extra):
    return build_config("SASRec", "ml-100k", config_dict={
        "metrics": TAIL_METRICS, "topk": [1, 3], "popularity_groups": [1, 5, 20],
        "metric_decimal_place": 6, **extra})


def _collector(config):
    """A TailCollector holding the popularity of :data:`COUNTS` (what ``data_collect`` stores)."""
    popularity = ItemPopularity(COUNTS, FIRST_SEEN)
    collector = TailCollector(config)
    collector.data_struct.set(POPULARITY, torch.as_tensor(popularity.counts))
    collector.data_struct.set(TAIL_MASK, torch.as_tensor(popularity.tail_mask(config["head_ratio"])))
    collector.data_struct.set("data.num_items", len(COUNTS))
    return collector


def _evaluate(config, scores, targets):
    """RecBole's Evaluator on what the TailCollector collected for these rows."""
    collector = _collector(config)
    scores = torch.tensor(scores, dtype=torch.float)
    scores[:, 0] = -math.inf  # RecBole's full-sort evaluation never ranks the padding id
    collector.eval_batch_collect(scores, None, torch.arange(len(targets)), torch.tensor(targets))
    return Evaluator(config).evaluate(collector.get_data_struct())


def _ranked(order):
    """A score row that ranks ``order`` (item ids) first, in that order, then the rest."""
    row = [0.0] * len(COUNTS)
    for rank, item in enumerate(order):
        row[item] = 100.0 - rank
    return row


def test_head_tail_split_breaks_ties_by_first_appearance():
    popularity = ItemPopularity(COUNTS, FIRST_SEEN)
    assert popularity.ranking().tolist() == [1, 3, 2, 4, 5, 6, 7, 8, 9, 10]
    assert np.flatnonzero(popularity.head_mask(0.2)).tolist() == [1, 3]
    assert np.flatnonzero(popularity.tail_mask(0.2)).tolist() == [2, 4, 5, 6, 7, 8, 9, 10]
    assert np.flatnonzero(popularity.head_mask(0.3)).tolist() == [1, 2, 3]  # floor(0.3 * 10) = 3


def test_metrics_equal_hand_computed_values():
    config = _config()
    rows = [
        _ranked([1, 4, 5]),  # target 1 (head) at rank 1
        _ranked([4, 3, 5]),  # target 3 (head: wins the tie) at rank 2
        _ranked([4, 5, 2]),  # target 2 (tail: loses the tie) at rank 3
        _ranked([4, 5, 6]),  # target 9 (tail) not in the top 3
    ]
    result = _evaluate(config, rows, [1, 3, 2, 9])
    ndcg2, ndcg3 = 1 / math.log2(3), 1 / math.log2(4)
    expected = {
        "hit@1": 1 / 4, "hit@3": 3 / 4, "ndcg@3": (1 + ndcg2 + ndcg3) / 4,
        "headhit@1": 1 / 2, "headhit@3": 1.0, "headndcg@1": 1 / 2, "headndcg@3": (1 + ndcg2) / 2,
        "tailhit@1": 0.0, "tailhit@3": 1 / 2, "tailndcg@3": ndcg3 / 2,
        # top-1 lists: {1, 4}; top-3 lists: {1, 2, 3, 4, 5, 6}; tail items: 2, 4..10 (8 items)
        "coverage@1": 2 / 10, "coverage@3": 6 / 10,
        "tailcoverage@1": 1 / 8, "tailcoverage@3": 4 / 8,
        # RecBole's own ItemCoverage divides by the item ids including padding (11)
        "itemcoverage@3": 6 / 11,
        # groups by target popularity: 1-4 (item 9), 5-19 (no target), 20+ (items 1, 2, 3)
        "grouphit_20+@1": 1 / 3, "grouphit_20+@3": 1.0, "grouphit_1-4@3": 0.0,
        "groupndcg_20+@3": (1 + ndcg2 + ndcg3) / 3,
    }
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-6), key
    assert math.isnan(result["grouphit_5-19@3"])  # the group has items but no evaluated row


def test_group_without_items_is_left_out_and_empty_subset_is_nan():
    config = _config(popularity_groups=[1, 3, 60])  # nothing has 60 or more interactions
    result = _evaluate(config, [_ranked([1, 2, 3]), _ranked([3, 1, 2])], [1, 3])  # head targets only
    assert not any(key.startswith("grouphit_60+") for key in result)
    assert result["headhit@1"] == pytest.approx(1.0)
    assert math.isnan(result["tailhit@3"]) and math.isnan(result["tailndcg@1"])


def test_several_targets_per_row_are_refused():
    config = _config()
    collector = _collector(config)
    scores = torch.tensor([_ranked([1, 2, 3])] * 2)
    collector.eval_batch_collect(scores, None, torch.tensor([0, 0, 1]), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="one target item per evaluation row"):
        Evaluator(config).evaluate(collector.get_data_struct())


@pytest.fixture(scope="module")
def ml100k():
    config = _config(MAX_ITEM_LIST_LENGTH=5)
    dataset = create_dataset(config)
    attached = attach_item_popularity(dataset)
    train, valid, test = data_preparation(config, dataset)
    return config, dataset, attached, train, test


def test_whole_data_popularity_counts_every_interaction_of_the_file(ml100k):
    config, dataset, popularity, train, _ = ml100k
    inter = dataset.field2id_token[dataset.iid_field]
    # the same counts straight from RecBole's copy of ml-100k.inter, in file order
    import recbole

    path = f"{recbole.__path__[0]}/dataset_example/ml-100k/ml-100k.inter"
    raw = pd.read_csv(path, sep="\t", dtype=str)
    counts = raw["item_id:token"].value_counts()
    tokens = inter[1:]
    assert popularity.counts[1:].tolist() == [int(counts[t]) for t in tokens]
    assert popularity.counts.sum() == len(raw) == 100000
    # ties: among equally popular items, the one appearing first in the file ranks first
    first = {t: i for i, t in reversed(list(enumerate(raw["item_id:token"])))}
    ranking = [tokens[i - 1] for i in popularity.ranking()]
    keyed = [(-int(counts[t]), first[t]) for t in ranking]
    assert keyed == sorted(keyed)
    # the split datasets carry it to the evaluator
    assert evaluation_popularity(train.dataset, config) is popularity


def test_train_only_popularity(ml100k):
    config, _, popularity, train, test = ml100k
    config["popularity_source"] = "train"
    try:
        train_counts = evaluation_popularity(train.dataset, config)
    finally:
        config["popularity_source"] = "all"
    # counted by hand from ml-100k.inter: each user's history but its last two interactions
    assert train_counts.counts.tolist() == hand_train_popularity(train.dataset).tolist()
    # the training split holds all but the 2 held-out interactions of each of the 943 users
    assert train_counts.counts.sum() == popularity.counts.sum() - 2 * 943
    assert train_counts.first_seen is popularity.first_seen


def test_collector_on_real_training_data(ml100k):
    config, _, popularity, train, _ = ml100k
    collector = TailCollector(config)
    collector.data_collect(train)
    struct = collector.get_data_struct()
    assert struct.get(POPULARITY).tolist() == popularity.counts.tolist()
    tail = struct.get(TAIL_MASK).numpy()
    assert tail.sum() == 1682 - 336 and not tail[0]  # floor(0.2 * 1682) = 336 head items


@pytest.mark.parametrize("settings, message", [
    ({"metrics": ["Hit", "TailRecall"]}, "unknown metric"),
    ({"head_ratio": 1.5}, "head_ratio must be a number strictly between 0 and 1"),
    ({"head_ratio": 0}, "head_ratio must be a number strictly between 0 and 1"),
    ({"popularity_groups": [1, 10, 5]}, "strictly increasing"),
    ({"popularity_groups": [1, 5, 5, 20]}, "strictly increasing"),
    ({"popularity_groups": ["a"]}, "integer lower bounds"),
    ({"popularity_source": "test"}, "popularity_source must be one of"),
    ({"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "mode": "full"}},
     "need one target item per test user"),
])
def test_bad_settings_are_config_errors(settings, message):
    with pytest.raises(EvaluationConfigError, match=message):
        build_config("SASRec", "ml-100k", config_dict=settings)


def test_dataset_too_small_for_groups_or_head(ml100k):
    config, _, popularity, _, _ = ml100k
    config["popularity_groups"] = [600, 700]  # ml-100k's most popular item has 583 interactions
    try:
        with pytest.raises(EvaluationConfigError, match="fall into 0 of the groups"):
            check_against_data(popularity, config)
    finally:
        config["popularity_groups"] = [1, 5, 20]
    config["head_ratio"] = 0.0005  # floor(0.0005 * 1682) = 0 head items
    try:
        with pytest.raises(EvaluationConfigError, match="0 head items out of 1682"):
            check_against_data(popularity, config)
    finally:
        config["head_ratio"] = 0.2


def test_cli_reports_bad_evaluation_settings_before_training(tmp_path):
    proc = run_py([REPO / "run_recbole_faerec.py", "--model=SASRec", "--dataset=ml-100k",
                   "--popularity_groups=[600,700]", "--epochs=1"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "popularity_groups [600, 700]" in proc.stderr
    assert "epoch 0 training" not in proc.stdout + proc.stderr
    proc = run_py([REPO / "run_recbole_faerec.py", "--model=SASRec", "--dataset=ml-100k",
                   "--metrics=['Hit','TailHits']"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert "unknown metric(s) ['TailHits']" in proc.stderr and "TailHit" in proc.stderr
