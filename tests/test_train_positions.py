"""train_positions: all (recbole_faerec.model.positions): one training row per user, every position
scored against the next item, as the original SASRec and FAERec's authors' code train."""

import numpy as np
import pytest
import torch

from conftest import REPO, TINY_SASREC, build_model, run_py

TINY = {**TINY_SASREC, "state": "WARNING", "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0,
        "dropout_prob": 0.0, "train_batch_size": 64}


def build(model_name, **extra):
    return build_model(model_name, {**TINY, **extra})


def test_position_targets_by_hand():
    from recbole_faerec.model.positions import position_targets

    seq = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0], [1, 2, 3, 4]])
    mask, targets = position_targets(seq, torch.tensor([3, 1, 4]), torch.tensor([9, 10, 11]))
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False], [True] * 4]
    assert targets[mask].tolist() == [6, 7, 9, 10, 2, 3, 4, 11]


def test_one_row_per_user_keeps_each_users_training_sequence():
    config, _, prefixes = build("SASRec")  # RecBole's prefix rows
    config_all, _, rows = build("SASRec", train_positions="all")
    feat, all_feat = rows._dataset.inter_feat, prefixes._dataset.inter_feat
    users = feat["user_id"].numpy()
    assert len(np.unique(users)) == len(users) == len(np.unique(all_feat["user_id"].numpy()))
    lengths = all_feat["item_length"].numpy()
    for i in range(0, len(users), 97):  # each kept row is its user's longest prefix
        u = users[i]
        longest = np.flatnonzero(all_feat["user_id"].numpy() == u)[lengths[all_feat["user_id"].numpy() == u].argmax()]
        assert feat["item_length"][i] == lengths[longest]
        assert torch.equal(feat["item_id_list"][i], all_feat["item_id_list"][longest])
        assert feat["item_id"][i] == all_feat["item_id"][longest]
    # every target of the prefix rows is still trained on, once, unless cut off by the sequence
    # length (MAX_ITEM_LIST_LENGTH): a user's row covers its last L + 1 training items
    covered = feat["item_length"].sum().item()
    assert covered == sum(min(n, config["MAX_ITEM_LIST_LENGTH"]) for n in
                          np.bincount(all_feat["user_id"].numpy())[users])


@pytest.mark.parametrize("model_name", ["SASRec", "GRU4Rec", "LRURec", "FAERec_SASRec"])
def test_every_position_loss_equals_the_prefix_losses(model_name, cache):
    extra = {"llm_emb_provider": "tfidf", "llm_emb_dimensions": 16, "embedding_size": 8,
             "projector_dropout": 0.0, "gate_dropout": 0.0, "align_weight": 0.0} \
        if model_name.startswith("FAERec") else {}
    config, model, train = build(model_name, train_positions="all", **extra)
    model.eval()  # no dropout: the prefix forwards below must see the same network
    batch = next(iter(train))
    loss = model.calculate_loss(batch)
    seq, lengths, target = batch["item_id_list"], batch["item_length"], batch["item_id"]
    prefixes, prefix_len, prefix_target = [], [], []
    for b in range(len(seq)):
        n = int(lengths[b])
        for t in range(n):  # the prefix ending at position t, scored against item t + 1
            p = torch.zeros_like(seq[b])
            p[: t + 1] = seq[b, : t + 1]
            prefixes.append(p)
            prefix_len.append(t + 1)
            prefix_target.append(seq[b, t + 1] if t + 1 < n else target[b])
    with torch.no_grad():
        out = model.forward(torch.stack(prefixes), torch.tensor(prefix_len))
        logits = out @ model.item_embedding.weight.t()
        expected = torch.nn.functional.cross_entropy(logits, torch.stack(prefix_target))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert len(prefixes) > len(seq)  # more targets than rows


