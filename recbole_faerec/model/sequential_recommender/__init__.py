"""The plugin's sequential models, importable by name like RecBole's own::

    from recbole_faerec.model.sequential_recommender import FAERec_SASRec, FMLPRec
"""

from recbole_faerec.model.sequential_recommender.fmlprec import FMLPRec
from recbole_faerec.model.sequential_recommender.gmlp import gMLP
from recbole_faerec.model.sequential_recommender.lrurec import LRURec
from recbole_faerec.model.sequential_recommender import faerec as _faerec
from recbole_faerec.model.sequential_recommender.faerec import *  # noqa: F401,F403  FAERec_<Backbone>

__all__ = ["FMLPRec", "LRURec", "gMLP", *_faerec.__all__]
