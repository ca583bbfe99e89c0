r"""LRURec (Yue et al., "Linear Recurrent Units for Sequential Recommendation", WSDM 2024), as a
RecBole sequential model.

Embedding layer: item embeddings, dropout, LayerNorm (no position embeddings: the recurrence orders
the sequence). Each of the ``n_layers`` blocks is a linear recurrent unit followed by a position-wise
feed-forward layer (paper §3). The LRU (§3.1-3.2, after Orvieto et al. 2023) keeps a complex state
of size ``2H`` with a diagonal recurrence

.. math::  h_t = \lambda \odot h_{t-1} + \gamma \odot (B x_t), \qquad y_t = C [\Re h_t; \Im h_t],

:math:`\lambda = \exp(-\exp(\nu) + i \exp(\theta))`, :math:`\gamma = \sqrt{1 - |\lambda|^2}`, with
*ring initialisation*: :math:`|\lambda|^2` uniform in :math:`[r_{min}^2, r_{max}^2]` (default 0.8 and
0.99) and the phase uniform in :math:`[0, 2\pi)`. Training runs the recurrence in parallel
(:func:`lru_parallel_scan`, ``log2 L`` steps of a doubling scan) rather than step by step
(:func:`lru_recurrence`, kept as the reference the tests compare against). The recurrence only looks
back, so the model is causal.
"""

from __future__ import annotations

import math

import torch
from recbole.model.layers import FeedForward
from torch import nn

from recbole_faerec.model.sequential_recommender._causal import CausalSequentialRecommender

__all__ = ["LRURec"]


def lru_parallel_scan(lam: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`h_t = \lambda h_{t-1} + b_t` (:math:`h_{-1} = 0`) for all ``t`` at once.

    A doubling (Hillis-Steele) scan: after the step with offset ``d``, ``h_t`` holds
    :math:`\sum_{s=t-2d+1}^{t} \lambda^{t-s} b_s`; ``ceil(log2 L)`` steps cover the whole sequence.
    ``lam``: ``[N]`` complex; ``b``: ``[B, L, N]`` complex.
    """
    h = b
    power = lam
    offset = 1
    length = b.size(1)
    while offset < length:
        h = torch.cat([h[:, :offset], h[:, offset:] + power * h[:, :-offset]], dim=1)
        power = power * power
        offset *= 2
    return h


def lru_recurrence(lam: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same recurrence, one step at a time (reference for :func:`lru_parallel_scan`)."""
    h = torch.zeros_like(b[:, 0])
    out = []
    for t in range(b.size(1)):
        h = lam * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


class LRULayer(nn.Module):
    """One linear recurrent unit with its residual connection and LayerNorm."""

    def __init__(self, hidden_size: int, dropout: float, r_min: float = 0.8, r_max: float = 0.99,
                 eps: float = 1e-12):
        super().__init__()
        state = 2 * hidden_size
        self.state_size = state
        # ring initialisation: |lambda|^2 uniform on [r_min^2, r_max^2], phase uniform on [0, 2 pi)
        u1, u2 = torch.rand(state), torch.rand(state)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
        theta_log = torch.log(u2 * 2 * math.pi)
        magnitude = torch.exp(-torch.exp(nu_log))
        gamma_log = torch.log(torch.sqrt(1 - magnitude ** 2))
        self.nu_log = nn.Parameter(nu_log)
        self.theta_log = nn.Parameter(theta_log)
        self.gamma_log = nn.Parameter(gamma_log)
        self.in_proj = nn.Linear(hidden_size, 2 * state)   # B: real and imaginary parts
        self.out_proj = nn.Linear(2 * state, hidden_size)  # C over [Re h; Im h]
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=eps)

    def lam(self) -> torch.Tensor:
        return torch.polar(torch.exp(-torch.exp(self.nu_log)), torch.exp(self.theta_log))

    def forward(self, x: torch.Tensor, parallel: bool = True) -> torch.Tensor:
        bx = self.in_proj(x)
        b = torch.complex(bx[..., : self.state_size], bx[..., self.state_size:]) * torch.exp(self.gamma_log)
        h = (lru_parallel_scan if parallel else lru_recurrence)(self.lam(), b)
        y = self.out_proj(torch.cat([h.real, h.imag], dim=-1))
        return self.layer_norm(x + self.dropout(y))


class LRURec(CausalSequentialRecommender):
    """LRURec; see the module docstring.

    Config keys (``props/model/LRURec.yaml``): ``n_layers``, ``hidden_size``, ``inner_size``,
    ``dropout_prob``, ``r_min``, ``r_max``, ``layer_norm_eps``, ``initializer_range``,
    ``loss_type`` (CE/BPR).
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        dropout = config["dropout_prob"]
        eps = config["layer_norm_eps"]
        inner = config["inner_size"]
        self.embedding_dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(self.hidden_size, eps=eps)
        self.lru_layers = nn.ModuleList(
            LRULayer(self.hidden_size, dropout, config["r_min"],
                     config["r_max"], eps)
            for _ in range(config["n_layers"]))
        self.feed_forwards = nn.ModuleList(
            FeedForward(self.hidden_size, inner, dropout, "gelu", eps) for _ in range(config["n_layers"]))
        self.apply(self._init_weights)
        self.parallel = True

    def encode(self, item_seq):
        x = self.layer_norm(self.embedding_dropout(self.item_embedding(item_seq)))
        for lru, feed_forward in zip(self.lru_layers, self.feed_forwards):
            x = feed_forward(lru(x, parallel=self.parallel))
        return x
