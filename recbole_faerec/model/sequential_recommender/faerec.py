r"""FAERec (SIGIR 2026) on top of RecBole's sequential backbones: ``FAERec_<Backbone>``.

Each ``FAERec_<Backbone>`` subclasses the RecBole backbone and only swaps its item table: after the
backbone's own ``__init__``, ``self.item_embedding`` (an ``nn.Embedding``) becomes a
:class:`~recbole_faerec.model.layers.FusedItemEmbedding` over

* the backbone's ID table, initialised by PCA of the LLM table (§4.1),
* the frozen LLM table (cached item embeddings, :mod:`recbole_faerec.embeddings`) through the
  2-layer projector of eq. (2),
* the dimension-wise gate of eq. (3)-(4).

The backbone's ``forward``, ``calculate_loss``, ``predict`` and ``full_sort_predict`` then run
unchanged. :meth:`FAERecMixin.auxiliary_losses` adds the dual-level alignment: eq. (5) item level,
eq. (6)-(10) feature level per popularity group, weighted by the cosine curriculum of eq. (11):
:math:`L = L_{rec} + \alpha (w_{item} L_{item} + w_{feat} L_{feat})` (eq. 12-14). Inference scores
items with the equal-weight fusion :math:`(e_i + p_i)/2` (§4.3).

What every LLM-item method shares (the LLM table, PCA, checkpoints, the epoch, the family of
``<Method>_<Backbone>`` classes) is :mod:`recbole_faerec.model.llm_item`'s.
"""

from __future__ import annotations

from typing import Dict

import torch

from recbole_faerec.data.popularity import PopularityGrouper, train_popularity
from recbole_faerec.model.curriculum import CosineCurriculum
from recbole_faerec.model.layers import FUSIONS, DimensionGate, FusedItemEmbedding, LLMProjector
from recbole_faerec.model.llm_item import LLMItemMixin, method_family
from recbole_faerec.model.loss import feature_alignment_loss, item_alignment_loss
from recbole_faerec.settings import SettingError, choice

QUIRKS = ("train_id_scores", "align_duplicates", "pca_with_padding", "input_branches",
          "projector_masks")
# backbones whose input layer is Dropout(LN(item + position)) over positions 0..L-1, as the authors'
# SASRec and FMLP-Rec: the ones the quirk input_branches can rebuild without copying a forward
INPUT_BRANCH_BACKBONES = ("SASRec", "FMLPRec")


def _input_layernorm(model, dim: int):
    """The backbone's model-level LayerNorm over its input item embeddings (RecBole's
    ``LayerNorm``, the plugin backbones' ``layer_norm``), or None."""
    for name in ("LayerNorm", "layer_norm"):
        norm = getattr(model, name, None)
        if isinstance(norm, torch.nn.LayerNorm) and tuple(norm.normalized_shape) == (dim,):
            return norm
    return None


