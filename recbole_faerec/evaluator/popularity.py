"""Item popularity for tail-aware evaluation: the head/tail split (paper §3) and popularity groups.

The paper's protocol, as the authors' code implements it (reference notes §1, "Head/tail split"):
an item's popularity is its number of interactions in the **whole** dataset (train, valid and test),
items are sorted by popularity in descending order with ties kept in order of first appearance, and
the first ``floor(head_ratio * n)`` items are the head; every other item is tail. The popularity
groups of Figure 4 (``1-4, 5-9, 10-19, 20-49, 50+``) use the same counts.

``popularity_source: train`` counts only the training part of each history instead (what a model
may legitimately see); ties are still broken by first appearance in the whole data.

The counts are taken from the dataset RecBole loaded, before ``build()`` splits it:
:func:`attach_item_popularity` stores them on the dataset object, and RecBole's split datasets
(shallow copies) carry them to the evaluator. :func:`recbole_faerec.quick_start.load_dataset`
calls it; a hand-written RecBole pipeline calls it after ``create_dataset``.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

from recbole_faerec.data.popularity import (  # noqa: F401  (re-exported: the evaluator's API)
    ATTRIBUTE,
    ItemPopularity,
    attach_item_popularity,
    compute_item_popularity,
    train_popularity,
)
from recbole_faerec.settings import setting

SOURCES = ("all", "train")


class EvaluationConfigError(ValueError):
    """A tail-aware evaluation setting that cannot work (raised before training starts)."""


def popularity_groups(edges: Sequence[int]) -> List[str]:
    """Names of the groups ``[e0, e1), [e1, e2), ..., [ek, inf)``: ``1-4, 5-9, ..., 50+``."""
    names = [f"{lo}-{hi - 1}" if hi - 1 > lo else f"{lo}" for lo, hi in zip(edges[:-1], edges[1:])]
    return names + [f"{edges[-1]}+"]


def group_of(counts: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """Group index of each count (``-1`` below the first edge)."""
    return np.searchsorted(np.asarray(edges), counts, side="right") - 1


def head_ratio(config) -> float:
    """``head_ratio`` (default 0.2, paper §3)."""
    return setting(config, "head_ratio")


def group_edges(config) -> List[int]:
    """``popularity_groups``: lower bounds of the groups (default those of paper Fig. 4)."""
    return setting(config, "popularity_groups")


def check_evaluation_settings(config) -> None:
    """Config-level checks of ``head_ratio``, ``popularity_source`` and ``popularity_groups``."""
    ratio = head_ratio(config)
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio < 1:
        raise EvaluationConfigError(
            f"head_ratio must be a number strictly between 0 and 1 (the share of items that are "
            f"head items; the paper uses 0.2), got {ratio!r}")
    source = setting(config, "popularity_source")
    if source not in SOURCES:
        raise EvaluationConfigError(
            f"popularity_source must be one of {', '.join(SOURCES)}, got {source!r}")
    edges = group_edges(config)
    if (not isinstance(edges, (list, tuple)) or not edges
            or not all(isinstance(e, int) and not isinstance(e, bool) for e in edges)):
        raise EvaluationConfigError(
            f"popularity_groups must be a list of integer lower bounds such as [1, 5, 10, 20, 50], "
            f"got {edges!r}")
    if edges[0] < 0 or any(b <= a for a, b in zip(edges[:-1], edges[1:])):
        raise EvaluationConfigError(
            f"popularity_groups must be non-negative and strictly increasing, got {list(edges)}")


def check_against_data(popularity: ItemPopularity, config) -> None:
    """Dataset-level checks: a non-empty head and tail, and at least two non-empty groups."""
    ratio = head_ratio(config)
    n = popularity.n_items
    head = popularity.head_size(ratio)
    if head < 1 or head >= n:
        raise EvaluationConfigError(
            f"head_ratio {ratio} gives {head} head items out of {n}: the dataset is too small for "
            f"a head/tail split at this ratio (need 1 <= floor(head_ratio * n) < n)")
    edges = group_edges(config)
    groups = group_of(popularity.counts[1:], edges)
    filled = np.unique(groups[groups >= 0])
    if len(edges) > 1 and len(filled) < 2:
        names = popularity_groups(edges)
        raise EvaluationConfigError(
            f"popularity_groups {list(edges)}: the dataset's {n} items fall into "
            f"{len(filled)} of the groups {names} (popularity {popularity.counts[1:].min()} to "
            f"{popularity.counts[1:].max()}); choose edges that split this dataset")


def evaluation_popularity(train_dataset, config, logger=None) -> ItemPopularity:
    """The popularity the tail-aware metrics use, from the training split's dataset object."""
    attached = getattr(train_dataset, ATTRIBUTE, None)
    source = setting(config, "popularity_source")
    if attached is None:
        if logger is not None:
            logger.warning(
                "tail-aware metrics: the dataset has no whole-data item popularity "
                "(call recbole_faerec.evaluator.attach_item_popularity(dataset) after "
                "create_dataset); counting the training split only, ties by item id")
        n = train_dataset.item_num
        attached = ItemPopularity(np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64))
        source = "train"
    if source == "train":
        length_field = getattr(train_dataset, "item_list_length_field", None)
        if length_field is not None and length_field in train_dataset.inter_feat.columns:
            counts = train_popularity(train_dataset)
        else:
            counts = np.bincount(train_dataset.inter_feat[train_dataset.iid_field].numpy(),
                                 minlength=train_dataset.item_num).astype(np.int64)
            counts[0] = 0
        return attached.with_counts(counts)
    return attached
