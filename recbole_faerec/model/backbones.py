"""The sequential backbones every LLM-item method wraps, listed once.

RecBole 1.2.1's sequential models whose item table is an ``nn.Embedding`` named ``item_embedding``
(the one thing a method swaps or reads), and the paper's backbones RecBole lacks (this plugin's
FMLPRec, LRURec, gMLP). A method makes ``<Method>_<Backbone>`` for each with
:func:`recbole_faerec.model.llm_item.method_family`.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Dict

#: (module, class) of each backbone, in the order the families list them
BACKBONES = (
    ("recbole.model.sequential_recommender", "SASRec"),
    ("recbole.model.sequential_recommender", "GRU4Rec"),
    ("recbole.model.sequential_recommender", "NARM"),
    ("recbole.model.sequential_recommender", "LightSANs"),
    ("recbole.model.sequential_recommender", "BERT4Rec"),
    ("recbole.model.sequential_recommender", "Caser"),
    ("recbole.model.sequential_recommender", "NextItNet"),
    ("recbole.model.sequential_recommender", "STAMP"),
    ("recbole.model.sequential_recommender", "CORE"),
    ("recbole.model.sequential_recommender", "FEARec"),
    ("recbole.model.sequential_recommender", "SRGNN"),
    ("recbole.model.sequential_recommender", "GCSAN"),
    ("recbole.model.sequential_recommender", "FDSA"),
    ("recbole.model.sequential_recommender", "GRU4RecF"),
    ("recbole.model.sequential_recommender", "SASRecF"),
    ("recbole.model.sequential_recommender.gru4reccpr", "GRU4RecCPR"),
    ("recbole.model.sequential_recommender.sasreccpr", "SASRecCPR"),
    ("recbole.model.sequential_recommender", "SHAN"),
    ("recbole.model.sequential_recommender", "HRM"),
    ("recbole.model.sequential_recommender", "NPE"),
    ("recbole.model.sequential_recommender", "TransRec"),
    ("recbole.model.sequential_recommender", "SINE"),
    # the paper's backbones that RecBole lacks (this plugin's own)
    ("recbole_faerec.model.sequential_recommender.fmlprec", "FMLPRec"),
    ("recbole_faerec.model.sequential_recommender.lrurec", "LRURec"),
    ("recbole_faerec.model.sequential_recommender.gmlp", "gMLP"),
)


@lru_cache(maxsize=None)
def backbones() -> Dict[str, type]:
    """Backbone classes by name, in :data:`BACKBONES` order."""
    return {name: getattr(importlib.import_module(module), name) for module, name in BACKBONES}


