r"""FAERec (SIGIR 2026) on top of RecBole's sequential backbones: ``FAERec_<Backbone>``.

Each ``FAERec_<Backbone>`` subclasses the RecBole backbone and only swaps its item table: after the
backbone's own ``__init__``, ``self.item_embedding`` (an ``nn.Embedding``) becomes a
:class:`~recbole_faerec.model.layers.FusedItemEmbedding` over

* the backbone's ID table, initialised by PCA of the LLM table (§4.1),
* the frozen LLM table (cached item embeddings, :mod:`recbole_faerec.embeddings`) through the
  2-layer projector of eq. (2),
* the dimension-wise gate of eq. (3)-(4).

The backbone's ``forward``, ``calculate_loss``, ``predict`` and ``full_sort_predict`` then run
unchanged. :meth:`FAERecMixin.calculate_loss` adds the dual-level alignment: eq. (5) item level,
eq. (6)-(10) feature level per popularity group, weighted by the cosine curriculum of eq. (11):
:math:`L = L_{rec} + \alpha (w_{item} L_{item} + w_{feat} L_{feat})` (eq. 12-14). Inference scores
items with the equal-weight fusion :math:`(e_i + p_i)/2` (§4.3).

A new backbone costs one line: ``FAERec_X = faerec_model(X)``.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Dict

import numpy as np
import torch
from recbole.model.sequential_recommender import (
    BERT4Rec,
    CORE,
    FDSA,
    GCSAN,
    HRM,
    NARM,
    NPE,
    SHAN,
    SINE,
    SRGNN,
    STAMP,
    Caser,
    FEARec,
    GRU4Rec,
    GRU4RecF,
    LightSANs,
    NextItNet,
    SASRec,
    SASRecF,
    TransRec,
)
from recbole.model.sequential_recommender.gru4reccpr import GRU4RecCPR
from recbole.model.sequential_recommender.sasreccpr import SASRecCPR

from recbole_faerec.embeddings import ensure_item_embeddings
from recbole_faerec.model.sequential_recommender.fmlprec import FMLPRec
from recbole_faerec.model.sequential_recommender.gmlp import gMLP
from recbole_faerec.model.sequential_recommender.lrurec import LRURec
from recbole_faerec.embeddings.store import EmbeddingFileError
from recbole_faerec.model.curriculum import CosineCurriculum
from recbole_faerec.model.layers import FUSIONS, DimensionGate, FusedItemEmbedding, LLMProjector
from recbole_faerec.model.loss import (
    feature_alignment_loss,
    item_alignment_loss,
)
from recbole_faerec.model.popularity import PopularityGrouper, train_popularity
from recbole_faerec.utils.utils import config_get

QUIRKS = ("train_id_scores", "align_duplicates", "pca_with_padding")


def pca_init_(weight: torch.Tensor, llm: np.ndarray, seed: int, with_padding: bool = False) -> int:
    """Overwrite the ID rows of real items (1..n-1) with PCA scores of their LLM embeddings (§4.1).

    scikit-learn PCA, centred, no whitening or rescaling. ``with_padding`` reproduces the authors'
    fit that includes two all-zero rows (reference notes §2). Returns the number of components set
    (at most the LLM dimension and the item count); further columns keep the backbone's init.
    """
    from sklearn.decomposition import PCA

    n, d = llm.shape[0], weight.shape[1]
    real = llm[1:]
    k = min(d, real.shape[1], real.shape[0] - 1)
    if k < 1:
        return 0
    fit_on = np.vstack([np.zeros((1, real.shape[1])), real, np.zeros((1, real.shape[1]))]) \
        if with_padding else real
    pca = PCA(n_components=k, random_state=seed).fit(fit_on)
    scores = torch.as_tensor(pca.transform(real), dtype=weight.dtype)
    with torch.no_grad():
        weight[1:n, :k] = scores
    return k


def _input_layernorm(model, dim: int):
    """The backbone's model-level LayerNorm over its input item embeddings (RecBole's
    ``LayerNorm``, the plugin backbones' ``layer_norm``), or None."""
    for name in ("LayerNorm", "layer_norm"):
        norm = getattr(model, name, None)
        if isinstance(norm, torch.nn.LayerNorm) and tuple(norm.normalized_shape) == (dim,):
            return norm
    return None


