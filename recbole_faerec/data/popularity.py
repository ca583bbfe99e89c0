"""Item popularity, in one place for the models and the evaluator.

* :func:`compute_item_popularity` / :func:`attach_item_popularity`: interactions per item in the
  whole loaded data, with first appearance as the tie-breaker (the paper's head/tail split, §3, as
  the authors' code counts). The evaluator's head/tail and group metrics read it.
* :func:`train_popularity`: interactions per item in the training part of each history only (what a
  model may see): FAERec's popularity groups (eq. 6), and any method that treats head and tail
  items differently.
* :class:`PopularityGrouper`: the reusable "sampler" of the design card. Built once from training
  popularity, it answers, for any set of items, which are above and which below their median
  popularity (FAERec's feature-level alignment asks it for the two groups).

The counts are taken from the dataset RecBole loaded, before ``build()`` splits it:
:func:`attach_item_popularity` stores them on the dataset object, and RecBole's split datasets
(shallow copies) carry them to the evaluator. :func:`recbole_faerec.quick_start.load_dataset`
calls it; a hand-written RecBole pipeline calls it after ``create_dataset``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch

ATTRIBUTE = "faerec_item_popularity"


@dataclass
class ItemPopularity:
    """Interactions per internal item id (index 0 is RecBole's padding id, count 0).

    Attributes:
        counts: ``int64[n_items]``, interactions per item id.
        first_seen: ``int64[n_items]``, row of the item's first interaction in the loaded data
            (the tie-breaker); padding and never-seen ids get the largest value.
    """

    counts: np.ndarray
    first_seen: np.ndarray

    @property
    def n_items(self) -> int:
        """Real items (without the padding id)."""
        return len(self.counts) - 1

    def ranking(self) -> np.ndarray:
        """Real item ids from most to least popular, ties in order of first appearance."""
        ids = np.arange(1, len(self.counts))
        order = np.lexsort((self.first_seen[1:], -self.counts[1:]))
        return ids[order]

    def head_size(self, head_ratio: float) -> int:
        return int(math.floor(head_ratio * self.n_items + 1e-9))

    def head_mask(self, head_ratio: float) -> np.ndarray:
        """``bool[n_items]``: True for head items (the padding id is neither head nor tail)."""
        mask = np.zeros(len(self.counts), dtype=bool)
        mask[self.ranking()[: self.head_size(head_ratio)]] = True
        return mask

    def tail_mask(self, head_ratio: float) -> np.ndarray:
        mask = ~self.head_mask(head_ratio)
        mask[0] = False
        return mask

    def with_counts(self, counts: np.ndarray) -> "ItemPopularity":
        """The same tie-breaking order with other counts (e.g. training-split counts)."""
        return ItemPopularity(np.asarray(counts, dtype=np.int64), self.first_seen)


def compute_item_popularity(dataset) -> ItemPopularity:
    """Counts over every interaction of a RecBole dataset that has not been ``build()``-split yet."""
    field = dataset.iid_field
    column = dataset.inter_feat[field]
    ids = column.to_numpy() if hasattr(column, "to_numpy") else column.numpy()
    ids = np.asarray(ids, dtype=np.int64)
    n_items = dataset.item_num
    counts = np.bincount(ids, minlength=n_items).astype(np.int64)
    counts[0] = 0
    first_seen = np.full(n_items, len(ids), dtype=np.int64)
    unique, first = np.unique(ids, return_index=True)
    first_seen[unique] = first
    first_seen[0] = len(ids) + 1
    return ItemPopularity(counts, first_seen)


def attach_item_popularity(dataset) -> ItemPopularity:
    """Compute whole-data popularity on ``dataset`` (before ``data_preparation``) and keep it there."""
    popularity = compute_item_popularity(dataset)
    setattr(dataset, ATTRIBUTE, popularity)
    return popularity


def train_popularity(train_dataset) -> np.ndarray:
    """Interactions per internal item id in the training part of every user's sequence.

    RecBole's sequential training rows are (prefix, target) pairs; counting each row's target plus
    the first item of each user (the prefix of length 1) counts exactly the items of the training
    part ``s[:-2]`` of each history, which is the authors' popularity (reference notes §1).
    """
    inter = train_dataset.inter_feat
    n_items = train_dataset.item_num
    counts = np.bincount(inter[train_dataset.iid_field].numpy(), minlength=n_items)
    first = inter[train_dataset.item_list_length_field].numpy() == 1
    seq = inter[train_dataset.item_id_list_field].numpy()
    counts += np.bincount(seq[first, 0], minlength=n_items)
    counts[0] = 0
    return counts.astype(np.int64)


class PopularityGrouper(torch.nn.Module):
    """Splits items at the median popularity of the given items: ``pop >= m`` vs ``pop < m``.

    ``m`` is ``torch.median`` (the lower median for an even count), as in the authors' code.
    Items never seen in training count as popularity 1 (reference notes §1). With ties at the
    median, every tied item goes to the high group; when all items tie, the low group is empty.
    """

    def __init__(self, popularity):
        super().__init__()
        pop = torch.as_tensor(np.asarray(popularity), dtype=torch.long).clamp(min=1)
        self.register_buffer("popularity", pop, persistent=False)

    def split(self, items: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Index tensors (positions into ``items``) of the high- and low-popularity groups."""
        if items.numel() == 0:
            empty = torch.zeros(0, dtype=torch.long, device=items.device)
            return empty, empty
        pop = self.popularity[items]
        median = torch.median(pop)
        high = pop >= median
        return torch.nonzero(high).flatten(), torch.nonzero(~high).flatten()
