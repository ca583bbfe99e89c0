r"""RLMRec (Ren et al., WWW 2024), contrastive and generative, on any RecBole sequential backbone:
``RLMRecCon_<Backbone>`` and ``RLMRecGen_<Backbone>`` (baselines of FAERec Table 2).

RLMRec aligns the collaborative (ID) space with the LLM space; the original works on graph
backbones with user and item profiles. This is the sequential adaptation of
``shared/docs/baselines-notes.md`` §2.2 (FAERec's own is unreleased): item rows only, the backbone's
ID table :math:`E`, the frozen LLM table :math:`L`. Both score items with :math:`E` alone, as the
backbone does; the LLM side only shapes training.

**RLMRec-Con** maps the LLM table into the ID space with :math:`f` (:math:`D \to (D+d)/2 \to d`,
LeakyReLU, Xavier-uniform weights) and adds, over the batch's targets :math:`P` and sampled
negatives :math:`N`,

.. math:: L_{kd} = w_{kd}\,[\,\mathrm{InfoNCE}(E[P], f(L[P])) + \mathrm{InfoNCE}(E[N], f(L[N]))\,]

with :math:`\mathrm{InfoNCE}(a, b) = \mathrm{mean}_i[-\cos(a_i, b_i)/\tau + \log\sum_j \exp(\cos(a_i, b_j)/\tau)]`
(the candidates are the batch's own rows, duplicates kept as in the original; ``rlmrec_mask_duplicates``
leaves an item's other copies out). Under CE there are no sampled negatives: the target term only.

**RLMRec-Gen** masks items and reconstructs them into the LLM space. Each step, a fraction
:math:`\rho` of the batch's distinct input items is drawn; every input position holding one reads a
learnable mask token :math:`m` (zero at the start) instead of :math:`E[i]`, and the recommendation
loss runs on these masked inputs (targets are still scored with the unmasked :math:`E`). The
backbone's states :math:`H_M` at the masked positions are mapped back by :math:`g`
(:math:`d \to (d+D)/2 \to D`) and

.. math:: L_{gen} = w\,\mathrm{InfoNCE}(g(H_M), L[\mathrm{ids}_M])

(in-set negatives). ``rlmrec_gen_context: item`` is the notes' cheaper fallback: :math:`g(E[i])` on
the drawn items, without sequence context (any backbone; the context needs a backbone with one state
per position: SASRec, GRU4Rec, FMLPRec, LRURec, gMLP).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict

import torch
import torch.nn as nn

from recbole_faerec.model.llm_item import LLMItemMixin, MethodBackboneError, method_family
from recbole_faerec.model.loss import item_alignment_loss
from recbole_faerec.model.positions import supports_all_positions
from recbole_faerec.settings import SettingError, choice


def mapping_mlp(d_in: int, d_out: int) -> nn.Sequential:
    """RLMRec's 2-layer MLP with a hidden size halfway between, LeakyReLU, Xavier-uniform weights."""
    mlp = nn.Sequential(nn.Linear(d_in, (d_in + d_out) // 2), nn.LeakyReLU(), nn.Linear((d_in + d_out) // 2, d_out))
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return mlp


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float, ids=None) -> torch.Tensor:
    """RLMRec's InfoNCE from each row of ``a`` to its row of ``b``, the rows of ``b`` the candidates
    (with ``ids``, an item's other copies are left out). FAERec's eq. (5) is the same loss."""
    return item_alignment_loss(a, b, tau, ids)


class _RLMRecMixin(LLMItemMixin):
    """The frozen LLM table as a buffer, for both variants."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.register_buffer("llm_table", torch.as_tensor(self.llm_table_np).float(), persistent=False)
        self.n_llm = self.llm_table.shape[0]
        self.mask_duplicates = bool(config["rlmrec_mask_duplicates"])

    def _real(self, items: torch.Tensor) -> torch.Tensor:
        return items[(items > 0) & (items < self.n_llm)]

    def _nce(self, a, b, ids):
        return info_nce(a, b, self.tau, ids if self.mask_duplicates else None)


class RLMRecConMixin(_RLMRecMixin):
    """RLMRec-Con (see the module docstring). Config keys (``props/model/RLMRecCon.yaml``):
    ``kd_weight`` (:math:`w_{kd}`), ``kd_tau`` (:math:`\\tau`), ``rlmrec_mask_duplicates``."""

    method_name = "RLMRecCon"
    plugin_config_models = ("LLMItem", "RLMRecCon")
    loss_names = ("rec", "kd")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.kd_weight = float(config["kd_weight"])
        self.tau = float(config["kd_tau"])
        self.mapper = mapping_mlp(self.llm_table.shape[1], self.item_embedding.embedding_dim)

    def mapped(self, items: torch.Tensor) -> torch.Tensor:
        """:math:`f(L[i])`, the LLM embedding mapped into the ID space."""
        return self.mapper(self.llm_table[items])

    def auxiliary_losses(self, interaction) -> Dict[str, torch.Tensor]:
        if self.kd_weight == 0:
            return {}
        loss = 0.0
        for items in (self.batch_targets(interaction), self.batch_negatives(interaction)):
            if items is None:
                continue
            items = self._real(items)
            if items.numel() > 1:
                loss = loss + self._nce(self.item_embedding(items), self.mapped(items), items)
        return {"kd": self.kd_weight * loss} if torch.is_tensor(loss) else {}

    def item_views(self, items: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The ID embedding and the LLM embedding mapped into its space by :math:`f`."""
        return {"ID": self.item_embedding.weight[items], "LLM": self.mapped(items)}


class MaskedItemInput(nn.Module):
    """The backbone's item table, with the input positions of the step's drawn items reading the
    mask token :math:`m` (RLMRec-Gen). Scored items (1-D lookups, ``.weight``) are never masked."""

    def __init__(self, id_embedding: nn.Embedding):
        super().__init__()
        self.id_embedding = id_embedding
        self.mask_token = nn.Parameter(torch.zeros(id_embedding.embedding_dim))
        self.embedding_dim = id_embedding.embedding_dim
        self.num_embeddings = id_embedding.num_embeddings
        self.padding_idx = id_embedding.padding_idx
        self.masked = None  # bool[num_embeddings] of the step's drawn items, or None

    @property
    def weight(self) -> torch.Tensor:
        return self.id_embedding.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.id_embedding(ids)
        if self.masked is None or ids.dim() < 2:
            return out
        return torch.where(self.masked[ids].unsqueeze(-1), self.mask_token.to(out.dtype), out)


class RLMRecGenMixin(_RLMRecMixin):
    """RLMRec-Gen (see the module docstring). Config keys (``props/model/RLMRecGen.yaml``):
    ``gen_mask_ratio`` (:math:`\\rho`), ``gen_weight`` (:math:`w`), ``gen_tau`` (:math:`\\tau`),
    ``rlmrec_gen_context`` (``sequence`` or ``item``), ``rlmrec_mask_duplicates``."""

    method_name = "RLMRecGen"
    plugin_config_models = ("LLMItem", "RLMRecGen")
    loss_names = ("rec", "gen")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.mask_ratio = float(config["gen_mask_ratio"])
        self.gen_weight = float(config["gen_weight"])
        self.tau = float(config["gen_tau"])
        self.context = choice(config, "rlmrec_gen_context", ("sequence", "item"))
        if not 0 <= self.mask_ratio < 1:
            raise SettingError(f"gen_mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.context == "sequence" and not supports_all_positions(self.backbone_class):
            raise MethodBackboneError(
                f"{type(self).__name__}: rlmrec_gen_context 'sequence' reconstructs items from the "
                f"backbone's state at their position, and {self.backbone_class.__name__} has no state "
                f"per position; use rlmrec_gen_context: item (the notes' fallback) or a backbone "
                f"with one (SASRec, GRU4Rec, FMLPRec, LRURec, gMLP)")
        self.item_embedding = MaskedItemInput(self.item_embedding)
        self.generator = mapping_mlp(self.item_embedding.embedding_dim, self.llm_table.shape[1])
        self._drawn = None

    def _draw(self, interaction) -> torch.Tensor:
        """A fraction ``gen_mask_ratio`` of the batch's distinct input items (each with that
        probability)."""
        items = self.distinct_items(interaction[self.ITEM_SEQ].flatten())
        keep = torch.rand(items.shape, device=items.device) < self.mask_ratio
        return items[keep]

    @contextmanager
    def step_context(self, interaction):
        """While training: mask the drawn items' input positions for the whole step, and keep the
        backbone's per-position states (sequence context)."""
        table = self.item_embedding
        self._drawn = None
        if self.training and self.mask_ratio > 0 and self.gen_weight > 0:
            drawn = self._draw(interaction)
            mask = torch.zeros(table.num_embeddings, dtype=torch.bool, device=drawn.device)
            mask[drawn] = True
            table.masked, self._drawn = mask, drawn
            self.keep_states = self.context == "sequence"
        try:
            yield
        finally:
            table.masked = None
            self.keep_states = False
            self.sequence_states = None

    def auxiliary_losses(self, interaction) -> Dict[str, torch.Tensor]:
        drawn = self._drawn
        if drawn is None or drawn.numel() == 0:
            return {}
        if self.context == "item":
            ids = drawn
            states = self.item_embedding.id_embedding(drawn)
        else:
            seq = interaction[self.ITEM_SEQ]
            states = self.sequence_states
            if states is None or states.shape[:2] != seq.shape:
                raise RuntimeError(f"{type(self).__name__}: the backbone gave no per-position states")
            where = self.item_embedding.masked[seq] & (seq > 0)
            ids, states = seq[where], states[where]
        if ids.numel() < 2:
            return {}
        loss = self._nce(self.generator(states), self.llm_table[ids], ids)
        return {"gen": self.gen_weight * loss}

    def item_views(self, items: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Both views in the LLM space, where RLMRec-Gen aligns them: the ID embedding mapped by
        the generator :math:`g`, and the LLM embedding itself."""
        return {"ID": self.generator(self.item_embedding.weight[items]), "LLM": self.llm_table[items]}


FAMILY = {**method_family(RLMRecConMixin, __name__), **method_family(RLMRecGenMixin, __name__)}
globals().update(FAMILY)

__all__ = list(FAMILY)
