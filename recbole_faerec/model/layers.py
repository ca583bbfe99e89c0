"""FAERec's item-side layers (paper §4.1): LLM projector, dimension-wise gate, fused item table.

:class:`FusedItemEmbedding` replaces a RecBole backbone's ``item_embedding`` (an ``nn.Embedding``)
and answers both ways the backbones use it: called with ids (a lookup) and read as ``.weight``
(the whole item table, for CE training and full-sort prediction). So the backbone's own
``forward``/``calculate_loss``/``predict``/``full_sort_predict`` run unchanged.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_faerec.model.kernels import Dropout, ItemTableCache

FUSIONS = ("gate", "mean", "layernorm", "id")




class LLMProjector(nn.Module):
    r"""Eq. (2): :math:`p_i = W_b\,\mathrm{Drop}(\mathrm{GELU}(W_a l_i + c_a)) + c_b`, a 2-layer MLP from
    the frozen LLM embedding (e.g. 1536-d) to the item embedding size."""

    def __init__(self, llm_dim: int, out_dim: int, hidden: Optional[int], dropout: float):
        super().__init__()
        hidden = hidden or max(out_dim, llm_dim // 2)
        self.net = nn.Sequential(nn.Linear(llm_dim, hidden), nn.GELU(), Dropout(dropout),
                                 nn.Linear(hidden, out_dim))

    def forward(self, llm: torch.Tensor) -> torch.Tensor:
        return self.net(llm)


class DimensionGate(nn.Module):
    r"""Eq. (3): :math:`g_i = \sigma(W_2\,\mathrm{Drop}(\mathrm{GELU}(W_1 [e_i; p_i] + b_1)) + b_2)`, one
    weight in (0, 1) per dimension; :math:`b_2` starts at zero (g = 0.5 before training)."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(2 * dim, 2 * dim)
        self.drop = Dropout(dropout)
        self.fc2 = nn.Linear(2 * dim, dim)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, e: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(self.drop(F.gelu(self.fc1(torch.cat([e, p], dim=-1))))))


def fuse(e: torch.Tensor, p: torch.Tensor, how: str, gate: Optional[DimensionGate],
         norm: Optional[nn.Module] = None) -> torch.Tensor:
    r"""Eq. (4) :math:`f_i = g_i \odot e_i + (1 - g_i) \odot p_i` (``gate``); the paper's inference
    fusion :math:`(e_i + p_i)/2` (``mean``); the authors' code's :math:`\mathrm{LN}(e_i + p_i)`
    (``layernorm``, with the backbone's own model-level LayerNorm ``norm``: each item's vector is
    also centred and divided by its own spread, so this is not the mean up to a constant); or the
    ID embedding alone (``id``)."""
    if how == "gate":
        g = gate(e, p)
        return g * e + (1 - g) * p
    if how == "mean":
        return 0.5 * (e + p)
    if how == "layernorm":
        return norm(e + p)
    if how == "id":
        return e
    raise ValueError(f"unknown fusion '{how}', expected one of {FUSIONS}")


