"""Item popularity from the training split, and the median grouping of a batch's items (eq. 6).

:class:`PopularityGrouper` is the reusable "sampler" of the design card: built once from the
training split, it answers, for any set of items, which are above and which below their median
popularity. The feature-level alignment asks it for the two groups; other methods (baselines that
treat head and tail items differently) can ask it too.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch


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
