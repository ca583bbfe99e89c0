"""What the plugin's own backbones (FMLPRec, LRURec, gMLP) share: RecBole's SASRec pattern.

An item table ``item_embedding`` (``nn.Embedding``, padding id 0), an encoder that maps the
``[B, L]`` item sequence to ``[B, L, H]`` outputs where position ``t`` depends only on positions
``<= t`` (:meth:`CausalSequentialRecommender.encode`), the output at each sequence's last item
(``forward``), and RecBole's CE or BPR loss over the item table. Because the table is used exactly as
SASRec uses it, ``method_family`` (:mod:`recbole_faerec.model.llm_item`) wraps these models like any RecBole backbone.
"""

from __future__ import annotations

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.loss import BPRLoss
from torch import nn

from recbole_faerec.model.loss import bce_capable
from recbole_faerec.model.positions import all_positions_loss

__all__ = []  # no model of its own


class CausalSequentialRecommender(SequentialRecommender):
    """Base of the plugin's backbones; subclasses build their layers and implement :meth:`encode`."""

    #: the output at position t depends on positions <= t only: ``train_positions: all`` works
    causal_positions = True

    @bce_capable  # loss_type BCE (one sampled negative) through the BPR branch
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.hidden_size = config["hidden_size"]
        self.loss_type = config["loss_type"]
        self.initializer_range = config["initializer_range"]
        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        if self.loss_type == "BPR":
            self.loss_fct = BPRLoss()
        elif self.loss_type == "CE":
            self.loss_fct = nn.CrossEntropyLoss()
        else:
            raise NotImplementedError("Make sure 'loss_type' in ['BPR', 'CE']!")

    def _init_weights(self, module):
        """Normal(0, initializer_range) for linear and embedding weights, as RecBole's SASRec."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` item ids (right-padded with 0) to causal ``[B, L, H]`` outputs."""
        raise NotImplementedError

    def forward(self, item_seq, item_seq_len):
        output = self.encode(item_seq)
        return self.gather_indexes(output, item_seq_len - 1)

    @all_positions_loss  # train_positions: all (every position of each user's sequence)
    def calculate_loss(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        pos_items = interaction[self.POS_ITEM_ID]
        if self.loss_type == "BPR":
            neg_items = interaction[self.NEG_ITEM_ID]
            pos_score = torch.sum(seq_output * self.item_embedding(pos_items), dim=-1)
            neg_score = torch.sum(seq_output * self.item_embedding(neg_items), dim=-1)
            return self.loss_fct(pos_score, neg_score)
        logits = torch.matmul(seq_output, self.item_embedding.weight.transpose(0, 1))
        return self.loss_fct(logits, pos_items)

    def predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return torch.mul(seq_output, self.item_embedding(interaction[self.ITEM_ID])).sum(dim=1)

    def full_sort_predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return torch.matmul(seq_output, self.item_embedding.weight.transpose(0, 1))