class FusedItemEmbedding(ItemTableCache):
    """The item table a FAERec backbone sees: ID embeddings fused with projected LLM embeddings.

    * Called with a 2-D index (a sequence, ``[B, L]``): the input fusion (``input_fusion``, the
      gate of eq. 3-4 by default).
    * Called with a 1-D index (scored items: BPR/BCE positives and negatives, ``predict``) or read as
      ``.weight`` (CE training, full-sort prediction): the output fusion, ``train_fusion`` while
      training (``gate``: the item representation of eq. 13) and ``eval_fusion`` in evaluation
      (``mean``: the paper's equal-weight inference fusion; ``layernorm``: the authors' code).

    ``norm`` is the backbone's model-level LayerNorm, used (not owned: it is not registered here,
    so checkpoints keep the backbone's keys) by the ``layernorm`` fusion.

    The frozen LLM table is a non-persistent buffer (never written into checkpoints). Rows of the ID
    table beyond the LLM table (e.g. BERT4Rec's mask token) use the ID embedding alone. How the
    tables are cached and shared within a step is :class:`~recbole_faerec.model.kernels.ItemTableCache`'s
    business; this class says what they hold.
    """

    def __init__(self, id_embedding: nn.Embedding, llm_table: torch.Tensor, projector: LLMProjector,
                 gate: Optional[DimensionGate], input_fusion: str = "gate", train_fusion: str = "gate",
                 eval_fusion: str = "mean", norm: Optional[nn.Module] = None):
        super().__init__()
        for name, how in [("input", input_fusion), ("train", train_fusion), ("eval", eval_fusion)]:
            if how not in FUSIONS or (how == "gate" and gate is None) or (
                    how == "layernorm" and (norm is None or name == "input")):
                raise ValueError(f"{name} fusion '{how}' is not available (gate: {gate is not None}, "
                                 f"LayerNorm: {norm is not None})")
        object.__setattr__(self, "norm", norm)  # the backbone's module: used, not registered
        self.id_embedding = id_embedding
        self.projector = projector
        self.gate = gate
        self.register_buffer("llm_table", llm_table.float(), persistent=False)
        self.input_fusion, self.train_fusion, self.eval_fusion = input_fusion, train_fusion, eval_fusion
        self.n_llm = llm_table.shape[0]
        self.branches = None  # (position embedding, dropout): the authors' input fusion, see below
        # quirk projector_masks: the sequence input projected per token (its own dropout mask),
        # as the authors' code projects the [B, L] input, not each distinct item once
        self.per_token_projector = False
        self.embedding_dim = id_embedding.embedding_dim
        self.num_embeddings = id_embedding.num_embeddings
        self.padding_idx = id_embedding.padding_idx

    # ---- the two views of an item and their fusion (eq. 2-4) -----------------------------------
    def id_view(self, ids: torch.Tensor) -> torch.Tensor:
        """:math:`e_i`, the ID embedding."""
        return self.id_embedding(ids)

    def llm_view(self, ids: torch.Tensor) -> torch.Tensor:
        """Eq. (2): :math:`p_i = P(l_i)`, the projected LLM embedding; ids outside the LLM table
        get zeros."""
        if self.num_embeddings <= self.n_llm:  # a static check: every item has an LLM row
            return self.projector(self.llm_table[ids])
        inside = ids < self.n_llm
        out = self.projector(self.llm_table[ids.clamp(max=self.n_llm - 1)])
        return torch.where(inside.unsqueeze(-1), out, torch.zeros_like(out))

    def fused(self, ids: torch.Tensor, how: str, e: Optional[torch.Tensor] = None,
              p: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The items ``ids`` fused ``how`` (:func:`fuse`); ``e``/``p`` are their views when known.
        Rows beyond the LLM table keep the ID embedding, the padding row is zero."""
        e = self.id_view(ids) if e is None else e
        if how == "id":
            return e
        fused = fuse(e, self.llm_view(ids) if p is None else p, how, self.gate, self.norm)
        if self.num_embeddings > self.n_llm:  # a static check: no host sync on a GPU
            fused = torch.where((ids >= self.n_llm).unsqueeze(-1), e, fused)
        if self.padding_idx is not None:
            fused = fused.masked_fill((ids == self.padding_idx).unsqueeze(-1), 0.0)
        return fused

    def use_input_branches(self, position_embedding: nn.Embedding, dropout: nn.Module) -> None:
        r"""Fuse sequence inputs as the authors' code does (quirk ``input_branches``), for a
        backbone whose input layer is ``Dropout(LN(item + position))`` with positions
        ``0..L-1`` (SASRec, FMLPRec): each view gets the position embedding and its own dropout
        before the gate, which therefore sees the positions,

        :math:`x_t = \mathrm{LN}(g_t \odot a_t + (1 - g_t) \odot b_t)`, with
        :math:`a_t = \mathrm{Drop}(e_{s_t} + pos_t)`, :math:`b_t = \mathrm{Drop}(p_{s_t} + pos_t)`
        and :math:`g_t` the gate of eq. (3) on :math:`[a_t; b_t]`,

        and no dropout after the LayerNorm. The backbone keeps adding the position embedding, so
        the lookup returns :math:`x_t - pos_t`; the caller replaces the backbone's input dropout
        (``dropout``, used here instead) by the identity. Neither module is registered here: the
        checkpoint keeps the backbone's keys."""
        object.__setattr__(self, "branches", (position_embedding, dropout))

    def branch_input(self, ids: torch.Tensor) -> torch.Tensor:
        """The sequence input of :meth:`use_input_branches`, less the position embedding."""
        position_embedding, dropout = self.branches
        pos = position_embedding(torch.arange(ids.shape[-1], device=ids.device))
        if self.per_token_projector:
            p = self.llm_view(ids)
        else:
            unique, inverse = torch.unique(ids, return_inverse=True)  # project each item once
            p = F.embedding(inverse, self.llm_view(unique))
        e = self.id_view(ids)
        a, b = dropout(e + pos), dropout(p + pos)
        x = fuse(a, b, self.input_fusion, self.gate) - pos
        if self.num_embeddings > self.n_llm:
            x = torch.where((ids >= self.n_llm).unsqueeze(-1), a - pos, x)
        return x

    # ---- what the backbone calls --------------------------------------------------------------
    @property
    def output_fusion(self) -> str:
        return self.train_fusion if self.training else self.eval_fusion

    @property
    def weight(self) -> torch.Tensor:
        """Every item, fused as scored items are (:attr:`output_fusion`)."""
        return self.table(self.output_fusion)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.branches is not None and ids.dim() >= 2:
            return self.branch_input(ids)
        return self.lookup(ids, self.input_fusion if ids.dim() >= 2 else self.output_fusion)

    def extra_repr(self) -> str:
        return (f"items={self.num_embeddings}, dim={self.embedding_dim}, llm_dim={self.llm_table.shape[1]}, "
                f"input={self.input_fusion}, train={self.train_fusion}, eval={self.eval_fusion}")
