"""RecBole's :class:`~recbole.evaluator.Collector`, also collecting what the tail-aware metrics need.

RecBole's metrics never see which item was the target of an evaluation row (reference:
``shared/docs/recbole-notes.md`` §6). :class:`TailCollector` keeps it (``rec.targets``, one item per
row) and, once per ``fit``, the item popularity and the tail mask from
:func:`~recbole_faerec.evaluator.popularity.evaluation_popularity`. For every other metric it is
RecBole's collector unchanged. It also keeps the last evaluation's rows, so
:meth:`TailCollector.per_user` gives each test user's target and its rank (the comparison runner's
paired significance tests).
"""

from __future__ import annotations

from logging import getLogger
from typing import Dict, Optional

import numpy as np
import torch
from recbole.evaluator import Collector

from recbole_faerec.evaluator.metrics import POPULARITY, TAIL_MASK, TARGETS
from recbole_faerec.evaluator.popularity import check_against_data, evaluation_popularity, head_ratio

TOPK = "rec.topk"


class TailCollector(Collector):
    """:class:`recbole.evaluator.Collector` plus target items and item popularity."""

    def data_collect(self, train_data):
        super().data_collect(train_data)
        if not (self.register.need(TAIL_MASK) or self.register.need(POPULARITY)):
            return
        popularity = evaluation_popularity(train_data.dataset, self.config, getLogger())
        check_against_data(popularity, self.config)
        self.data_struct.set(POPULARITY, torch.as_tensor(popularity.counts))
        self.data_struct.set(TAIL_MASK, torch.as_tensor(popularity.tail_mask(head_ratio(self.config))))

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        if self.register.need(TARGETS):
            rows = scores_tensor.shape[0]
            targets = torch.full((rows,), -1, dtype=torch.long, device=positive_i.device)
            targets[positive_u] = positive_i.long()
            several = torch.bincount(positive_u, minlength=rows) != 1
            targets[several] = -1
            self.data_struct.update_tensor(TARGETS, targets)

    def get_data_struct(self):
        returned = super().get_data_struct()
        if TARGETS in self.data_struct:
            del self.data_struct[TARGETS]
        # the rows of this evaluation, for per_user() (the last evaluate() call's: the test's)
        self.last_rows = {key: returned.get(key) for key in (TOPK, TARGETS) if key in returned}
        return returned

    def per_user(self) -> Optional[Dict[str, np.ndarray]]:
        """Each row of the last collected evaluation: ``target`` (its target item, ``-1`` where
        none or several; absent when no tail-aware metric collected targets) and ``rank`` (the
        1-based position of the target in the top ``max(topk)``, ``0`` for a miss).

        RecBole's ``Hit@K`` is the mean of ``0 < rank <= K`` and its ``NDCG@K`` the mean of
        ``1 / log2(rank + 1)`` over the hits, for one target per row; ``None`` when the evaluation
        collected no top-k positions (``rec.topk``) or a row has several targets.
        """
        rows = getattr(self, "last_rows", {})
        if TOPK not in rows:
            return None
        topk = rows[TOPK].numpy()
        hits, pos_len = topk[:, :-1], topk[:, -1]
        if (pos_len != 1).any():
            getLogger().warning(f"per-user outcomes need one target per evaluation row; "
                                f"{int((pos_len != 1).sum())} of {len(pos_len)} rows have none or "
                                "several: no per-user outcomes")
            return None
        found = hits.any(axis=1)
        out = {"rank": np.where(found, hits.argmax(axis=1) + 1, 0).astype(np.int64)}
        if TARGETS in rows:
            out["target"] = rows[TARGETS].numpy().astype(np.int64)
        return out
