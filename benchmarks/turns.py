"""What ``profile_step.py`` and ``epoch_ratio.py`` share: the benchmarks' settings, building a model
on loaded RecBole data, and medians of timings taken in turns with each FAERec model's ratio to its
backbone."""

from __future__ import annotations

import statistics
from typing import Dict, List

from recbole.utils import init_seed

from recbole_faerec.quick_start import build_config
from recbole_faerec.utils import get_model

#: the benchmarks' shared settings (amazon users average 7-9 items); ``--key=value`` overrides them
SETTINGS = {"MAX_ITEM_LIST_LENGTH": 20, "hidden_size": 64, "embedding_size": 64, "inner_size": 256,
            "state": "WARNING", "show_progress": False}


def build_model(name: str, dataset: str, train, settings: dict):
    """``(config, model)`` for ``name`` on the loaded training data, seeded as RecBole seeds it."""
    config = build_config(name, dataset, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    return config, get_model(name)(config, train._dataset).to(config["device"])


def medians_and_ratios(times: Dict[str, List[float]]):
    """Median per model, and ``FAERec_X``'s median over ``X``'s where both were timed."""
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios = {name: medians[name] / medians[name[len("FAERec_"):]] for name in medians
              if name.startswith("FAERec_") and name[len("FAERec_"):] in medians}
    return medians, ratios