class FAERecMixin(LLMItemMixin):
    """What FAERec adds to any RecBole sequential backbone; see the module docstring.

    Config keys (defaults in ``props/model/FAERec.yaml``): ``align_weight`` (alpha, eq. 14),
    ``item_tau`` (tau, eq. 5), ``bt_lambda`` (lambda, eq. 9), ``w_min``/``w_max``/``period``
    (eq. 11), ablations ``use_gate``, ``item_align``, ``feature_align``, ``curriculum``,
    ``pop_group``, ``pca_init``; ``inference_fusion`` (``mean`` as in the paper, ``layernorm`` as
    the authors' code, ``gate``, ``id``) and ``train_score_fusion`` (how training scores targets
    and negatives: ``gate`` as eq. 13, ``mean``, ``layernorm``, ``id`` as the authors' code);
    ``loss_type`` ``CE``/``BPR`` (RecBole's) or ``BCE`` (the paper's, one sampled negative);
    ``reference_quirks`` (a list from :data:`QUIRKS`) to reproduce the authors' code where it
    differs from the paper.
    """

    method_name = "FAERec"
    plugin_config_models = ("LLMItem", "FAERec")
    loss_names = ("rec", "align")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        logger = self.logger

        quirks = list(config["reference_quirks"] or [])
        unknown = set(quirks) - set(QUIRKS)
        if unknown:
            raise SettingError(f"reference_quirks: unknown {sorted(unknown)}; known: {QUIRKS}")
        self.quirks = set(quirks)

        id_embedding = self.item_embedding
        dim = id_embedding.embedding_dim
        if config["pca_init"]:
            self.pca_init_id_table(config, with_padding="pca_with_padding" in self.quirks)
        llm_table = torch.as_tensor(self.llm_table_np)

        use_gate = config["use_gate"]
        projector = LLMProjector(llm_table.shape[1], dim, config["projector_hidden"],
                                 config["projector_dropout"])
        gate = DimensionGate(dim, config["gate_dropout"]) if use_gate else None
        # w/o AGF (paper Table 3): the gate replaced by equal weights, or (fusion_without_gate:
        # id) no fusion at all, the ID table alone wherever the gate fused
        without_gate = choice(config, "fusion_without_gate", ("mean", "id"))
        input_fusion = "gate" if use_gate else without_gate
        train_fusion = config["train_score_fusion"]
        if train_fusion == "gate" and not use_gate:
            train_fusion = without_gate
        if "train_id_scores" in self.quirks:
            if train_fusion not in ("gate", "mean", "id"):
                raise SettingError(f"reference_quirks 'train_id_scores' scores training targets with "
                                   f"the ID table; it contradicts train_score_fusion "
                                   f"'{config['train_score_fusion']}'")
            train_fusion = "id"
        eval_fusion = config["inference_fusion"]
        for key, how in (("train_score_fusion", train_fusion), ("inference_fusion", eval_fusion)):
            if how not in FUSIONS:
                raise SettingError(f"{key} '{how}' is unknown; expected one of {FUSIONS}")
            if how == "gate" and not use_gate:
                raise SettingError(f"{key} 'gate' needs use_gate: True")
        norm = _input_layernorm(self, dim)
        if "layernorm" in (train_fusion, eval_fusion) and norm is None:
            norm = torch.nn.LayerNorm(dim, eps=1e-12, elementwise_affine=False)
            logger.warning(
                f"{type(self).__name__}: 'layernorm' scoring (the authors' LN(E + P(L))) uses the "
                f"backbone's model-level LayerNorm (SASRec's, over item + position embeddings); "
                f"{self.backbone_class.__name__} has none, so items are scored with a layer "
                f"normalisation without learned scale and shift")
        self.item_embedding = FusedItemEmbedding(id_embedding, llm_table, projector, gate,
                                                 input_fusion, train_fusion, eval_fusion,
                                                 norm)
        if "input_branches" in self.quirks:
            self._use_input_branches()
        if "projector_masks" in self.quirks:
            self.item_embedding.per_token_projector = True

        self.align_weight = float(config["align_weight"])
        self.item_tau = float(config["item_tau"])
        self.bt_lambda = float(config["bt_lambda"])
        self.item_align = bool(config["item_align"])
        self.feature_align = bool(config["feature_align"])
        self.pop_group = bool(config["pop_group"])
        self.align_max_items = int(config["align_max_items"])
        self.curriculum = CosineCurriculum(
            w_min=float(config["w_min"]), w_max=float(config["w_max"]),
            period=float(config["period"]),
            enabled=bool(config["curriculum"]),
            fixed=float(config["curriculum_fixed_item_weight"]))
        self.grouper = PopularityGrouper(train_popularity(dataset))

    def _use_input_branches(self) -> None:
        """The authors' input fusion (quirk ``input_branches``,
        :meth:`~recbole_faerec.model.layers.FusedItemEmbedding.use_input_branches`): the
        backbone's input dropout moves before the gate, one mask per view."""
        backbone = self.backbone_class.__name__
        if backbone not in INPUT_BRANCH_BACKBONES or not isinstance(
                getattr(self, "dropout", None), torch.nn.Dropout):
            # a warning, not an error: presets/reference.yaml serves every backbone
            self.logger.warning(
                f"{type(self).__name__}: reference_quirks 'input_branches' rebuilds the input layer "
                f"of {' and '.join(INPUT_BRANCH_BACKBONES)} (item + position, LayerNorm, dropout); "
                f"{backbone}'s differs, so its inputs are fused as eq. (3)-(4) say")
            return
        self.input_dropout = self.dropout  # registered, so train()/eval() still switch it
        self.dropout = torch.nn.Identity()
        self.item_embedding.use_input_branches(self.position_embedding, self.input_dropout)

    # ---- training ---------------------------------------------------------------------------
    def epoch_warning(self):
        """The curriculum (eq. 11) needs the epoch; without it, it stays at epoch 0."""
        curriculum = self.curriculum
        if not curriculum.enabled or curriculum.w_min == curriculum.w_max:
            return None  # the weights do not depend on the epoch
        w_item, w_feat = curriculum.weights(self.current_epoch)
        return (f"the alignment curriculum (eq. 11) stays at epoch {self.current_epoch} "
                f"(w_item={w_item:g}, w_feat={w_feat:g}) for the whole run")

    def alignment_items(self, interaction) -> torch.Tensor:
        """The batch's items for alignment: sequence items, targets and sampled negatives (with
        ``train_positions: all``, the negatives of every position, as the authors' code aligns).

        Distinct items by default (the paper's "batch of items"); with the ``align_duplicates``
        quirk every occurrence of the sequence items and negatives, as the authors' code does
        (the rows' targets too, unless ``train_positions: all``, where they are the inputs
        shifted by one and the authors' code does not add them again). At most ``align_max_items`` (a random
        subset), which bounds the N x N similarity matrix of eq. (5).
        """
        if "align_duplicates" not in self.quirks:
            return self.distinct_items(self.batch_items(interaction), self.align_max_items)
        # the authors' tokens: every input item and every sampled negative; with one row per
        # user the targets are the inputs shifted by one, and their code does not add them again
        every_position = getattr(self, "train_positions", "last") == "all"
        items = self.batch_items(interaction, targets=not every_position)
        items = items[(items > 0) & (items < self.item_embedding.n_llm)]
        if items.numel() > self.align_max_items:
            items = items[torch.randperm(items.numel(), device=items.device)[: self.align_max_items]]
        return items

    def alignment_losses(self, items: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Weighted item- and feature-level losses (eq. 5, 10, 11) for ``items``."""
        w_item, w_feat = self.curriculum.weights(self.current_epoch)
        fused = self.item_embedding
        use_item = self.item_align and w_item > 0
        use_feature = self.feature_align and w_feat > 0
        if not (use_item or use_feature):
            return {}
        e, p = fused.views(items)  # one projector pass for both terms (the step's, under CE)
        out = {}
        # quirk projector_masks: their code runs the projector again for each term (F/trainers.py
        # 371-428), so the feature term sees a second dropout mask
        fresh_p = "projector_masks" in self.quirks and use_item
        if use_item:
            dup_ids = items if "align_duplicates" in self.quirks else None
            out["item"] = w_item * item_alignment_loss(e, p, self.item_tau, dup_ids)
        if use_feature:
            groups = self.grouper.split(items) if self.pop_group else (
                torch.arange(items.numel(), device=items.device),)
            if fresh_p:
                p = fused.llm_view(items)
            out["feature"] = w_feat * feature_alignment_loss(e, p, groups, self.bt_lambda)
        return out

    def step_context(self, interaction):
        """CE fuses the full table anyway: the input lookups and the alignment views share that
        pass (:meth:`~recbole_faerec.model.kernels.ItemTableCache.shared_tables`)."""
        if self.llm_loss_type == "CE":
            return self.item_embedding.shared_tables()
        return super().step_context(interaction)

    def auxiliary_losses(self, interaction) -> Dict[str, torch.Tensor]:
        """Eq. (14)'s second term: alpha * (w_item L_item + w_feat L_feat) (eq. 12)."""
        if self.align_weight == 0:
            return {}
        losses = self.alignment_losses(self.alignment_items(interaction))
        if not losses:
            return {}
        return {"align": self.align_weight * sum(losses.values())}

    # ---- analysis -----------------------------------------------------------------------------
    def item_views(self, items: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The ID view :math:`e_i` and the projected LLM view :math:`p_i` (eq. 2) of ``items``,
        in the hidden space both are aligned in (what paper Figure 5 plots with t-SNE)."""
        fused = self.item_embedding
        return {"ID": fused.id_view(items), "LLM": fused.llm_view(items)}


FAMILY = method_family(FAERecMixin, __name__)
globals().update(FAMILY)

__all__ = list(FAMILY)
