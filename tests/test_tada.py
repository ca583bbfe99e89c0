"""TADA_<Backbone> (recbole_faerec/model/sequential_recommender/tada.py) and FAERec_TADA_<Backbone>
(faerec_tada.py) on real ml-100k data: the mixing losses with fixed draws against hand computation
(last position and every position), tail-preference users, the two stages, the combination's shared
step, short runs through the entry point that reuse the cached co-occurrence model."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, TINY_SASREC, build_model, run_py

TINY = {**TINY_SASREC, "state": "WARNING", "train_batch_size": 256,
        "user_inter_num_interval": "[0,30)"}  # the 199 users with fewer than 30 ratings


def check_second_stage(first, first_name, second_name, settings, other_name, tmp_path):
    """``second_name`` built with ``tada_init_checkpoint`` on ``first``'s checkpoint holds its
    weights; a checkpoint of ``other_name`` is refused, naming both."""
    path = tmp_path / f"{first_name}-stage1.pth"
    torch.save({"config": {"model": first_name}, "state_dict": first.state_dict()}, path)
    _, second, _ = build_model(second_name, {**settings, "tada_init_checkpoint": str(path)})
    for key, value in first.state_dict().items():
        assert torch.equal(second.state_dict()[key], value), key
    torch.save({"config": {"model": other_name}, "state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=f"holds a {other_name}, not a {first_name}"):
        build_model(second_name, {**settings, "tada_init_checkpoint": str(tmp_path / "other.pth")})


@pytest.fixture(scope="module")
def tada(cache):
    config, model, train = build_model("TADA_SASRec", TINY)
    return config, model, next(iter(train))


def test_mixing_losses_by_hand(tada):
    _, model, batch = tada
    torch.manual_seed(0)
    n, d = 6, model.item_embedding.embedding_dim
    original, o1, o2 = torch.randn(n, d), torch.randn(n, d), torch.randn(n, d)
    target = batch["item_id"][:n]
    alpha = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7, 0.2])
    group = torch.tensor([True, False, True, True, False, False])
    a, perm = torch.tensor([0.2, 0.4, 0.6, 0.8, 0.1, 0.3]), torch.tensor([5, 4, 3, 2, 1, 0])
    self_mix, cross = model.mixing_losses(original, o1, o2, (target, target), (None, None), alpha,
                                          [group], [(a, perm)])
    table = model.item_embedding.weight
    mixed = alpha[:, None] * o1 + (1 - alpha[:, None]) * o2
    assert self_mix.item() == pytest.approx(F.cross_entropy(mixed @ table.T, target).item(), rel=1e-5)
    outs = torch.cat([original[group], o2[group]])
    tgts = torch.cat([target[group], target[group]])
    mixed = a[:, None] * outs + (1 - a[:, None]) * outs[perm]
    logits = mixed @ table.T
    # soft targets: a one-hot of the row's target plus (1 - a) of its partner's
    by_hand = -(a * F.log_softmax(logits, 1)[range(6), tgts]
                + (1 - a) * F.log_softmax(logits, 1)[range(6), tgts[perm]]).mean()
    assert cross.item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_bce_mixes_target_and_negative_embeddings(cache):
    _, model, train = build_model("TADA_SASRec", {**TINY, "loss_type": "BCE",
                                                  "train_neg_sample_args": {"distribution": "uniform",
                                                                            "sample_num": 1}})
    torch.manual_seed(1)
    d = model.item_embedding.embedding_dim
    outs = torch.randn(4, d)
    targets, negatives = torch.tensor([1, 2, 3, 4]), torch.tensor([9, 8, 7, 6])
    a, perm = torch.tensor([0.25, 0.5, 0.75, 1.0]), torch.tensor([1, 0, 3, 2])
    loss = model._score_loss(outs, targets, negatives, (a, (targets[perm], negatives[perm])))
    e = model.item_embedding
    pos = a[:, None] * e(targets) + (1 - a[:, None]) * e(targets[perm])
    neg = a[:, None] * e(negatives) + (1 - a[:, None]) * e(negatives[perm])
    by_hand = (F.softplus(-(outs * pos).sum(1)) + F.softplus((outs * neg).sum(1))).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_tail_preference_users_from_the_training_part(tada):
    from recbole_faerec.data.cooccurrence import training_head, training_sequences

    config, model, batch = tada
    _, _, train = build_model("SASRec", TINY)
    seqs = training_sequences(train._dataset, "item_id_list", "item_length", "item_id", "user_id")
    label = training_head(seqs, model.n_items, 0.2)
    users = np.unique(train._dataset.inter_feat["user_id"].numpy())
    expected = [np.mean(label[s] == 0) >= 0.5 for s in seqs]
    assert model.tail_preference[torch.as_tensor(users)].tolist() == expected
    assert 0 < sum(expected) < len(expected)  # both groups exist


def test_training_step_returns_three_named_losses(tada):
    _, model, batch = tada
    model.train()
    losses = model.calculate_loss(batch)
    assert len(losses) == len(model.loss_names) == 3 and all(torch.isfinite(x) for x in losses)
    sum(losses).backward()
    assert model.item_embedding.weight.grad is not None
    model.eval()
    assert torch.is_tensor(model.calculate_loss(batch)) and model.calculate_loss(batch).dim() == 0


def test_the_second_stage_starts_from_the_backbones_checkpoint(tada, tmp_path):
    config, _, _ = tada
    _, sasrec, _ = build_model("SASRec", TINY)
    with torch.no_grad():
        sasrec.item_embedding.weight.mul_(3.0)  # "trained": unlike any fresh initialisation
    check_second_stage(sasrec, "SASRec", "TADA_SASRec", TINY, "GRU4Rec", tmp_path)
    # through the entry point: one line, exit 2
    proc = run_py([REPO / "run_recbole_faerec.py", "--model=TADA_SASRec", "--dataset=ml-100k",
                   f"--tada_init_checkpoint={tmp_path / 'missing.pth'}",
                   *[f"--{k}={v}" for k, v in TINY.items()]], cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: tada_init_checkpoint ")


def test_a_run_through_the_entry_point_reuses_the_cached_model(tada, tmp_path):
    """The fixture's model made the co-occurrence cache for these training sequences; a run through
    run_recbole_faerec.py trains, logs the three losses by name, and reuses it."""
    args = [f"--{k}={v}" for k, v in {**TINY, "state": "INFO"}.items()]
    proc = run_py([REPO / "run_recbole_faerec.py", "--model=TADA_SASRec", "--dataset=ml-100k", *args],
                  cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "TADA candidate sets: reused" in out
    assert "self_mix" in out and "cross_mix" in out and "test result" in out


def test_every_position_mixing_by_hand(tada):
    """Right-aligned [B, L, d] outputs: the self-mix scores every position of the views that has a
    target; the cross-mix the positions where both rows of a pair have one."""
    _, model, _ = tada
    torch.manual_seed(2)
    b, length, d = 3, 2, model.item_embedding.embedding_dim
    original, o1, o2 = (torch.randn(b, length, d) for _ in range(3))
    target = torch.tensor([[0, 5], [7, 8], [3, 4]])  # row 0 is one position long
    view_target = torch.tensor([[9, 5], [7, 8], [0, 4]])
    alpha = torch.tensor([0.1, 0.6, 0.3])
    group = torch.tensor([True, True, False])
    a, perm = torch.tensor([0.2, 0.4, 0.7, 0.9]), torch.tensor([1, 0, 3, 2])
    self_mix, cross = model.mixing_losses(original, o1, o2, (target, view_target), (None, None),
                                          alpha, [group], [(a, perm)])
    table = model.item_embedding.weight
    mixed = alpha[:, None, None] * o1 + (1 - alpha[:, None, None]) * o2
    rows, cols = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 0, 1, 1])
    by_hand = F.cross_entropy(mixed[rows, cols] @ table.T, view_target[rows, cols])
    assert self_mix.item() == pytest.approx(by_hand.item(), rel=1e-5)
    outs = torch.cat([original[group], o2[group]])  # rows: o[0], o[1], o2[0], o2[1]
    tgts = torch.cat([target[group], view_target[group]])
    mixed = a[:, None, None] * outs + (1 - a[:, None, None]) * outs[perm]
    # pairs (0,1) and (1,0): position 0 of row 0 has no target -> position 1 only; (2,3), (3,2): both
    pairs = [(0, 1), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    terms = []
    for r, t in pairs:
        logp = F.log_softmax(mixed[r, t] @ table.T, 0)
        terms.append(-(a[r] * logp[tgts[r, t]] + (1 - a[r]) * logp[tgts[perm][r, t]]))
    assert cross.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)


@pytest.fixture(scope="module")
def every_position(cache):
    config, model, train = build_model("TADA_SASRec", {**TINY, "train_positions": "all"})
    return config, model, next(iter(train))


def test_every_position_training_reuses_the_recommendation_pass(every_position):
    """train_positions: all (the authors' way): one forward for the loss and one per view (the
    prefix rows need a fourth), and the views' every position is scored."""
    _, model, batch = every_position
    model.train()
    calls = []
    hook = model.trm_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        losses = model.calculate_loss(batch)
    finally:
        hook.remove()
    assert len(calls) == 3 and len(losses) == 3 and all(torch.isfinite(x) for x in losses)
    assert model.sequence_states.shape[:2] == batch["item_id_list"].shape
    sum(losses).backward()
    assert model.item_embedding.weight.grad is not None


