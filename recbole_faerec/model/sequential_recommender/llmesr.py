r"""LLM-ESR (Liu et al., NeurIPS 2024) on a RecBole sequential backbone: ``LLMESR_<Backbone>``.

A dual-view method (FAERec Table 2's strongest tail-item baseline; ``shared/docs/baselines-notes.md``
§4, read from the authors' ``models/DualLLMSRS.py`` and ``models/LLMESR.py``). Every item has two
embeddings: an LLM view from the frozen LLM table ``L`` through a linear adapter, and an ID view
``E`` initialised from the PCA of ``L`` and trained:

.. math::

    a_i = W_2 W_1 L_i \quad (\text{no activation}), \qquad E \leftarrow \mathrm{PCA}_d(L)

    x^{id}_t = \mathrm{Drop}(\sqrt{d}\, E_{s_t} + P_t), \qquad x^{llm}_t = \mathrm{Drop}(\sqrt{d}\, a_{s_t} + P_t)

with one position table ``P`` and one dropout for both views (``llmesr_view_inputs: positions``,
the original's SASRec and BERT4Rec). Its GRU4Rec takes the views as they are,
:math:`x^{id}_t = E_{s_t}`, :math:`x^{llm}_t = a_{s_t}` (``raw``, set by
``props/model/LLMESR_GRU4Rec.yaml``). Each view is re-expressed by attending over the other
(multi-head cross-attention, queries from one view, keys and values from the other; the inputs are
replaced, not added to):

.. math:: \tilde x^{id} = \mathrm{MCA}(x^{llm}, x^{id}), \qquad \tilde x^{llm} = \mathrm{MCA}(x^{id}, x^{llm})

and **one** sequence encoder, the backbone's, runs on each
(:func:`recbole_faerec.model.encoder.encode`: the backbone's own ``forward`` with the given
embeddings in place of its item lookup, so it also adds its own position embedding and
normalisation). User and item are the two views side by side, scored by their inner product:

.. math:: u_t = [\mathrm{enc}(\tilde x^{id})_t ; \mathrm{enc}(\tilde x^{llm})_t], \qquad r_i = [E_i ; a_i], \qquad \hat y_{t,i} = u_t^\top r_i

trained with the configured ``loss_type`` (CE over all items, or the original's BCE with one
negative per position) on the last position, or on every position with ``train_positions: all``.

**Options of the original kept.** Its cross-attention has no dropout on its weights
(``llmesr_attention_dropout: 0``) and is an option of its code (``--use_cross_att``, on in its
experiments): ``llmesr_cross_attention: False`` feeds :math:`x^{id}, x^{llm}` to the encoder
directly (on amazon-scientific that is the better model here: docs/results.md, "Dual-view
methods"). The layers LLM-ESR adds start as the original's do, Xavier-normal (``llmesr_init:
xavier``; ``backbone`` uses the backbone's own initialisation instead).
``llmesr_cross_residual: True`` (not in the original) keeps each view's inputs and adds the
cross-attention to them, :math:`\tilde x^{id} = x^{id} + \mathrm{MCA}(x^{llm}, x^{id})` (and the same for
the LLM view), as LLM-CFSR's later fusion layers do. A setting of the cross-attention given while it
is off has no effect and is warned about.

**Retrieval-augmented self-distillation.** Each user has ``K`` most similar other users (cosine of
user embeddings); the mean of their last-position representations, computed by the same model in
training mode without gradient, is the teacher of the user's own:

.. math:: L = L_{rec} + \alpha \, \lVert u_{last} - \tfrac{1}{K} \textstyle\sum_{v \in N_K(u)} \mathrm{sg}(u^{v}_{last}) \rVert^2 / (2d)

(MSE over the ``2d`` dimensions). ``llmesr_teacher: step`` (default, the original) computes the
teachers at every step; ``epoch`` computes every user's representation once per epoch and reuses
it for the epoch's steps (a speed option: the teacher is then up to one epoch old; see
``docs/baselines.md`` for its cost). A neighbour's sequence is its training sequence without its
last item (its longest training row). User embeddings (``llmesr_user_embedding``): ``text`` (default, the
original's) embeds a prompt listing the names of the user's training items ("The user has visited
following <category>s: <name>; <name>; ...", the most recent kept within 2,000 characters) with the
dataset's item encoder, cached as the second kind of the embedding cache
(:func:`recbole_faerec.embeddings.loader.ensure_user_embeddings`, ``<dataset>.useremb``);
``item_mean`` is the mean of the LLM embeddings of those items (the notes' cheaper stand-in, no
encoder run). Either way only the training part is used, and the training sequences RecBole keeps
(at most ``MAX_ITEM_LIST_LENGTH`` + 1 items).

**Causality.** The original's encoder and cross-attention see the whole sequence (its SASRec's
causal mask is commented out), so under every-position training position ``t`` sees its own target.
``llmesr_causal: True`` (default) masks the cross-attention causally and needs a causal backbone;
``False`` reproduces the original (bidirectional cross-attention, SASRec without its causal mask)
and warns when every position is trained.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import nn
from torch.nn import functional as F

from recbole_faerec.model.encoder import cannot_encode, encode, encode_last, encoder_name
from recbole_faerec.model.llm_item import LLMItemMixin, MethodBackboneError, method_family
from recbole_faerec.model.positions import longest_rows, position_targets, sample_negatives
from recbole_faerec.settings import SettingError, choice

USER_EMBEDDINGS = ("text", "item_mean")
TEACHERS = ("step", "epoch")
INITS = ("xavier", "backbone")
VIEW_INPUTS = ("positions", "raw")


class CrossAttention(nn.Module):
    """Multi-head attention of ``x`` (queries) over ``y`` (keys and values), LLM-ESR's ``MCA``:
    bias-free ``d x d`` query, key and value maps, an output ``Linear`` with bias, scores divided by
    the square root of the head size. ``key_padding``: ``[B, L]`` True where the key is padding;
    ``causal``: query ``t`` attends to keys ``<= t`` only."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise SettingError(f"llmesr_heads: hidden size {d} is not a multiple of {heads} heads")
        self.heads, self.head_size = heads, d // heads
        self.query = nn.Linear(d, d, bias=False)
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d, bias=False)
        self.out = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_size).transpose(1, 2)  # [B, h, L, d/h]

    def forward(self, x, y, key_padding: torch.Tensor, causal: bool) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(y)), self._split(self.value(y))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)  # [B, h, L, L]
        blocked = key_padding[:, None, None, :]
        if causal:
            n = x.shape[1]
            later = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
            blocked = blocked | later
        scores = scores.masked_fill(blocked, float("-inf"))
        # a query whose every key is blocked (padding rows) attends to nothing: zeros, not NaN
        weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
        context = (self.dropout(weights) @ v).transpose(1, 2).reshape(x.shape)
        return self.out(context)


