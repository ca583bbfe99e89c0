r"""Tail-aware metrics for RecBole's evaluator (paper §5: Table 2 "Tail", Figure 4, Table 5).

Registered in RecBole's metric registry by :func:`register_metrics` (run when
:mod:`recbole_faerec` is imported), so a config can say::

    metrics: [Hit, NDCG, TailHit, TailNDCG, HeadHit, HeadNDCG, Coverage, TailCoverage]
    topk: [10, 20]

They need the :class:`~recbole_faerec.evaluator.collector.TailCollector`, which hands each
evaluation row's target item and the item popularity to the metrics; :func:`register_metrics` makes
it the collector of RecBole's trainers. Head and tail follow :mod:`recbole_faerec.evaluator.popularity`.

* ``TailHit@K`` / ``TailNDCG@K``: RecBole's Hit / NDCG averaged over the evaluation rows (test
  users, in the leave-one-out protocol) whose target item is a tail item; ``Head*`` likewise.
  ``nan`` when no row has a target in that set.
* ``Coverage@K`` (eq. 15): :math:`|\bigcup_u R_u^K| / |I|`, distinct items in all top-K lists over
  the number of items. RecBole's own ``ItemCoverage`` divides by the number of item ids including
  the padding id, :math:`|I| + 1`; it is left as RecBole defines it.
* ``TailCoverage@K`` (eq. 15): :math:`|\bigcup_u R_u^K \cap I_{tail}| / |I_{tail}|`.
* ``GroupHit@K`` / ``GroupNDCG@K`` (Figure 4): Hit / NDCG per group of target popularity, keys such
  as ``grouphit_1-4@10``; groups from ``popularity_groups`` (lower bounds, default
  ``[1, 5, 10, 20, 50]``). A group that holds no item is left out; one with items but no evaluated
  row gives ``nan``.

All of them need exactly one target per evaluation row (sequential leave-one-out, or any split
that leaves one item per user); other splits get a clear error.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
from recbole.evaluator.base_metric import AbstractMetric, TopkMetric
from recbole.evaluator.metrics import NDCG, Hit
from recbole.utils import EvaluatorType

from recbole_faerec.evaluator.popularity import group_edges, group_of, popularity_groups

TARGETS = "rec.targets"
POPULARITY = "data.item_popularity"
TAIL_MASK = "data.tail_mask"


def _targets(dataobject) -> np.ndarray:
    if TARGETS not in dataobject:
        raise RuntimeError(
            "tail-aware metrics need recbole_faerec's TailCollector: import recbole_faerec before "
            "the trainer is built (it makes TailCollector RecBole's trainers' collector), or set "
            "trainer.eval_collector = recbole_faerec.evaluator.TailCollector(config)")
    targets = dataobject.get(TARGETS).numpy()
    if (targets < 0).any():
        raise ValueError(
            f"tail-aware metrics need exactly one target item per evaluation row; "
            f"{int((targets < 0).sum())} of {len(targets)} rows have none or several (use a "
            f"leave-one-out split such as eval_args.split: {{'LS': 'valid_and_test'}})")
    return targets


def _collected(dataobject, key: str) -> np.ndarray:
    """The item popularity (``POPULARITY``) or tail mask (``TAIL_MASK``) the collector gathered."""
    if key not in dataobject:
        raise RuntimeError(
            "tail-aware metrics: no item popularity was collected (the trainer's fit() collects it "
            "from the training data; before a standalone evaluate() call "
            "trainer.eval_collector.data_collect(train_data))")
    return dataobject.get(key).numpy()


class _RowsTopk(TopkMetric):
    """RecBole's Hit or NDCG (``base``), averaged over a subset of the evaluation rows."""

    base = "hit"

    def __init__(self, config):
        super().__init__(config)
        self._metric = Hit(config) if self.base == "hit" else NDCG(config)

    def rows_result(self, name, pos_index, pos_len, rows) -> Dict[str, float]:
        """``{name@K: value}`` over ``rows`` (a boolean mask); ``nan`` when no row is selected."""
        if not rows.any():
            return {f"{name}@{k}": float("nan") for k in self.topk}
        if self.base == "hit":
            values = self._metric.metric_info(pos_index[rows])
        else:
            values = self._metric.metric_info(pos_index[rows], pos_len[rows])
        return self.topk_result(name, values)


