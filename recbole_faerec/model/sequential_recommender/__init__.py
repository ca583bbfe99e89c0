"""The plugin's sequential models, importable by name like RecBole's own::

    from recbole_faerec.model.sequential_recommender import FAERec_SASRec, LLMInit_GRU4Rec, FMLPRec

One file per method; each makes ``<Method>_<Backbone>`` for every backbone of
:mod:`recbole_faerec.model.backbones` (:func:`recbole_faerec.model.llm_item.method_family`).
"""

from recbole_faerec.model.sequential_recommender.fmlprec import FMLPRec
from recbole_faerec.model.sequential_recommender.gmlp import gMLP
from recbole_faerec.model.sequential_recommender.lrurec import LRURec
from recbole_faerec.model.sequential_recommender import faerec as _faerec
from recbole_faerec.model.sequential_recommender import faerec_tada as _faerec_tada
from recbole_faerec.model.sequential_recommender import llmcfsr as _llmcfsr
from recbole_faerec.model.sequential_recommender import llmesr as _llmesr
from recbole_faerec.model.sequential_recommender import llminit as _llminit
from recbole_faerec.model.sequential_recommender import rlmrec as _rlmrec
from recbole_faerec.model.sequential_recommender import tada as _tada
from recbole_faerec.model.sequential_recommender.faerec import *  # noqa: F401,F403  FAERec_<Backbone>
from recbole_faerec.model.sequential_recommender.llmcfsr import *  # noqa: F401,F403  LLMCFSR_<Backbone>
from recbole_faerec.model.sequential_recommender.llmesr import *  # noqa: F401,F403  LLMESR_<Backbone>
from recbole_faerec.model.sequential_recommender.llminit import *  # noqa: F401,F403  LLMInit_<Backbone>
from recbole_faerec.model.sequential_recommender.rlmrec import *  # noqa: F401,F403  RLMRecCon_/RLMRecGen_
from recbole_faerec.model.sequential_recommender.tada import *  # noqa: F401,F403  TADA_<Backbone>
from recbole_faerec.model.sequential_recommender.faerec_tada import *  # noqa: F401,F403  FAERec_TADA_<B>

__all__ = ["FMLPRec", "LRURec", "gMLP", *_faerec.__all__, *_faerec_tada.__all__, *_llmcfsr.__all__, *_llmesr.__all__,
           *_llminit.__all__, *_rlmrec.__all__, *_tada.__all__]