def test_bce_scores_one_negative_per_position():
    config, model, train = build("SASRec", train_positions="all", loss_type="BCE")
    model.eval()
    batch = next(iter(train))
    loss = model.calculate_loss(batch)
    from recbole_faerec.model.positions import position_targets

    mask, targets = position_targets(batch["item_id_list"], batch["item_length"], batch["item_id"])
    neg = model.position_negatives  # the step's negatives, one per position
    assert neg.shape == (int(mask.sum()),)
    with torch.no_grad():
        model.gather_indexes = lambda output, index: output
        out = model.forward(batch["item_id_list"], batch["item_length"])[mask]
        del model.gather_indexes
        table = model.item_embedding.weight
        pos, negs = (out * table[targets[mask]]).sum(-1), (out * table[neg]).sum(-1)
        expected = (-torch.log(torch.sigmoid(pos)) - torch.log(1 - torch.sigmoid(negs))).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_negatives_are_outside_their_row_and_cover_the_rest():
    """ml-100k users hold up to 50 of 1,682 items: a uniform draw over all items hits the row's own
    items about 3 % of the time, hundreds of times over one batch."""
    from recbole_faerec.model.positions import position_targets, sample_negatives

    _, model, train = build("SASRec", train_positions="all", loss_type="BCE")
    batch = next(iter(train))
    seq, length = batch["item_id_list"], batch["item_length"]
    mask, targets = position_targets(seq, length, batch["item_id"])
    torch.manual_seed(0)
    draws = torch.stack([sample_negatives(seq, targets, mask, model.n_items) for _ in range(20)])
    rows = torch.arange(len(seq)).unsqueeze(1).expand_as(mask)[mask]
    for r in range(len(seq)):
        own = set(seq[r, : length[r]].tolist()) | {int(batch["item_id"][r])}
        drawn = set(draws[:, rows == r].flatten().tolist())
        assert not drawn & own, f"row {r} drew its own items {sorted(drawn & own)[:5]}"
        assert min(drawn) >= 1 and max(drawn) < model.n_items
    assert len(set(draws.flatten().tolist())) > 0.9 * (model.n_items - 1)  # the rest, all of it


