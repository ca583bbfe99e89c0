"""Tail-aware evaluation inside RecBole's evaluator: head/tail and popularity-group metrics,
coverage (paper eq. 15), and the collector that feeds them."""

from recbole_faerec.evaluator.collector import TailCollector
from recbole_faerec.evaluator.metrics import METRICS, register_metrics
from recbole_faerec.evaluator.popularity import (
    EvaluationConfigError,
    ItemPopularity,
    attach_item_popularity,
    check_evaluation_settings,
    compute_item_popularity,
    popularity_groups,
)

__all__ = [
    "METRICS",
    "EvaluationConfigError",
    "ItemPopularity",
    "TailCollector",
    "attach_item_popularity",
    "check_evaluation_settings",
    "compute_item_popularity",
    "popularity_groups",
    "register_metrics",
]