def test_faerec_tada_shares_one_fused_table_and_the_epoch(cache, tmp_path):
    """FAERec_TADA_SASRec: four named losses; FAERec's curriculum gets the epoch through TADA;
    under CE the step's forwards (row, two views) and scores share one projector pass; the second
    stage starts from a FAERec_SASRec checkpoint."""
    settings = {**TINY, "train_positions": "all"}
    config, model, train = build_model("FAERec_TADA_SASRec", settings)
    batch = next(iter(train))
    model.train()
    model.set_epoch(4)
    assert model.current_epoch == 4
    calls = []
    hook = model.item_embedding.projector.register_forward_hook(lambda *a: calls.append(1))
    try:
        losses = model.calculate_loss(batch)
    finally:
        hook.remove()
    assert model.loss_names == ("rec", "align", "self_mix", "cross_mix") and len(losses) == 4
    assert len(calls) == 1 and all(torch.isfinite(x) for x in losses)
    sum(losses).backward()
    assert model.item_embedding.gate.fc1.weight.grad is not None

    _, faerec, _ = build_model("FAERec_SASRec", settings)
    check_second_stage(faerec, "FAERec_SASRec", "FAERec_TADA_SASRec", settings, "SASRec", tmp_path)


def test_faerec_tada_through_the_entry_point(every_position, tmp_path):
    """Every position, BCE: trains, logs the four losses by name, evaluates."""
    args = [f"--{k}={v}" for k, v in {**TINY, "state": "INFO", "train_positions": "all",
                                      "loss_type": "BCE"}.items()]
    proc = run_py([REPO / "run_recbole_faerec.py", "--model=FAERec_TADA_SASRec", "--dataset=ml-100k",
                   *args], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "TADA candidate sets: reused" in out
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)  # RecBole colours the names
    assert re.search(r"rec: [0-9.]+, align: [0-9.]+, self_mix: [0-9.]+, cross_mix: [0-9.]+", plain)
    assert "test result" in out


