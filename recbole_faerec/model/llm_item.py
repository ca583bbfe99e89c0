r"""What every LLM-enhanced item method shares, and the factory of ``<Method>_<Backbone>`` classes.

An LLM-item method (FAERec, LLMInit, RLMRec-Con, RLMRec-Gen, ...) is a mixin over a RecBole
sequential backbone: ``class <Method>_<Backbone>(<Method>Mixin, <Backbone>)``. The backbone keeps its
``forward``/``calculate_loss``/``predict``/``full_sort_predict``; the method changes the item table
the backbone reads (``self.item_embedding``) and/or adds terms to its loss. :class:`LLMItemMixin`
gives every method:

* the dataset's cached LLM item table (:mod:`recbole_faerec.embeddings`), created on first use, and
  its fingerprint in checkpoints (a checkpoint trained with other embeddings is refused);
* :func:`pca_init_`, the ID table initialised from the PCA of the LLM table (FAERec §4.1, LLMInit);
* the training epoch (:meth:`~LLMItemMixin.set_epoch`, which every RecBole trainer calls once the
  plugin is imported), for methods whose loss depends on it;
* ``loss_type`` CE, BPR, or the paper's BCE with one sampled negative (any backbone with a BPR
  branch, :func:`recbole_faerec.model.loss.bce_capable`);
* the batch's items (:meth:`~LLMItemMixin.batch_items`: sequence items, targets, sampled negatives);
* ``calculate_loss`` = the backbone's loss + the method's :meth:`~LLMItemMixin.auxiliary_losses`,
  logged by name;
* the ID and LLM views of items (:meth:`~LLMItemMixin.item_embedding_views`), which the comparison
  runner maps with t-SNE (paper Fig. 5).

A new method is one mixin (``method_name``, ``__init__`` that calls ``super().__init__`` first,
:meth:`auxiliary_losses`, :meth:`item_views`) and one line, ``globals().update(method_family(M))``,
in its own file under ``model/sequential_recommender/``, with its defaults in
``props/model/<method_name>.yaml``. ``docs/architecture.md`` walks through one.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Dict, Optional

import numpy as np
import torch

from recbole_faerec.embeddings import ensure_item_embeddings
from recbole_faerec.embeddings.store import EmbeddingFileError
from recbole_faerec.model.backbones import backbones
from recbole_faerec.model.positions import position_targets
from recbole_faerec.settings import SettingError


class MethodBackboneError(ValueError):
    """A method asked of a backbone it cannot wrap (one line that names why)."""


class MethodSettingError(SettingError):
    """A method's setting that cannot take effect, such as a file it cannot use (one line that
    names the setting)."""


def pca_init_(weight: torch.Tensor, llm: np.ndarray, seed: int, with_padding: bool = False) -> int:
    """Overwrite the ID rows of real items (1..n-1) with PCA scores of their LLM embeddings.

    scikit-learn PCA, centred, no whitening or rescaling. ``with_padding`` reproduces the FAERec
    authors' fit that includes two all-zero rows (reference notes §2). Returns the number of
    components set (at most the LLM dimension and the item count); further columns keep the
    backbone's init.
    """
    from sklearn.decomposition import PCA

    n = llm.shape[0]
    real = llm[1:]
    k = min(weight.shape[1], real.shape[1], real.shape[0] - 1)
    if k < 1:
        return 0
    fit_on = np.vstack([np.zeros((1, real.shape[1])), real, np.zeros((1, real.shape[1]))]) \
        if with_padding else real
    pca = PCA(n_components=k, random_state=seed).fit(fit_on)
    scores = torch.as_tensor(pca.transform(real), dtype=weight.dtype)
    with torch.no_grad():
        weight[1:n, :k] = scores
    return k


def table_fingerprint(table) -> torch.Tensor:
    """Rows, columns, sum and sum of squares of a table (float64): what a checkpoint records of the
    LLM table it was trained with."""
    t = torch.as_tensor(np.asarray(table) if not isinstance(table, torch.Tensor) else table).double()
    return torch.stack([torch.tensor(float(t.shape[0]), dtype=torch.float64),
                        torch.tensor(float(t.shape[1]), dtype=torch.float64), t.sum(), t.pow(2).sum()])


class LLMItemMixin:
    """The part every LLM-item method shares (see the module docstring)."""

    #: the method's name: the class prefix (``<method_name>_<Backbone>``) and its YAML
    method_name = "LLMItem"
    #: plugin YAMLs loaded after the backbone's and ``overall.yaml`` (see Config)
    plugin_config_models = ("LLMItem",)
    #: the model reads the dataset's cached item embeddings (created before DDP workers start)
    needs_item_embeddings = True
    #: names of the parts of the tuple calculate_loss returns (RecBole's log, compat loss_names)
    loss_names = ("rec", "aux")
    #: the RecBole backbone the method wraps (set by :func:`method_model`)
    backbone_class: type = object
    #: keep the backbone's per-position output of the last forward in ``sequence_states``
    keep_states = False
    sequence_states: Optional[torch.Tensor] = None

    def __init__(self, config, dataset):
        # BCE (eq. 13) is built by the backbone's BPR branch (compat bce_loss, model.loss.bce_capable)
        self.llm_loss_type = config["loss_type"]
        super().__init__(config, dataset)
        self.logger = logging.getLogger()
        if not isinstance(getattr(self, "item_embedding", None), torch.nn.Embedding):
            raise MethodBackboneError(f"{type(self).__name__}: the backbone's item_embedding is not "
                                      f"an nn.Embedding")
        self.llm_table_np = ensure_item_embeddings(dataset, config, self.logger)
        self.register_buffer("llm_fingerprint", table_fingerprint(self.llm_table_np))
        self.current_epoch = 0
        self._epoch_set = False  # set_epoch() called at least once (else one warning)

    @classmethod
    def cannot_wrap(cls, backbone: type) -> Optional[str]:
        """Why this method cannot wrap ``backbone`` (None: it can). Checked when the class is made."""
        return None

    # ---- the ID table from the text ------------------------------------------------------------
    def pca_init_id_table(self, config, with_padding: bool = False) -> int:
        """The backbone's ID table initialised by PCA of the LLM table (:func:`pca_init_`)."""
        k = pca_init_(self.item_embedding.weight.data, self.llm_table_np, config["seed"], with_padding)
        self.logger.info(f"{type(self).__name__}: ID embeddings initialised by PCA-{k} of the LLM "
                         f"table {self.llm_table_np.shape}")
        return k

    # ---- the epoch -------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """The 0-based training epoch. Every RecBole trainer calls it before each training epoch
        once ``recbole_faerec`` is imported (compat ``trainer_epoch``); a hand-written training
        loop must call it itself."""
        self.current_epoch = int(epoch)
        self._epoch_set = True

    def epoch_warning(self) -> Optional[str]:
        """What goes wrong when nobody sets the epoch (None: nothing, the loss does not depend on
        it)."""
        return None

    def _warn_epoch_never_set(self) -> None:
        """Once per model: trained, but nobody ever told it the epoch (a hand-written loop)."""
        self._epoch_set = True
        problem = self.epoch_warning()
        if problem:
            self.logger.warning(
                f"{type(self).__name__} is trained without its epoch ever being set: {problem}. "
                "Call model.set_epoch(epoch) before each training epoch, or train with a RecBole "
                "trainer after 'import recbole_faerec'.")

    # ---- training --------------------------------------------------------------------------------
    def batch_items(self, interaction, sequence: bool = True, targets: bool = True,
                    negatives: bool = True) -> torch.Tensor:
        """The batch's item ids, every occurrence (padding included): sequence items, targets and
        sampled negatives (with ``train_positions: all``, the negatives of every position)."""
        parts = []
        if sequence:
            parts.append(interaction[self.ITEM_SEQ].flatten())
        if targets:
            parts.append(interaction[self.POS_ITEM_ID].flatten())
        sampled = self.batch_negatives(interaction) if negatives else None
        if sampled is not None:
            parts.append(sampled)
        return torch.cat(parts)

    def batch_targets(self, interaction) -> torch.Tensor:
        """The items the batch's rows are scored against: each row's target, or with
        ``train_positions: all`` the target of every position."""
        if getattr(self, "train_positions", "last") == "all":
            mask, targets = position_targets(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN],
                                             interaction[self.POS_ITEM_ID])
            return targets[mask]
        return interaction[self.POS_ITEM_ID].flatten()

    def batch_negatives(self, interaction) -> Optional[torch.Tensor]:
        """The step's sampled negatives (BPR/BCE; with ``train_positions: all`` one per position),
        or None (CE)."""
        position_negatives = getattr(self, "position_negatives", None)
        if position_negatives is not None:
            return position_negatives
        if self.NEG_ITEM_ID in interaction.interaction:
            return interaction[self.NEG_ITEM_ID].flatten()
        return None

    def gather_indexes(self, output, gather_index):
        """The backbone's own, keeping its per-position ``output`` in :attr:`sequence_states`
        while :attr:`keep_states` is set (methods that read the states of every position)."""
        if self.keep_states:
            self.sequence_states = output
        return super().gather_indexes(output, gather_index)

    def distinct_items(self, items: torch.Tensor, limit: Optional[int] = None) -> torch.Tensor:
        """The distinct real items among ``items`` (ascending, padding and rows beyond the LLM table
        dropped), at most ``limit`` of them (a random subset)."""
        n = self.llm_table_np.shape[0]
        seen = torch.zeros(max(self.item_embedding.num_embeddings, n), dtype=torch.bool,
                           device=items.device)
        seen[items] = True  # marking rather than sorting
        seen[0] = False
        items = torch.nonzero(seen[:n]).flatten()
        if limit is not None and items.numel() > limit:
            items = items[torch.randperm(items.numel(), device=items.device)[:limit]]
        return items

    def step_context(self, interaction):
        """A context the backbone's loss and :meth:`auxiliary_losses` share within the step of
        ``interaction``."""
        return nullcontext()

    def auxiliary_losses(self, interaction) -> Dict[str, torch.Tensor]:
        """The method's weighted terms added to the backbone's loss (empty: none this step)."""
        return {}

    def recommendation_loss(self, interaction) -> torch.Tensor:
        """The recommendation loss: the backbone's own (its ``calculate_loss``). A method that
        scores items with representations of its own (LLM-ESR's two views) overrides it."""
        return super().calculate_loss(interaction)

    def calculate_loss(self, interaction):
        """:meth:`recommendation_loss` (the backbone's), plus the sum of :meth:`auxiliary_losses`.

        Returns ``(rec_loss, auxiliary)``, named by :attr:`loss_names` in RecBole's log, or the
        recommendation loss alone when the method adds nothing this step.
        """
        if self.training and not self._epoch_set:
            self._warn_epoch_never_set()
        with self.step_context(interaction):
            rec_loss = self.recommendation_loss(interaction)
            losses = self.auxiliary_losses(interaction)
        if not losses:
            return rec_loss
        return rec_loss, sum(losses.values())

    # ---- analysis --------------------------------------------------------------------------------
    def item_views(self, items: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The method's views of ``items`` for the t-SNE (paper Fig. 5): at least ``ID``; ``LLM``
        in the space the method compares it with. Default: the ID table alone."""
        return {"ID": self.item_embedding.weight[items]}

    @torch.no_grad()
    def item_embedding_views(self, items: torch.Tensor) -> Dict[str, torch.Tensor]:
        """:meth:`item_views` on the model's device, returned on the CPU."""
        items = items.to(self.llm_fingerprint.device)
        return {name: view.detach().cpu() for name, view in self.item_views(items).items()}

    # ---- checkpoints -----------------------------------------------------------------------------
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


#: ``<Method>_<Backbone>`` names a method cannot make, and why (the model lookup reports it)
UNWRAPPABLE: Dict[str, str] = {}


def method_model(mixin: type, backbone: type, module: Optional[str] = None) -> type:
    """``<mixin.method_name>_<Backbone>``: ``backbone`` with the method ``mixin``.

    Raises :class:`MethodBackboneError` when the method cannot wrap the backbone.
    """
    from recbole_faerec.trainer import LLMItemTrainer

    name = f"{mixin.method_name}_{backbone.__name__}"
    reason = mixin.cannot_wrap(backbone)
    if reason:
        raise MethodBackboneError(f"{name}: {mixin.method_name} cannot wrap {backbone.__name__}: {reason}")
    return type(name, (mixin, backbone), {
        "__module__": module or mixin.__module__,
        "__qualname__": name,
        "__doc__": f"{mixin.method_name} on {backbone.__name__} (see :class:`{mixin.__name__}`).",
        "recbole_config_models": (backbone.__name__,),
        "backbone_class": backbone,
        "trainer_class": LLMItemTrainer,
    })


def method_family(mixin: type, module: Optional[str] = None) -> Dict[str, type]:
    """``<Method>_<Backbone>`` for every backbone of :mod:`recbole_faerec.model.backbones` the
    method can wrap, by name; the others are recorded in :data:`UNWRAPPABLE` with the reason."""
    family = {}
    for backbone in backbones().values():
        try:
            cls = method_model(mixin, backbone, module)
        except MethodBackboneError as e:
            UNWRAPPABLE[f"{mixin.method_name}_{backbone.__name__}"] = str(e)
            continue
        family[cls.__name__] = cls
    return family


__all__ = ["LLMItemMixin", "MethodBackboneError", "MethodSettingError", "UNWRAPPABLE", "method_family", "method_model",
           "pca_init_", "table_fingerprint"]
