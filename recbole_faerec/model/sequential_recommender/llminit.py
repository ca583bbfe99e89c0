r"""LLMInit on any RecBole sequential backbone: ``LLMInit_<Backbone>`` (a baseline of FAERec Table 2).

The backbone's ID table is initialised from the LLM item table, then the backbone trains and scores
as usual; the text is not used afterwards (FAERec §5.1.3; LLM2SASRec / LLM2BERT4Rec, the LLMEmb
authors' "LLM2X" at hidden 128; ``shared/docs/baselines-notes.md`` §3):

.. math:: E[1..n] \leftarrow \mathrm{PCA}_d(L[1..n]), \qquad E[0] = 0

(scikit-learn PCA, centred scores, no whitening). ``llm_init_scale: match_std`` rescales the PCA
scores to the spread of the backbone's own initialisation (e.g. N(0, 0.02) for SASRec), whose rows
are far smaller than the PCA scores'. LLMInit is FAERec without the LLM branch, the gate and the
alignment: an ablation anchor as well as a baseline.
"""

from __future__ import annotations

from typing import Dict

import torch

from recbole_faerec.model.llm_item import LLMItemMixin, method_family
from recbole_faerec.settings import choice

SCALES = ("none", "match_std")


class LLMInitMixin(LLMItemMixin):
    """The ID table from the PCA of the LLM table (see the module docstring).

    Config keys (``props/model/LLMInit.yaml``): ``llm_init_scale`` (``none``: the PCA scores as
    they are; ``match_std``: rescaled to the standard deviation of the backbone's initial table).
    """

    method_name = "LLMInit"
    plugin_config_models = ("LLMItem", "LLMInit")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        scale = choice(config, "llm_init_scale", SCALES)
        weight = self.item_embedding.weight.data
        n = self.llm_table_np.shape[0]
        backbone_std = float(weight[1:n].std())
        k = self.pca_init_id_table(config)
        if scale == "match_std" and k > 0:
            pca_std = float(weight[1:n, :k].std())
            if pca_std > 0:
                weight[1:n, :k] *= backbone_std / pca_std
        with torch.no_grad():
            weight[0] = 0.0  # E[0] = 0 (the padding row)
        # the initial table: the LLM view of the t-SNE (how far training moved each item)
        self.register_buffer("llm_init_table", weight[:n].clone(), persistent=False)
        self.llm_table_np = None  # not needed after the initialisation

    def item_views(self, items: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The trained ID embedding and its initialisation (the PCA of the item's LLM embedding)."""
        return {"ID": self.item_embedding.weight[items], "LLM": self.llm_init_table[items]}


FAMILY = method_family(LLMInitMixin, __name__)
globals().update(FAMILY)

__all__ = list(FAMILY)