def test_the_authors_settings_per_backbone():
    """props/model/TADA_<Backbone>.yaml: the authors' rates for GRU4Rec and FMLP-Rec (Beauty) apply
    to TADA on that backbone and to FAERec + TADA on it; other backbones keep TADA.yaml's (SASRec's);
    the user's settings still win."""
    from recbole_faerec.quick_start.quick_start import build_config

    def rates(model, **settings):
        config = build_config(model, "ml-100k", None, settings)
        return config["tada_rate_a"], config["tada_rate_b"], config["tada_th"]

    assert rates("TADA_SASRec") == (0.31, 0.51, 0.3)
    assert rates("TADA_NARM") == (0.31, 0.51, 0.3)
    assert rates("TADA_GRU4Rec") == (0.3, 0.7, 0.3)
    assert rates("FAERec_TADA_GRU4Rec") == (0.3, 0.7, 0.3)
    assert rates("TADA_FMLPRec") == (0.61, 0.81, 0.6)
    assert rates("FAERec_TADA_FMLPRec") == (0.61, 0.81, 0.6)
    assert rates("TADA_GRU4Rec", tada_rate_b=0.5) == (0.3, 0.5, 0.3)
    # FAERec's own defaults are untouched by TADA's per-backbone file
    assert build_config("FAERec_TADA_GRU4Rec", "ml-100k", None, {})["item_tau"] == \
        build_config("FAERec_GRU4Rec", "ml-100k", None, {})["item_tau"]
