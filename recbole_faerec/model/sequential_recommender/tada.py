r"""TADA (Dang et al., WWW 2026, seed 001) on a RecBole sequential backbone: ``TADA_<Backbone>``.

Tail-aware data augmentation, an ID-only method (``shared/docs/baselines-notes.md`` §1, read from the
authors' ``src/``). Each training row gets two aligned views from T-Substitute or T-Insert
(:mod:`recbole_faerec.model.tada_ops`, over the candidate sets of
:mod:`recbole_faerec.data.cooccurrence`), and two mixing losses join the backbone's own:

.. math::

    L = L_{rec}(o) + L_{rec}(\alpha o_1 + (1 - \alpha) o_2) + \sum_{g \in \{head, tail\}} L_{mix}^{g}

with :math:`o, o_1, o_2` the backbone's outputs for the row and its two views, and
:math:`\alpha \sim \mathrm{Beta}(\beta, \beta)` per row. The cross-mix :math:`L_{mix}^{g}` runs within
each group of users (tail-preference users: at least half of their training items are tail items;
the others): the group's original outputs and view-2 outputs are stacked with their targets,
permuted by a random :math:`\pi`, and outputs and targets are mixed with the same :math:`\alpha`:
:math:`\tilde o = \alpha o + (1 - \alpha) o_\pi` scored against
:math:`\alpha\,\mathrm{onehot}(y) + (1 - \alpha)\,\mathrm{onehot}(y_\pi)` under CE (the mixed target
embeddings :math:`\alpha E_y + (1-\alpha) E_{y_\pi}` and negatives under BPR/BCE, as the authors).

Two ways to train, after RecBole's ``train_positions``:

* ``last`` (RecBole's prefix rows), the notes' plugin adaptation: the operators act on
  ``item_id_list``, ``item_id`` stays the row's target, the last-position outputs are mixed.
* ``all`` (every position of each user's training sequence, as the authors train): the operators
  carry each position's target (and negative) with it, T-Insert duplicating them; the outputs of
  every position are mixed and scored, and the cross-mix pairs positions by their distance from the
  end of the sequence (the authors' left padding). The cross-mix scores the positions where both
  rows of a pair have a target; the authors' code also mixes a row with its partner's padding.

Head/tail items and tail-preference users come from the training part, as in the authors' code (the
evaluator's head/tail keeps its own ``popularity_source``).

**Two stages** as the authors train: ``tada_init_checkpoint`` names a checkpoint of the plain backbone
(RecBole's ``saved/<Backbone>-....pth``; for ``FAERec_TADA_<Backbone>``, of ``FAERec_<Backbone>``),
whose weights start this model; empty: one stage from scratch.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from recbole_faerec.data.cooccurrence import cooccurrence_model, training_sequences
from recbole_faerec.model.llm_item import MethodSettingError, method_family
from recbole_faerec.model.positions import every_position_output, position_targets
from recbole_faerec.model.tada_ops import TadaOperators, right_align

#: backbones whose scores are dot products of their output with ``item_embedding`` (checked)
TADA_BACKBONES = ("SASRec", "GRU4Rec", "NARM", "LightSANs", "FMLPRec", "LRURec", "gMLP")


class TADAMixin:
    """TADA's views and mixing losses over a backbone (see the module). Config keys
    (``props/model/TADA.yaml``): ``tada_rate_a``, ``tada_rate_b``, ``tada_th``, ``tada_top_k``,
    ``tada_beta``, ``tada_init_checkpoint``."""

    method_name = "TADA"
    plugin_config_models = ("TADA",)
    loss_names = ("rec", "self_mix", "cross_mix")
    backbone_class: type = object

    @classmethod
    def cannot_wrap(cls, backbone: type) -> Optional[str]:
        if backbone.__name__ not in TADA_BACKBONES:
            return (f"{backbone.__name__}'s scores are not checked to be dot products with its "
                    f"item_embedding; TADA's mixing needs that ({', '.join(TADA_BACKBONES)})")
        return None

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.logger = logging.getLogger()
        self.tada_loss_type = config["loss_type"]
        if self.train_positions == "all":
            self.keep_states = True  # the cross-mix reuses the recommendation loss's outputs
        self.beta = float(config["tada_beta"])
        sequences = training_sequences(dataset, self.ITEM_SEQ, self.ITEM_SEQ_LEN, self.POS_ITEM_ID,
                                       self.USER_ID)
        sets = cooccurrence_model(self._cache_path(config), sequences, self.n_items,
                                  float(config["head_ratio"]), float(config["tada_th"]),
                                  int(config["tada_top_k"]), self.logger,
                                  max_items=config["tada_slis_max_items"])
        self.operators = TadaOperators(sets, self.n_items, float(config["tada_rate_a"]),
                                       float(config["tada_rate_b"]), self.max_seq_length)
        # tail-preference users: at least half of their training items are tail items
        users = np.unique(dataset.inter_feat[self.USER_ID].numpy())  # the order of ``sequences``
        tail_pref = torch.zeros(dataset.num(self.USER_ID), dtype=torch.bool)
        for user, seq in zip(users, sequences):
            tail_pref[int(user)] = bool(np.mean(sets.label[seq] == 0) >= 0.5)
        self.register_buffer("tail_preference", tail_pref, persistent=False)
        if config["tada_init_checkpoint"]:
            self._load_backbone(config["tada_init_checkpoint"])

    @staticmethod
    def _cache_path(config) -> str:
        from recbole_faerec.embeddings.loader import embedding_paths

        return os.path.join(embedding_paths(config).directory, f"{config['dataset']}.tada.npz")

    @property
    def first_stage(self) -> str:
        """The model whose trained checkpoint starts the second stage: the plain backbone."""
        return self.backbone_class.__name__

    def _load_backbone(self, path: str) -> None:
        """The first stage: the trained weights of :attr:`first_stage`."""
        if not os.path.isfile(path):
            raise MethodSettingError(f"tada_init_checkpoint {path} does not exist (train the plain "
                                     f"{self.first_stage} first; its best checkpoint is in saved/)")
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        trained = checkpoint.get("config", {})["model"] if checkpoint.get("config") else None
        if trained != self.first_stage:
            raise MethodSettingError(f"tada_init_checkpoint {path} holds a {trained}, not a "
                                     f"{self.first_stage}")
        self.load_state_dict(checkpoint["state_dict"])
        self.logger.info(f"{type(self).__name__}: starts from the trained {trained} in {path}")

    # ---- the losses ------------------------------------------------------------------------------
    def _score_loss(self, output, targets, negatives, soft=None):
        """The backbone's loss of ``output`` against ``targets``: CE over all items (``soft``:
        ``(alpha, other_targets)`` mixes the one-hot targets), or BPR/BCE with the negatives
        (``soft`` mixes the target and negative embeddings)."""
        table = self.item_embedding
        if self.tada_loss_type == "CE":
            logits = output @ table.weight.T
            loss = F.cross_entropy(logits, targets, reduction="none")
            if soft is not None:
                alpha, other = soft
                loss = alpha * loss + (1 - alpha) * F.cross_entropy(logits, other, reduction="none")
            return loss.mean()
        pos, neg = table(targets), table(negatives)
        if soft is not None:
            alpha, (other_pos, other_neg) = soft[0].unsqueeze(1), soft[1]
            pos = alpha * pos + (1 - alpha) * table(other_pos)
            neg = alpha * neg + (1 - alpha) * table(other_neg)
        return self.loss_fct((output * pos).sum(-1), (output * neg).sum(-1))

    def calculate_loss(self, interaction):
        """The backbone's loss (a method's own parts, e.g. FAERec's, kept in order), plus TADA's
        self-mix and cross-mix (see the module)."""
        base = super().calculate_loss(interaction)
        if not self.training:
            return base
        base = base if isinstance(base, tuple) else (base,)
        # the same parts every step (RecBole sums the logged parts position by position)
        base = base + (base[0].new_zeros(()),) * (len(self.loss_names) - 2 - len(base))
        # every draw from torch's generator (which a resumed run restores)
        rng = np.random.default_rng(int(torch.randint(2 ** 31 - 1, (1,))))
        encoded = (self._every_position_views if self.train_positions == "all"
                   else self._last_position_views)(interaction, rng)
        original, o1, o2, targets, negatives = encoded
        tail_pref = self.tail_preference[interaction[self.USER_ID]]
        groups = [g for g in (tail_pref, ~tail_pref) if g.any()]  # an empty group adds nothing

        def beta(n):
            return torch.as_tensor(rng.beta(self.beta, self.beta, n), dtype=o1.dtype, device=o1.device)

        draws = [(beta(2 * int(g.sum())), torch.as_tensor(rng.permutation(2 * int(g.sum())),
                                                          device=o1.device)) for g in groups]
        self_mix, cross = self.mixing_losses(original, o1, o2, targets, negatives,
                                             beta(len(original)), groups, draws)
        return (*base, self_mix, cross)

    def _last_position_views(self, interaction, rng):
        """Prefix rows: the operators act on the input sequence, the row's target stays its target;
        ``(o, o1, o2, (targets, view targets), (negatives, view negatives))``, ``[B, 1, ...]``."""
        seq, length = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        views = self.operators(seq.cpu().numpy(), length.cpu().numpy(),
                               np.zeros(seq.shape, dtype=np.int64), None, rng)
        view_len = torch.as_tensor(views.length, device=seq.device)
        o1, o2 = (self.forward(torch.as_tensor(v, device=seq.device), view_len).unsqueeze(1)
                  for v in (views.view1, views.view2))
        target = interaction[self.POS_ITEM_ID].unsqueeze(1)
        negative = interaction[self.NEG_ITEM_ID].unsqueeze(1) if self.tada_loss_type != "CE" else None
        return self.forward(seq, length).unsqueeze(1), o1, o2, (target, target), (negative, negative)

    def _every_position_views(self, interaction, rng):
        """Every position (``train_positions: all``): each position's target (and negative)
        travels with it through the operators; the row's outputs are the recommendation loss's
        own pass (``keep_states``); everything right-aligned (the authors' left padding)."""
        seq, length = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        device = seq.device
        mask, targets = position_targets(seq, length, interaction[self.POS_ITEM_ID])
        negatives = None
        if self.tada_loss_type != "CE":
            negatives = torch.zeros_like(seq)
            negatives[mask] = self.position_negatives
        views = self.operators(seq.cpu().numpy(), length.cpu().numpy(), targets.cpu().numpy(),
                               None if negatives is None else negatives.cpu().numpy(), rng)
        view_len = torch.as_tensor(views.length, device=device)

        def view(array):
            return right_align(torch.as_tensor(array, device=device), view_len)

        o1, o2 = (right_align(every_position_output(self, torch.as_tensor(v, device=device), view_len),
                              view_len) for v in (views.view1, views.view2))
        original = right_align(self.sequence_states, length)
        return (original, o1, o2, (right_align(targets, length), view(views.targets)),
                (None, None) if negatives is None
                else (right_align(negatives, length), view(views.negatives)))

    def mixing_losses(self, original, o1, o2, targets, negatives, alpha, groups, draws):
        r"""``(self_mix, cross_mix)`` for given draws.

        ``original`` (the rows' outputs), ``o1``, ``o2`` (their views') are ``[B, L, d]`` with their
        positions right-aligned (``L = 1``: the last position of prefix rows; ``[B, d]`` is read as
        that); ``targets`` and ``negatives`` are ``(of the rows, of the views)``, ``[B, L]`` each,
        0 where a position has no target (negatives None under CE). ``alpha`` ``[B]`` mixes each
        row's two views at every position; for each group (a boolean mask of rows), ``(a, perm)``
        mix its stacked original and view-2 outputs ``[o[g]; o2[g]]`` with their permutation,
        targets (and negatives) alike, at the positions where both rows of a pair have a target
        (the authors mix a row with its partner's padding there).
        """
        if original.dim() == 2:  # one output per row
            original, o1, o2 = original.unsqueeze(1), o1.unsqueeze(1), o2.unsqueeze(1)
            targets = tuple(t.unsqueeze(1) for t in targets)
            negatives = tuple(None if n is None else n.unsqueeze(1) for n in negatives)
        (target, view_target), (negative, view_negative) = targets, negatives
        mixed = alpha.view(-1, 1, 1) * o1 + (1 - alpha.view(-1, 1, 1)) * o2
        scored = view_target > 0
        self_mix = self._score_loss(mixed[scored], view_target[scored],
                                    None if view_negative is None else view_negative[scored])
        cross = original.new_zeros(())
        for group, (a, perm) in zip(groups, draws):
            outputs = torch.cat([original[group], o2[group]])
            tgts = torch.cat([target[group], view_target[group]])
            negs = None if negative is None else torch.cat([negative[group], view_negative[group]])
            mixed_out = a.view(-1, 1, 1) * outputs + (1 - a.view(-1, 1, 1)) * outputs[perm]
            scored = (tgts > 0) & (tgts[perm] > 0)
            if not scored.any():
                continue
            a_pos = a.unsqueeze(1).expand_as(tgts)[scored]
            other = tgts[perm][scored]
            soft = (a_pos, other) if negs is None else (a_pos, (other, negs[perm][scored]))
            cross = cross + self._score_loss(mixed_out[scored], tgts[scored],
                                             None if negs is None else negs[scored], soft)
        return self_mix, cross

    def set_epoch(self, epoch: int) -> None:
        """TADA's loss does not depend on the epoch; a method it is combined with may."""
        parent = getattr(super(), "set_epoch", None)
        if parent is not None:
            parent(epoch)


FAMILY = method_family(TADAMixin, __name__)
globals().update(FAMILY)

__all__ = list(FAMILY)