class _SubsetTopk(_RowsTopk):
    """Hit or NDCG over the rows whose target item is a tail (``tail``) or a head item."""

    metric_need = ["rec.topk", TARGETS, TAIL_MASK]
    tail = True

    def calculate_metric(self, dataobject) -> Dict[str, float]:
        pos_index, pos_len = self.used_info(dataobject)
        in_tail = _collected(dataobject, TAIL_MASK)[_targets(dataobject)]
        name = ("tail" if self.tail else "head") + self.base
        return self.rows_result(name, pos_index, pos_len, in_tail if self.tail else ~in_tail)


class TailHit(_SubsetTopk):
    """Hit@K over the evaluation rows whose target is a tail item (paper Table 2, "Tail")."""

    base, tail = "hit", True


class TailNDCG(_SubsetTopk):
    """NDCG@K over the evaluation rows whose target is a tail item (paper Table 2, "Tail")."""

    base, tail = "ndcg", True


class HeadHit(_SubsetTopk):
    """Hit@K over the evaluation rows whose target is a head item."""

    base, tail = "hit", False


class HeadNDCG(_SubsetTopk):
    """NDCG@K over the evaluation rows whose target is a head item."""

    base, tail = "ndcg", False


class _Coverage(AbstractMetric):
    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.items", TAIL_MASK]
    tail = False

    def __init__(self, config):
        super().__init__(config)
        self.topk = config["topk"]

    def calculate_metric(self, dataobject) -> Dict[str, float]:
        items = dataobject.get("rec.items").numpy()
        tail = _collected(dataobject, TAIL_MASK)
        name = "tailcoverage" if self.tail else "coverage"
        universe = tail if self.tail else np.arange(len(tail)) > 0
        result = {}
        for k in self.topk:
            shown = np.zeros(len(tail), dtype=bool)
            shown[items[:, :k].reshape(-1)] = True
            value = (shown & universe).sum() / max(int(universe.sum()), 1)
            result[f"{name}@{k}"] = round(float(value), self.decimal_place)
        return result


class Coverage(_Coverage):
    r"""Coverage@K (paper eq. 15): distinct items in all users' top-K lists, over :math:`|I|`."""

    tail = False


class TailCoverage(_Coverage):
    r"""Tail_Coverage@K (paper eq. 15): distinct tail items in all top-K lists, over :math:`|I_{tail}|`."""

    tail = True


class _GroupTopk(_RowsTopk):
    """Hit or NDCG per group of target popularity (paper Figure 4)."""

    metric_need = ["rec.topk", TARGETS, POPULARITY]

    def __init__(self, config):
        super().__init__(config)
        self.edges = group_edges(config)
        self.names = popularity_groups(self.edges)

    def calculate_metric(self, dataobject) -> Dict[str, float]:
        pos_index, pos_len = self.used_info(dataobject)
        targets = _targets(dataobject)
        counts = _collected(dataobject, POPULARITY)
        item_groups = group_of(counts[1:], self.edges)
        row_groups = group_of(counts[targets], self.edges)
        result = {}
        for index, group in enumerate(self.names):
            if (item_groups == index).any():
                result.update(self.rows_result(f"group{self.base}_{group}", pos_index, pos_len,
                                               row_groups == index))
        return result


class GroupHit(_GroupTopk):
    """Hit@K per popularity group of the target item, ``grouphit_<group>@K`` (paper Figure 4)."""

    base = "hit"


class GroupNDCG(_GroupTopk):
    """NDCG@K per popularity group of the target item, ``groupndcg_<group>@K`` (paper Figure 4)."""

    base = "ndcg"


METRICS = [TailHit, TailNDCG, HeadHit, HeadNDCG, Coverage, TailCoverage, GroupHit, GroupNDCG]


def uses_tail_metrics(config) -> bool:
    """Whether ``config['metrics']`` names any of :data:`METRICS`."""
    ours = {cls.__name__.lower() for cls in METRICS}
    metrics = config["metrics"] or []
    metrics = [metrics] if isinstance(metrics, str) else metrics
    return any(str(m).lower() in ours for m in metrics)


def register_metrics() -> None:
    """Add :data:`METRICS` to RecBole's metric registry (the dicts its Config and Evaluator read),
    and make RecBole's trainers build the :class:`~recbole_faerec.evaluator.TailCollector` (a
    drop-in for RecBole's ``Collector``) so the metrics work with any RecBole trainer."""
    import recbole.trainer.trainer as recbole_trainer
    from recbole.evaluator import register

    from recbole_faerec.evaluator.collector import TailCollector

    recbole_trainer.Collector = TailCollector

    for cls in METRICS:
        name = cls.__name__.lower()
        register.metrics_dict[name] = cls
        register.metric_information[name] = cls.metric_need
        register.metric_types[name] = cls.metric_type
        if cls.smaller and name not in register.smaller_metrics:
            register.smaller_metrics.append(name)