def _fingerprint(table: torch.Tensor) -> torch.Tensor:
    t = table.double()
    return torch.stack([torch.tensor(float(t.shape[0]), dtype=torch.float64),
                        torch.tensor(float(t.shape[1]), dtype=torch.float64), t.sum(), t.pow(2).sum()])


class FAERecMixin:
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

    #: plugin YAMLs shared by the family (props/model/FAERec.yaml; see Config)
    plugin_config_models = ("FAERec",)
    #: the model reads the dataset's cached item embeddings (created before DDP workers start)
    needs_item_embeddings = True
    #: names of the parts of the tuple calculate_loss returns (RecBole's log, compat loss_names)
    loss_names = ("rec", "align")

    def __init__(self, config, dataset):
        loss_type = config["loss_type"]
        # BCE (eq. 13) is built by the backbone's BPR branch (compat bce_loss, model.loss.bce_capable)
        super().__init__(config, dataset)
        self.faerec_loss_type = loss_type
        logger = logging.getLogger()

        quirks = list(config_get(config, "reference_quirks", []))
        unknown = set(quirks) - set(QUIRKS)
        if unknown:
            raise ValueError(f"reference_quirks: unknown {sorted(unknown)}; known: {QUIRKS}")
        self.quirks = set(quirks)

        id_embedding = self.item_embedding
        if not isinstance(id_embedding, torch.nn.Embedding):
            raise TypeError(f"{type(self).__name__}: the backbone's item_embedding is not an nn.Embedding")
        dim = id_embedding.embedding_dim
        llm = ensure_item_embeddings(dataset, config, logger)
        if config_get(config, "pca_init", True):
            k = pca_init_(id_embedding.weight.data, llm, config["seed"],
                          with_padding="pca_with_padding" in self.quirks)
            logger.info(f"FAERec: ID embeddings initialised by PCA-{k} of the LLM table {llm.shape}")
        llm_table = torch.as_tensor(llm)

        use_gate = config_get(config, "use_gate", True)
        projector = LLMProjector(llm_table.shape[1], dim, config_get(config, "projector_hidden"),
                                 config_get(config, "projector_dropout", 0.3))
        gate = DimensionGate(dim, config_get(config, "gate_dropout", 0.1)) if use_gate else None
        # w/o AGF (paper Table 3): the gate replaced by equal weights, or (fusion_without_gate:
        # id) no fusion at all, the ID table alone wherever the gate fused
        without_gate = config["fusion_without_gate"]
        if without_gate not in ("mean", "id"):
            raise ValueError(f"fusion_without_gate '{without_gate}' is unknown; expected mean or id")
        input_fusion = "gate" if use_gate else without_gate
        train_fusion = config["train_score_fusion"]
        if train_fusion == "gate" and not use_gate:
            train_fusion = without_gate
        if "train_id_scores" in self.quirks:
            if train_fusion not in ("gate", "mean", "id"):
                raise ValueError(f"reference_quirks 'train_id_scores' scores training targets with "
                                 f"the ID table; it contradicts train_score_fusion "
                                 f"'{config['train_score_fusion']}'")
            train_fusion = "id"
        eval_fusion = config["inference_fusion"]
        for key, how in (("train_score_fusion", train_fusion), ("inference_fusion", eval_fusion)):
            if how not in FUSIONS:
                raise ValueError(f"{key} '{how}' is unknown; expected one of {FUSIONS}")
            if how == "gate" and not use_gate:
                raise ValueError(f"{key} 'gate' needs use_gate: True")
        norm = _input_layernorm(self, dim)
        if "layernorm" in (train_fusion, eval_fusion) and norm is None:
            norm = torch.nn.LayerNorm(dim, eps=1e-12, elementwise_affine=False)
            logger.warning(
                f"{type(self).__name__}: 'layernorm' scoring (the authors' LN(E + P(L))) uses the "
                f"backbone's model-level LayerNorm (SASRec's, over item + position embeddings); "
                f"{type(self).__mro__[2].__name__} has none, so items are scored with a layer "
                f"normalisation without learned scale and shift")
        self.item_embedding = FusedItemEmbedding(id_embedding, llm_table, projector, gate,
                                                 input_fusion, train_fusion, eval_fusion,
                                                 norm)
        self.register_buffer("llm_fingerprint", _fingerprint(llm_table))

        self.align_weight = float(config_get(config, "align_weight", 0.2))
        self.item_tau = float(config_get(config, "item_tau", 0.05))
        self.bt_lambda = float(config_get(config, "bt_lambda", 0.005))
        self.item_align = bool(config_get(config, "item_align", True))
        self.feature_align = bool(config_get(config, "feature_align", True))
        self.pop_group = bool(config_get(config, "pop_group", True))
        self.align_max_items = int(config_get(config, "align_max_items", 2048))
        self.curriculum = CosineCurriculum(
            w_min=float(config_get(config, "w_min", 0.9)), w_max=float(config_get(config, "w_max", 1.0)),
            period=float(config_get(config, "period", 30)),
            enabled=bool(config_get(config, "curriculum", True)),
            fixed=float(config_get(config, "curriculum_fixed_item_weight", 0.5)))
        self.grouper = PopularityGrouper(train_popularity(dataset))
        self.current_epoch = 0
        self._epoch_set = False  # set_epoch() called at least once (else one warning, see below)

    # ---- training ---------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """The 0-based training epoch of the curriculum (eq. 11). Every RecBole trainer calls it
        before each training epoch once ``recbole_faerec`` is imported (compat ``trainer_epoch``);
        a hand-written training loop must call it itself."""
        self.current_epoch = int(epoch)
        self._epoch_set = True

    def _warn_epoch_never_set(self) -> None:
        """Once per model: trained, but nobody ever told it the epoch (a hand-written loop)."""
        self._epoch_set = True
        curriculum = self.curriculum
        if not curriculum.enabled or curriculum.w_min == curriculum.w_max:
            return  # the weights do not depend on the epoch
        w_item, w_feat = curriculum.weights(self.current_epoch)
        logging.getLogger().warning(
            f"{type(self).__name__} is trained without its epoch ever being set: the alignment "
            f"curriculum (eq. 11) stays at epoch {self.current_epoch} (w_item={w_item:g}, "
            f"w_feat={w_feat:g}) for the whole run. Call model.set_epoch(epoch) before each "
            "training epoch, or train with a RecBole trainer after 'import recbole_faerec'.")

    def alignment_items(self, interaction) -> torch.Tensor:
        """The batch's items for alignment: sequence items, targets and sampled negatives (with
        ``train_positions: all``, the negatives of every position, as the authors' code aligns).

        Distinct items by default (the paper's "batch of items"); with the ``align_duplicates``
        quirk every occurrence, as the authors' code does. At most ``align_max_items`` (a random
        subset), which bounds the N x N similarity matrix of eq. (5).
        """
        parts = [interaction[self.ITEM_SEQ].flatten(), interaction[self.POS_ITEM_ID].flatten()]
        negatives = getattr(self, "position_negatives", None)  # train_positions: all, BPR/BCE
        if negatives is not None:
            parts.append(negatives)
        elif self.NEG_ITEM_ID in interaction.interaction:
            parts.append(interaction[self.NEG_ITEM_ID].flatten())
        items = torch.cat(parts)
        if "align_duplicates" in self.quirks:
            items = items[(items > 0) & (items < self.item_embedding.n_llm)]
        else:  # distinct items, ascending (as torch.unique), by marking them: no sort
            seen = torch.zeros(self.item_embedding.num_embeddings, dtype=torch.bool, device=items.device)
            seen[items] = True
            seen[0] = False
            items = torch.nonzero(seen[: self.item_embedding.n_llm]).flatten()
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
        if use_item:
            dup_ids = items if "align_duplicates" in self.quirks else None
            out["item"] = w_item * item_alignment_loss(e, p, self.item_tau, dup_ids)
        if use_feature:
            groups = self.grouper.split(items) if self.pop_group else (
                torch.arange(items.numel(), device=items.device),)
            out["feature"] = w_feat * feature_alignment_loss(e, p, groups, self.bt_lambda)
        return out

    def calculate_loss(self, interaction):
        """Eq. (14): the backbone's recommendation loss + alpha * alignment (eq. 12).

        Returns ``(rec_loss, alignment_loss)``, named by :attr:`loss_names` in RecBole's log.
        """
        if self.training and not getattr(self, "_epoch_set", False):
            self._warn_epoch_never_set()
        # CE fuses the full table anyway: the input lookups and the alignment views share that pass
        shared = self.item_embedding.shared_tables() if self.faerec_loss_type == "CE" else nullcontext()
        with shared:
            rec_loss = super().calculate_loss(interaction)
            losses = self.alignment_losses(self.alignment_items(interaction))
        if not losses or self.align_weight == 0:
            return rec_loss
        return rec_loss, self.align_weight * sum(losses.values())

    # ---- analysis -----------------------------------------------------------------------------
    @torch.no_grad()
    def item_embedding_views(self, items: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The ID view :math:`e_i` and the projected LLM view :math:`p_i` (eq. 2) of ``items``,
        in the hidden space both are aligned in (what paper Figure 5 plots with t-SNE)."""
        fused = self.item_embedding
        items = items.to(fused.llm_table.device)
        return {"ID": fused.id_view(items).cpu(), "LLM": fused.llm_view(items).cpu()}

    # ---- checkpoints ------------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True, **kwargs):
        """Refuse a checkpoint trained with other item embeddings than the cached ones."""
        saved = state_dict.get("llm_fingerprint")
        if saved is not None and not torch.allclose(saved.double().cpu(),
                                                    self.llm_fingerprint.double().cpu(), rtol=1e-6):
            n, d = int(saved[0]), int(saved[1])
            raise EmbeddingFileError(
                f"{type(self).__name__}: this checkpoint was trained with other item LLM embeddings "
                f"({n} x {d}, checksum {float(saved[2]):.6g}) than the cached ones "
                f"({int(self.llm_fingerprint[0])} x {int(self.llm_fingerprint[1])}, checksum "
                f"{float(self.llm_fingerprint[2]):.6g}); restore the embeddings it was trained with"
            )
        return super().load_state_dict(state_dict, strict=strict, **kwargs)