def test_a_non_causal_model_refuses_every_position(tmp_path):
    from recbole_faerec.model.positions import TrainPositionsError

    with pytest.raises(TrainPositionsError, match="NARM cannot train on every position"):
        build("NARM", train_positions="all")
    proc = run_py([REPO / "run_recbole_faerec.py", "--model=BERT4Rec", "--dataset=ml-100k",
                   "--train_positions=all", "--epochs=1"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "BERT4Rec cannot train on every position" in proc.stderr.strip().splitlines()[-1]


def test_prefix_rows_with_every_position_warn(caplog):
    from recbole.data import create_dataset, data_preparation

    config, model, _ = build("SASRec", train_positions="all")
    prefixes, _, _ = data_preparation(config, create_dataset(config))  # RecBole's own loaders
    with caplog.at_level("WARNING"):
        model.calculate_loss(next(iter(prefixes)))
    assert "several rows of one user" in caplog.text


def test_faerec_aligns_the_negatives_of_every_position(cache):
    _, model, train = build("FAERec_SASRec", train_positions="all", loss_type="BCE",
                            llm_emb_provider="tfidf", llm_emb_dimensions=16, embedding_size=8,
                            align_max_items=10 ** 6, reference_quirks=["align_duplicates"])
    model.train()
    model.set_epoch(0)
    batch = next(iter(train))
    model.calculate_loss(batch)
    negatives = model.position_negatives
    assert negatives.numel() == int(batch["item_length"].sum())  # one per position
    items = model.alignment_items(batch)
    seq = batch["item_id_list"].flatten()
    expected = torch.cat([seq[seq > 0], negatives])
    assert torch.equal(items, expected)  # the authors' tokens: inputs and their negatives


# ---- padding_side: left (the original SASRec's and the authors' layout) ----------------------

def test_left_align_undoes_right_align():
    from recbole_faerec.model.positions import left_align, right_align

    x = torch.tensor([[1, 2, 0, 0], [3, 4, 5, 6], [7, 0, 0, 0]])
    length = torch.tensor([2, 4, 1])
    assert right_align(x, length).tolist() == [[0, 0, 1, 2], [3, 4, 5, 6], [0, 0, 0, 7]]
    assert torch.equal(left_align(right_align(x, length), length), x)


def _sasrec_by_hand(model, items, width):
    """SASRec's per-position outputs for one unpadded sequence whose items sit at positions
    ``width - n .. width - 1`` (left padding, which the causal mask makes invisible)."""
    n = len(items)
    seq = torch.tensor([items])
    x = model.item_embedding(seq) + model.position_embedding(torch.arange(width - n, width))
    x = model.dropout(model.LayerNorm(x))
    causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
    mask = torch.where(causal, 0.0, -10000.0).view(1, 1, n, n)
    return model.trm_encoder(x, mask, output_all_encoded_layers=True)[-1][0]


def test_left_padding_counts_positions_back_from_the_last_item(cache):
    from recbole_faerec.model.positions import every_position_output

    _, right, _ = build("SASRec", MAX_ITEM_LIST_LENGTH=6)
    _, left, _ = build("SASRec", MAX_ITEM_LIST_LENGTH=6, padding_side="left")
    left.load_state_dict(right.state_dict())
    right.eval(), left.eval()
    seq = torch.tensor([[5, 9, 2, 0, 0, 0], [7, 3, 8, 4, 6, 1], [11, 0, 0, 0, 0, 0]])
    length = torch.tensor([3, 6, 1])
    with torch.no_grad():
        last = left.forward(seq, length)
        every = every_position_output(left, seq, length)
        for b, n in enumerate(length.tolist()):
            expected = _sasrec_by_hand(left, seq[b, :n].tolist(), 6)
            torch.testing.assert_close(last[b], expected[-1], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(every[b, :n], expected, rtol=1e-5, atol=1e-5)  # RecBole's layout
            assert torch.all(every[b, n:] == 0)
        assert torch.equal(right.forward(seq, length)[1], last[1])  # a full row is the same ...
        assert not torch.allclose(right.forward(seq, length)[0], last[0], atol=1e-3)  # ... a short one not


def test_left_padding_trains_every_position(cache):
    """A real step with train_positions: all: the loss is the per-position CE of the hand-built
    left-padded outputs."""
    import torch.nn.functional as F

    _, model, train = build("SASRec", MAX_ITEM_LIST_LENGTH=6, padding_side="left", train_positions="all")
    model.eval()  # no dropout: a deterministic loss
    batch = next(iter(train))
    seq, length = batch["item_id_list"], batch["item_length"]
    with torch.no_grad():
        outputs, targets = [], []
        for b in range(8):
            n = int(length[b])
            outputs.append(_sasrec_by_hand(model, seq[b, :n].tolist(), 6))
            targets.append(torch.cat([seq[b, 1:n], batch["item_id"][b:b + 1]]))
        logits = torch.cat(outputs) @ model.item_embedding.weight.t()
        subset = model.calculate_loss(batch[torch.arange(8)])
        expected = F.cross_entropy(logits, torch.cat(targets))
    assert subset.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["GRU4Rec", "BERT4Rec", "FMLPRec"])
def test_left_padding_warns_on_a_model_with_its_own_forward(cache, caplog, name):
    with caplog.at_level("WARNING"):
        _, model, _ = build(name, padding_side="left")
    assert f"{name} cannot pad sequences on the left" in caplog.text
    assert model.padding_side == "right"


def test_unknown_padding_side_is_refused(cache):
    from recbole_faerec.model.positions import TrainPositionsError

    with pytest.raises(TrainPositionsError, match="padding_side 'middle' is unknown"):
        build("SASRec", padding_side="middle")
