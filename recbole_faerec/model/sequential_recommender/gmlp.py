r"""gMLP (Liu et al., "Pay Attention to MLPs", NeurIPS 2021) for sequential recommendation, as a
RecBole sequential model with a causal spatial gating unit.

Each of the ``n_layers`` blocks (paper §2, eq. 1-3):

.. math::  Z = \mathrm{GELU}(\mathrm{LN}(X) U), \quad [Z_1; Z_2] = Z, \quad
           s(Z) = Z_1 \odot (W\, \mathrm{LN}(Z_2) + b), \quad Y = X + s(Z) V,

where the spatial projection :math:`W \in \mathbb{R}^{L \times L}` mixes positions. :math:`W` starts
near zero and :math:`b` at one, so each block starts close to an identity-gated MLP (§2). Here
:math:`W` is masked to its lower triangle, so position ``t`` mixes only positions ``<= t``: the
model is causal (RecBole pads sequences on the right, so the first item sits at position 0).
Inputs: item + learned position embeddings, LayerNorm, dropout; a final LayerNorm after the blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from recbole_faerec.model.sequential_recommender._causal import CausalSequentialRecommender
from recbole_faerec.settings import SettingError

__all__ = ["gMLP"]


class CausalSpatialGatingUnit(nn.Module):
    """:math:`s(Z) = Z_1 \\odot (W \\mathrm{LN}(Z_2) + b)` with a lower-triangular :math:`W` (eq. 2-3)."""

    def __init__(self, inner_size: int, max_len: int, eps: float = 1e-12):
        super().__init__()
        self.norm = nn.LayerNorm(inner_size // 2, eps=eps)
        near_zero = 1e-3 / max_len
        self.spatial_weight = nn.Parameter(torch.empty(max_len, max_len).uniform_(-near_zero, near_zero))
        self.spatial_bias = nn.Parameter(torch.ones(max_len))
        self.register_buffer("causal_mask", torch.tril(torch.ones(max_len, max_len)), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        length = z.size(1)
        z1, z2 = z.chunk(2, dim=-1)
        weight = (self.spatial_weight * self.causal_mask)[:length, :length]
        gate = torch.einsum("ts,bsd->btd", weight, self.norm(z2)) + self.spatial_bias[:length, None]
        return z1 * gate


class gMLPBlock(nn.Module):
    def __init__(self, hidden_size: int, inner_size: int, max_len: int, dropout: float, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.proj_in = nn.Linear(hidden_size, inner_size)
        self.sgu = CausalSpatialGatingUnit(inner_size, max_len, eps)
        self.proj_out = nn.Linear(inner_size // 2, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = nn.functional.gelu(self.proj_in(self.norm(x)))
        return x + self.dropout(self.proj_out(self.sgu(z)))


class gMLP(CausalSequentialRecommender):
    """gMLP with a causal spatial gating unit; see the module docstring.

    Config keys (``props/model/gMLP.yaml``): ``n_layers``, ``hidden_size``, ``inner_size`` (the
    width of :math:`U`, split in two halves), ``hidden_dropout_prob``, ``layer_norm_eps``,
    ``initializer_range``, ``loss_type`` (CE/BPR).
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        dropout = config["hidden_dropout_prob"]
        eps = config["layer_norm_eps"]
        inner = config["inner_size"]
        if inner % 2:
            raise SettingError(f"gMLP: inner_size must be even (it is split in two halves), got {inner}")
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        self.layer_norm = nn.LayerNorm(self.hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            gMLPBlock(self.hidden_size, inner, self.max_seq_length, dropout, eps)
            for _ in range(config["n_layers"]))
        self.final_norm = nn.LayerNorm(self.hidden_size, eps=eps)
        self.apply(self._init_weights)

    def encode(self, item_seq):
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        x = self.item_embedding(item_seq) + self.position_embedding(positions).unsqueeze(0)
        x = self.dropout(self.layer_norm(x))
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)
