"""FAERec's losses (paper §4.2-4.3): item-level contrastive alignment, feature-level Barlow Twins
alignment per popularity group, and the BCE recommendation loss with one sampled negative."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_faerec.model.kernels import diagonal_cross_entropy


def item_alignment_loss(id_emb: torch.Tensor, llm_emb: torch.Tensor, tau: float,
                        item_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Eq. (5): InfoNCE from each item's ID embedding to its (projected) LLM embedding.

    :math:`L_{item} = -\frac{1}{N}\sum_i \log \frac{\exp(\cos(e_i, p_i)/\tau)}{\sum_j \exp(\cos(e_i, p_j)/\tau)}`.
    When ``item_ids`` is given and an item occurs more than once, its other copies are left out of
    the denominator (they are not negatives of themselves), as in the authors' code.
    """
    # 1/tau scales the N x d rows rather than the N x N logits (the same values)
    u = F.normalize(id_emb, dim=-1) / tau
    v = F.normalize(llm_emb, dim=-1)
    exclude = None
    if item_ids is not None:
        exclude = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
        exclude.fill_diagonal_(False)
    return diagonal_cross_entropy(u, v, exclude)  # = F.cross_entropy(u @ v.t(), arange(N))


def barlow_twins_loss(z_id: torch.Tensor, z_llm: torch.Tensor, lambd: float,
                      eps: float = 1e-5) -> torch.Tensor:
    r"""Eq. (7)-(9) for one group of k > 1 items: standardise each view along the batch (unbiased
    std), :math:`C = Z^{u\top} Z^{v} / k`, :math:`L_{BT} = \sum_d (1 - C_{dd})^2 + \lambda \sum_{d \ne d'} C_{dd'}^2`.

    A sum over dimensions (not a mean), as in the paper and the authors' code.
    """
    k = z_id.shape[0]
    zu = (z_id - z_id.mean(0)) / (z_id.std(0) + eps)
    zv = (z_llm - z_llm.mean(0)) / (z_llm.std(0) + eps)
    c = zu.t() @ zv / k
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def feature_alignment_loss(id_emb: torch.Tensor, llm_emb: torch.Tensor, groups, lambd: float):
    r"""Eq. (10): :math:`L_{feat} = L_{BT}(\mathcal{H}) + L_{BT}(\mathcal{T})` over the index groups
    (e.g. above / below the batch's median popularity); a group with k <= 1 items is skipped."""
    total = id_emb.new_zeros(())
    for index in groups:
        if index.numel() > 1:
            total = total + barlow_twins_loss(id_emb[index], llm_emb[index], lambd)
    return total


class BCEOneNegativeLoss(nn.Module):
    r"""Eq. (13): :math:`-\log\sigma(s^+) - \log(1 - \sigma(s^-))`, averaged, with one sampled negative.

    Takes ``(pos_score, neg_score)`` like RecBole's ``BPRLoss``, so a backbone's BPR branch computes
    it unchanged; written with ``softplus`` for stability.
    """

    def forward(self, pos_score: torch.Tensor, neg_score: torch.Tensor) -> torch.Tensor:
        return (F.softplus(-pos_score) + F.softplus(neg_score)).mean()


def bce_capable(init):
    """Wrap a sequential model's ``__init__`` so it takes ``loss_type: BCE`` (eq. 13).

    The model is built through its BPR branch (``loss_type`` reads ``BPR`` during ``__init__``;
    RecBole's BPR branch scores one sampled negative per target, ``neg_item_id``), then its
    ``loss_fct`` becomes :class:`BCEOneNegativeLoss`. The config says ``BCE`` again afterwards.
    A model with no BPR branch still raises its own ``NotImplementedError``.
    """
    import functools

    @functools.wraps(init)
    def wrapper(self, config, dataset, *args, **kwargs):
        if config["loss_type"] != "BCE":
            return init(self, config, dataset, *args, **kwargs)
        config["loss_type"] = "BPR"
        try:
            init(self, config, dataset, *args, **kwargs)
        finally:
            config["loss_type"] = "BCE"
        self.loss_fct = BCEOneNegativeLoss()

    wrapper._recbole_faerec_compat = True
    return wrapper
