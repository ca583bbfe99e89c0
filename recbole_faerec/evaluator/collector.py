"""RecBole's :class:`~recbole.evaluator.Collector`, also collecting what the tail-aware metrics need.

RecBole's metrics never see which item was the target of an evaluation row (reference:
``shared/docs/recbole-notes.md`` §6). :class:`TailCollector` keeps it (``rec.targets``, one item per
row) and, once per ``fit``, the item popularity and the tail mask from
:func:`~recbole_faerec.evaluator.popularity.evaluation_popularity`. For every other metric it is
RecBole's collector unchanged.
"""

from __future__ import annotations

from logging import getLogger

import torch
from recbole.evaluator import Collector

from recbole_faerec.evaluator.metrics import POPULARITY, TAIL_MASK, TARGETS
from recbole_faerec.evaluator.popularity import check_against_data, evaluation_popularity, head_ratio


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
        return returned


def install_tail_collector(trainer) -> None:
    """Give a RecBole trainer a :class:`TailCollector` (in place of its plain ``Collector``)."""
    if not isinstance(trainer.eval_collector, TailCollector):
        trainer.eval_collector = TailCollector(trainer.config)
