"""The paper's BCE loss with one sampled negative (eq. 13) for RecBole's own sequential models and
the plugin's backbones (compat ``bce_loss``), so a backbone and its FAERec train under one loss."""

import pytest
import torch

from conftest import TINY_SASREC, build_model

TINY = {**TINY_SASREC, "state": "WARNING", "loss_type": "BCE", "train_batch_size": 256}


def build(model_name, **extra):
    return build_model(model_name, {**TINY, **extra})


@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec", "FMLPRec"])
def test_backbones_train_with_bce_one_negative(name):
    from recbole_faerec.model.loss import BCEOneNegativeLoss

    config, model, train = build(name, hidden_dropout_prob=0.0, attn_dropout_prob=0.0, dropout_prob=0.0)
    assert config["loss_type"] == "BCE"  # the config still says what the user asked for
    assert isinstance(model.loss_fct, BCEOneNegativeLoss)
    batch = next(iter(train))
    assert batch["neg_item_id"].shape == batch["item_id"].shape  # one negative per target
    model.train()
    loss = model.calculate_loss(batch)
    with torch.no_grad():
        seq = model.forward(batch["item_id_list"], batch["item_length"])
        table = model.item_embedding.weight
        pos = (seq * table[batch["item_id"]]).sum(-1)
        neg = (seq * table[batch["neg_item_id"]]).sum(-1)
        expected = (-torch.log(torch.sigmoid(pos)) - torch.log(1 - torch.sigmoid(neg))).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert model.item_embedding.weight.grad.abs().sum() > 0

