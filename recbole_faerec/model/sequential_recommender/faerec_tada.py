r"""FAERec with TADA's augmentation: ``FAERec_TADA_<Backbone>`` (beyond both papers).

No published system combines them. FAERec changes what an item is (the gated fusion of its ID and
projected LLM embeddings, eq. 2-4) and aligns the two views (eq. 5-12); TADA changes what the
training rows are (T-Substitute, T-Insert) and mixes the outputs of their views. They touch
different parts, so the combination is the two mixins over one backbone:

.. math::

    L = \underbrace{L_{rec} + \alpha (w_{item} L_{item} + w_{feat} L_{feat})}_{\text{FAERec, eq. 14}}
        + L_{self} + \sum_{g} L_{mix}^{g}

where TADA's views are encoded from the fused item table and its mixed outputs are scored against the
fused table, exactly as the backbone's own loss is (:class:`~recbole_faerec.model.layers.FusedItemEmbedding`
answers both). Within a step, every forward pass shares one fusion of the item table (FAERec's
``step_context``). Defaults: ``props/model/FAERec.yaml`` and ``props/model/TADA.yaml``, both read.

The losses are logged as ``rec``, ``align``, ``self_mix``, ``cross_mix``. Two stages:
``tada_init_checkpoint`` names a trained ``FAERec_<Backbone>`` checkpoint.
"""

from __future__ import annotations

from typing import Optional

from recbole_faerec.model.llm_item import method_family
from recbole_faerec.model.sequential_recommender.faerec import FAERecMixin
from recbole_faerec.model.sequential_recommender.tada import TADAMixin


class FAERecTADAMixin(TADAMixin, FAERecMixin):
    """TADA's views and mixing (:class:`TADAMixin`) over FAERec's fused items and alignment
    (:class:`FAERecMixin`); see the module."""

    method_name = "FAERec_TADA"
    plugin_config_models = ("LLMItem", "FAERec", "TADA")
    loss_names = ("rec", "align", "self_mix", "cross_mix")

    @classmethod
    def cannot_wrap(cls, backbone: type) -> Optional[str]:
        return TADAMixin.cannot_wrap(backbone) or FAERecMixin.cannot_wrap(backbone)

    @property
    def first_stage(self) -> str:
        """The second stage starts from a trained ``FAERec_<Backbone>``."""
        return f"FAERec_{self.backbone_class.__name__}"

    def calculate_loss(self, interaction):
        """FAERec's and TADA's losses, with every pass of the step on one fused item table."""
        with self.step_context(interaction):
            return super().calculate_loss(interaction)


FAMILY = method_family(FAERecTADAMixin, __name__)
globals().update(FAMILY)

__all__ = list(FAMILY)