class LLMESRMixin(LLMItemMixin):
    """LLM-ESR's two views, cross-attention, shared encoder and self-distillation (see the module).

    Config keys (``props/model/LLMESR.yaml``): ``llmesr_causal``, ``llmesr_cross_attention``,
    ``llmesr_heads``, ``llmesr_view_inputs``, ``llmesr_input_dropout``, ``llmesr_attention_dropout``,
    ``llmesr_distill_weight`` (alpha), ``llmesr_neighbours`` (K), ``llmesr_teacher``,
    ``llmesr_user_embedding``.
    """

    method_name = "LLMESR"
    plugin_config_models = ("LLMItem", "LLMESR")
    loss_names = ("rec", "distill")

    @classmethod
    def cannot_wrap(cls, backbone: type) -> Optional[str]:
        if encoder_name(backbone) == "BERT4Rec":
            return ("BERT4Rec trains by masked-item prediction over a table with a mask token; "
                    "LLM-ESR trains next-item prediction over its two item views")
        return cannot_encode(backbone)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.causal = bool(config["llmesr_causal"])
        reason = cannot_encode(type(self), self.causal)
        if reason:
            other = ("llmesr_causal: False for the original's bidirectional model" if self.causal
                     else "llmesr_causal: True")
            raise MethodBackboneError(f"{type(self).__name__} with llmesr_causal {self.causal}: "
                                      f"{reason} (set {other})")
        if not self.causal and self.train_positions == "all":
            self.logger.warning(f"{type(self).__name__}: llmesr_causal False with train_positions "
                                f"all: every position sees its own target, as in the original code")
        d = self.item_embedding.embedding_dim
        llm = torch.as_tensor(self.llm_table_np, dtype=torch.float32)
        self.register_buffer("llm_table", llm, persistent=False)  # frozen (the original's --freeze)
        half = llm.shape[1] // 2
        self.adapter = nn.Sequential(nn.Linear(llm.shape[1], half), nn.Linear(half, d))
        for layer in self.adapter:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.view_inputs = choice(config, "llmesr_view_inputs", VIEW_INPUTS)
        self.view_position = self.input_dropout = None  # raw inputs: no such layers
        if self.view_inputs == "positions":
            self.view_position = nn.Embedding(self.max_seq_length + 1, d, padding_idx=0)
            self.input_dropout = nn.Dropout(config["llmesr_input_dropout"])
        self.id_from_llm = self.llm_from_id = None  # llmesr_cross_attention False: no such layers
        self.cross_residual = bool(config["llmesr_cross_residual"])
        if config["llmesr_cross_attention"]:
            heads, dropout = config["llmesr_heads"], config["llmesr_attention_dropout"]
            self.id_from_llm = CrossAttention(d, heads, dropout)
            self.llm_from_id = CrossAttention(d, heads, dropout)
        self.init_new_layers(config, (self.view_position, self.id_from_llm, self.llm_from_id))
        if self.view_position is not None:
            with torch.no_grad():
                self.view_position.weight[0] = 0.0  # padding
        self.pca_init_id_table(config)
        self.distill_weight = float(config["llmesr_distill_weight"])
        self.neighbour_count = int(config["llmesr_neighbours"])
        self.teacher_mode = choice(config, "llmesr_teacher", TEACHERS)
        self._teachers: Optional[torch.Tensor] = None  # llmesr_teacher epoch: [U, 2d] or None
        self._teachers_epoch = -1
        choice(config, "llmesr_user_embedding", USER_EMBEDDINGS)
        seq, length, last = self._training_sequences(dataset)
        self.register_buffer("user_seq", seq, persistent=False)
        self.register_buffer("user_seq_len", length, persistent=False)
        self.register_buffer("user_last", last, persistent=False)
        neighbours = None
        if self.distill_weight > 0:
            users = self._user_embeddings(dataset, config, seq, length, last)
            neighbours = self._neighbours(users, length)
        self.register_buffer("neighbours", neighbours, persistent=False)
        self._step: Dict[str, torch.Tensor] = {}
        for key, reason in self.settings_without_effect(config).items():
            self.logger.warning(f"{type(self).__name__}: {key} {config[key]} has no effect: {reason}")

    @classmethod
    def settings_without_effect(cls, config) -> Dict[str, str]:
        """The settings the user gave (config files, config_dict, command line) that the other
        settings leave without effect, each with the reason."""
        given = getattr(config, "external_config_dict", {})
        unused = {}
        if not config["llmesr_cross_attention"]:
            for key in ("llmesr_heads", "llmesr_attention_dropout", "llmesr_cross_residual"):
                unused[key] = "llmesr_cross_attention is False (no cross-attention layers)"
        if config["llmesr_view_inputs"] == "raw":
            unused["llmesr_input_dropout"] = "llmesr_view_inputs is raw (the views enter as they are)"
        if not float(config["llmesr_distill_weight"]) > 0:
            for key in ("llmesr_teacher", "llmesr_neighbours", "llmesr_user_embedding"):
                unused[key] = "llmesr_distill_weight is 0 (no self-distillation)"
        return {key: reason for key, reason in unused.items() if key in given}

    def init_new_layers(self, config, modules) -> None:
        """Initialise the layers the method adds to the backbone (``llmesr_init``): ``xavier``, the
        original's (Xavier-normal weights, biases 0), or ``backbone``, the backbone's own
        ``_init_weights`` (RecBole's SASRec: normal, std 0.02, under which the cross-attention's
        scores start near 0 and each position starts as the mean of its prefix)."""
        mode = choice(config, "llmesr_init", INITS)
        for module in filter(None, modules):
            if mode == "backbone" and hasattr(self, "_init_weights"):
                module.apply(self._init_weights)
                continue
            for sub in module.modules():
                if isinstance(sub, (nn.Linear, nn.Embedding)):
                    nn.init.xavier_normal_(sub.weight)
                if isinstance(sub, nn.Linear) and sub.bias is not None:
                    nn.init.zeros_(sub.bias)

    # ---- the data ----------------------------------------------------------------------------
    def _training_sequences(self, dataset):
        """Each user's longest training row: its input sequence (its training items but the last),
        its length, and its target (the last training item; 0 for users without a row)."""
        feat = dataset.inter_feat
        users = feat[self.USER_ID].numpy()
        first = longest_rows(users, feat[self.ITEM_SEQ_LEN].numpy())
        n_users = dataset.num(self.USER_ID)
        seq = torch.zeros(n_users, self.max_seq_length, dtype=torch.long)
        length = torch.zeros(n_users, dtype=torch.long)
        last = torch.zeros(n_users, dtype=torch.long)
        seq[users[first]] = feat[self.ITEM_SEQ][first]
        length[users[first]] = feat[self.ITEM_SEQ_LEN][first]
        last[users[first]] = feat[self.POS_ITEM_ID][first]
        return seq, length, last

    def _user_embeddings(self, dataset, config, seq, length, last) -> torch.Tensor:
        """``[U, D]``: the embedded user prompt over each user's training items (``text``, cached
        beside the item embeddings) or the mean LLM embedding of those items (``item_mean``)."""
        if config["llmesr_user_embedding"] == "text":
            from recbole_faerec.embeddings.loader import ensure_user_embeddings

            items = {u: seq[u, : length[u]].tolist() + [int(last[u])]
                     for u in range(len(seq)) if length[u] > 0}
            return torch.as_tensor(ensure_user_embeddings(dataset, config, items, self.logger))
        llm = torch.as_tensor(self.llm_table_np, dtype=torch.float32)
        items = torch.cat([seq, last.unsqueeze(1)], dim=1)
        mask = (items > 0).float()
        return (llm[items] * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)

    @torch.no_grad()
    def _neighbours(self, users: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """The ``K`` most similar other users of each user (cosine of ``users``), ``[U, K]``;
        users without training data get none (-1)."""
        users = F.normalize(users.float(), dim=-1)
        has = length > 0
        k = min(self.neighbour_count, int(has.sum()) - 1)
        neighbours = torch.full((len(users), max(k, 0)), -1, dtype=torch.long)
        if k < 1:
            return neighbours
        for start in range(0, len(users), 4096):  # U x U in blocks: 22k users would be 2 GB at once
            block = users[start:start + 4096] @ users.T
            block[:, ~has] = float("-inf")
            rows = torch.arange(start, min(start + 4096, len(users)))
            block[rows - start, rows] = float("-inf")  # not oneself
            neighbours[start:start + 4096] = block.topk(k, dim=1).indices
        neighbours[~has] = -1
        return neighbours

    # ---- the two views -----------------------------------------------------------------------
    def llm_view(self, items: torch.Tensor) -> torch.Tensor:
        """The adapted LLM embedding ``a_i`` of ``items``."""
        return self.adapter(self.llm_table[items])

    def item_representations(self, items: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``r_i = [E_i ; a_i]`` of ``items`` (all items when None), ``[.., 2d]``."""
        if items is None:
            return torch.cat([self.item_embedding.weight, self.adapter(self.llm_table)], dim=-1)
        return torch.cat([self.item_embedding(items), self.llm_view(items)], dim=-1)

    def _inputs(self, item_seq):
        if self.view_inputs == "raw":  # the original's GRU4Rec: the two views as they are
            x_id, x_llm = self.item_embedding.weight[item_seq], self.llm_view(item_seq)
            return self._cross(item_seq, x_id, x_llm)
        d = self.item_embedding.embedding_dim
        positions = torch.arange(1, item_seq.shape[1] + 1, device=item_seq.device).unsqueeze(0)
        positions = positions * (item_seq > 0)
        pos = self.view_position(positions)
        x_id = self.input_dropout(math.sqrt(d) * self.item_embedding.weight[item_seq] + pos)
        x_llm = self.input_dropout(math.sqrt(d) * self.llm_view(item_seq) + pos)
        return self._cross(item_seq, x_id, x_llm)

    def _cross(self, item_seq, x_id, x_llm):
        """The input cross-attention (where it is on): each view re-expressed over the other."""
        if self.id_from_llm is None:
            return x_id, x_llm
        padding = item_seq == 0
        new_id = self.id_from_llm(x_llm, x_id, padding, self.causal)
        new_llm = self.llm_from_id(x_id, x_llm, padding, self.causal)
        if self.cross_residual:
            return x_id + new_id, x_llm + new_llm
        return new_id, new_llm

    def view_states(self, item_seq, item_seq_len, every_position: bool):
        """The shared encoder's states of the two views, ``(id, llm)``: ``[B, L, d]`` each (every
        position) or ``[B, d]`` (each sequence's last item)."""
        run = encode if every_position else encode_last
        causal = None if self.causal else False
        ids, llms = self._inputs(item_seq)
        return run(self, item_seq, item_seq_len, ids, causal), run(self, item_seq, item_seq_len, llms, causal)

    def fuse_user(self, id_states: torch.Tensor, llm_states: torch.Tensor) -> torch.Tensor:
        """``u = [h^id ; h^llm]``: the two views side by side."""
        return torch.cat([id_states, llm_states], dim=-1)

    def dual_states(self, item_seq, item_seq_len, every_position: bool) -> torch.Tensor:
        """``u``: ``[B, L, 2d]`` (every position) or ``[B, 2d]`` (each sequence's last item)."""
        return self.fuse_user(*self.view_states(item_seq, item_seq_len, every_position))

    # ---- training ----------------------------------------------------------------------------
    def recommendation_loss(self, interaction) -> torch.Tensor:
        """The configured loss of ``u_t^T r_i``, on the last position or every position."""
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        if self.train_positions == "all":
            states = self.dual_states(item_seq, item_seq_len, True)
            mask, every = position_targets(item_seq, item_seq_len, interaction[self.POS_ITEM_ID])
            last = states[torch.arange(len(item_seq)), item_seq_len - 1]
            states, targets = states[mask], every[mask]
            negatives = (sample_negatives(item_seq, every, mask, self.n_items)
                         if self.llm_loss_type != "CE" else None)
            self.position_negatives = negatives
        else:
            states = last = self.dual_states(item_seq, item_seq_len, False)
            targets = interaction[self.POS_ITEM_ID]
            negatives = interaction[self.NEG_ITEM_ID] if self.llm_loss_type != "CE" else None
        self._step["student"] = last
        if self.llm_loss_type == "CE":
            return F.cross_entropy(states @ self.item_representations().T, targets)
        pos = (states * self.item_representations(targets)).sum(-1)
        neg = (states * self.item_representations(negatives)).sum(-1)
        if self.llm_loss_type == "BPR":
            return -F.logsigmoid(pos - neg).mean()
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg)).mean()  # BCE, one negative (the original)

    def auxiliary_losses(self, interaction) -> Dict[str, torch.Tensor]:
        """``alpha * MSE(student, teacher)``: the teacher is the mean last-position representation
        of the user's ``K`` neighbours (same model, training mode, no gradient)."""
        student = self._step.pop("student", None)
        if self.distill_weight <= 0 or student is None or self.neighbours.shape[1] == 0:
            return {}
        neighbours = self.neighbours[interaction[self.USER_ID]]  # [B, K]
        valid = neighbours >= 0
        if not valid.any():
            return {}
        with torch.no_grad():
            if self.teacher_mode == "epoch":
                teachers, where = self.epoch_teachers(), neighbours[valid]
            else:  # each distinct neighbour once (the original runs all B * K rows, each its own
                # dropout draw)
                distinct, where = torch.unique(neighbours[valid], return_inverse=True)
                teachers = self.dual_states(self.user_seq[distinct], self.user_seq_len[distinct],
                                            False)
            summed = torch.zeros(*neighbours.shape, teachers.shape[-1], device=teachers.device)
            summed[valid] = teachers[where]
            teacher = summed.sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        rows = valid.any(1)
        return {"distill": self.distill_weight * F.mse_loss(student[rows], teacher[rows])}

    @torch.no_grad()
    def epoch_teachers(self, chunk: int = 1024) -> torch.Tensor:
        """``llmesr_teacher: epoch``: every user's last-position representation, ``[U, 2d]``,
        computed once per training epoch (at its first step, in training mode, without gradient)
        and reused by every step of that epoch; rows of users without training data stay 0."""
        if self._teachers is None or self._teachers_epoch != self.current_epoch:
            users = torch.nonzero(self.user_seq_len > 0).squeeze(1)
            table = None
            for start in range(0, len(users), chunk):
                part = users[start:start + chunk]
                states = self.dual_states(self.user_seq[part], self.user_seq_len[part], False)
                if table is None:
                    table = states.new_zeros(len(self.user_seq), states.shape[-1])
                table[part] = states
            self._teachers, self._teachers_epoch = table, self.current_epoch
        return self._teachers

    def epoch_warning(self) -> Optional[str]:
        if self.teacher_mode == "epoch" and self.distill_weight > 0:
            return ("llmesr_teacher epoch: the cached teachers are only recomputed when the epoch "
                    "changes, so they stay those of the first step")
        return None

    # ---- scoring -----------------------------------------------------------------------------
    def forward(self, item_seq, item_seq_len):
        """``u`` at each sequence's last item, ``[B, 2d]``."""
        return self.dual_states(item_seq, item_seq_len, False)

    def predict(self, interaction):
        user = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (user * self.item_representations(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        user = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return user @ self.item_representations().T

    def item_views(self, items: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The ID view ``E_i`` and the adapted LLM view ``a_i``."""
        return {"ID": self.item_embedding.weight[items], "LLM": self.llm_view(items)}


FAMILY = method_family(LLMESRMixin, __name__)
globals().update(FAMILY)

__all__ = list(FAMILY)