def faerec_model(backbone: type) -> type:
    """``FAERec_<Backbone>``: ``backbone`` with FAERec's fused item table and alignment losses."""
    from recbole_faerec.trainer import FAERecTrainer

    name = f"FAERec_{backbone.__name__}"
    cls = type(name, (FAERecMixin, backbone), {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"FAERec on RecBole's {backbone.__name__} (see :class:`FAERecMixin`).",
        "recbole_config_models": (backbone.__name__,),
        "trainer_class": FAERecTrainer,
    })
    return cls


FAERec_SASRec = faerec_model(SASRec)
FAERec_GRU4Rec = faerec_model(GRU4Rec)
FAERec_NARM = faerec_model(NARM)
FAERec_LightSANs = faerec_model(LightSANs)
FAERec_BERT4Rec = faerec_model(BERT4Rec)
FAERec_Caser = faerec_model(Caser)
FAERec_NextItNet = faerec_model(NextItNet)
FAERec_STAMP = faerec_model(STAMP)
FAERec_CORE = faerec_model(CORE)
FAERec_FEARec = faerec_model(FEARec)
FAERec_SRGNN = faerec_model(SRGNN)
FAERec_GCSAN = faerec_model(GCSAN)
FAERec_FDSA = faerec_model(FDSA)
FAERec_GRU4RecF = faerec_model(GRU4RecF)
FAERec_SASRecF = faerec_model(SASRecF)
FAERec_GRU4RecCPR = faerec_model(GRU4RecCPR)
FAERec_SASRecCPR = faerec_model(SASRecCPR)
FAERec_SHAN = faerec_model(SHAN)
FAERec_HRM = faerec_model(HRM)
FAERec_NPE = faerec_model(NPE)
FAERec_TransRec = faerec_model(TransRec)
FAERec_SINE = faerec_model(SINE)
# the paper's backbones that RecBole lacks (this plugin's own)
FAERec_FMLPRec = faerec_model(FMLPRec)
FAERec_LRURec = faerec_model(LRURec)
FAERec_gMLP = faerec_model(gMLP)

__all__ = [name for name in dir() if name.startswith("FAERec_")]
