"""FAERec_<Backbone> as RecBole models on real data (ml-100k, amazon-beauty)."""

import os

import numpy as np
import pytest
import torch

from conftest import TINY_SASREC, hand_train_popularity

TINY = {**TINY_SASREC, "embedding_size": 8, "state": "WARNING", "llm_emb_provider": "tfidf",
        "llm_emb_dimensions": 32, "train_batch_size": 1024}


def build(model="FAERec_SASRec", dataset="ml-100k", **extra):
    from recbole.utils import init_seed

    from recbole_faerec.quick_start import build_config, load_dataset
    from recbole_faerec.utils import get_model

    config = build_config(model, dataset, config_dict={**TINY, **extra})
    init_seed(config["seed"], config["reproducibility"])
    _, train, valid, test = load_dataset(config)
    init_seed(config["seed"], config["reproducibility"])
    return config, get_model(model)(config, train._dataset), train, valid, test


@pytest.fixture(scope="module")
def sasrec(cache):
    return build()


def first_batch(loader):
    return next(iter(loader))


def test_wrapping_keeps_the_backbone(sasrec):
    from recbole.model.sequential_recommender import SASRec

    from recbole_faerec.model.layers import FusedItemEmbedding

    config, model, *_ = sasrec
    assert isinstance(model, SASRec) and isinstance(model.item_embedding, FusedItemEmbedding)
    assert config["align_weight"] == 0.2 and config["item_tau"] == 0.1 and config["n_heads"] == 1
    # the frozen LLM table is in the model but not in its checkpoints
    assert "item_embedding.llm_table" not in model.state_dict()
    assert not model.item_embedding.llm_table.requires_grad
    assert "llm_fingerprint" in model.state_dict()


def test_gradients_reach_gate_projector_and_id_table(sasrec):
    _, model, train, *_ = sasrec
    model.train()
    model.set_epoch(15)  # both alignment terms active (w_item = 0.9, w_feat = 0.1)
    batch = first_batch(train)
    rec, align = model.calculate_loss(batch)
    fused = model.item_embedding
    parts = {"gate": fused.gate, "projector": fused.projector, "ids": fused.id_embedding}

    def grads(loss):
        params = [(name, p) for name, module in parts.items() for p in module.parameters()]
        got = torch.autograd.grad(loss, [p for _, p in params], retain_graph=True, allow_unused=True)
        return [(name, g) for (name, _), g in zip(params, got)]

    # the alignment term alone (eq. 5, 10) trains the ID table and the projector, not the gate
    # (it compares e_i with p_i, no fusion); a detached alignment term would fail here
    from_align = grads(align)  # once: the item term's buffer becomes its gradient
    for name, g in from_align:
        if name == "gate":
            assert g is None or not g.any(), name
        else:
            assert g is not None and g.abs().sum() > 0, name
    # ... and exactly the ID rows of the batch's alignment items
    [id_grad] = [g for name, g in from_align if name == "ids"]
    touched = torch.nonzero(id_grad.abs().sum(1)).flatten()
    assert torch.equal(touched, torch.sort(model.alignment_items(batch)).values)
    # the recommendation term reaches all three through the gated fusion (eq. 3-4)
    for name, g in grads(rec):
        assert g is not None and g.abs().sum() > 0, name


def alignment(model, items, epoch=15):
    model.eval()  # no dropout: the same items give the same losses
    model.set_epoch(epoch)
    with torch.no_grad():
        return {k: float(v) for k, v in model.alignment_losses(items).items()}


def test_each_ablation_removes_exactly_its_term(sasrec, cache):
    _, full_model, train, *_ = sasrec
    items = full_model.alignment_items(first_batch(train))
    full = alignment(full_model, items)
    assert set(full) == {"item", "feature"} and full["item"] > 0 and full["feature"] > 0

    def variant(**flag):
        model = build(**flag)[1]
        model.load_state_dict(full_model.state_dict(), strict=False)
        return model

    no_item = alignment(variant(item_align=False), items)
    assert set(no_item) == {"feature"} and no_item["feature"] == pytest.approx(full["feature"], rel=1e-5)
    no_feat = alignment(variant(feature_align=False), items)
    assert set(no_feat) == {"item"} and no_feat["item"] == pytest.approx(full["item"], rel=1e-5)

    fixed = variant(curriculum=False)
    got = alignment(fixed, items)
    assert got["item"] == pytest.approx(full["item"] / 0.9 * 0.5, rel=1e-5)
    assert got["feature"] == pytest.approx(full["feature"] / 0.1 * 0.5, rel=1e-4)

    one_group = alignment(variant(pop_group=False), items)
    from recbole_faerec.model.loss import barlow_twins_loss

    fused = full_model.item_embedding
    with torch.no_grad():
        expected = 0.1 * barlow_twins_loss(fused.id_view(items), fused.llm_view(items), 0.005).item()
    assert one_group["item"] == pytest.approx(full["item"], rel=1e-5)
    assert one_group["feature"] == pytest.approx(expected, rel=1e-4) != pytest.approx(full["feature"])

    no_gate = build(use_gate=False)[1]
    assert no_gate.item_embedding.gate is None and no_gate.item_embedding.input_fusion == "mean"

    # at epoch 0 the curriculum gives w_feat = 0: no feature term is computed at all
    assert set(alignment(full_model, items, epoch=0)) == {"item"}


def test_alignment_items_are_distinct_batch_items(sasrec):
    _, model, train, *_ = sasrec
    batch = first_batch(train)
    items = model.alignment_items(batch)
    expected = torch.unique(torch.cat([batch["item_id_list"].flatten(), batch["item_id"]]))
    assert torch.equal(torch.sort(items).values, expected[expected > 0])


def test_train_popularity_counts_the_training_part(sasrec):
    _, model, train, *_ = sasrec
    ds = train._dataset
    expected = hand_train_popularity(ds)
    # every ml-100k user has >= 20 interactions: the training part is all but the last two
    assert expected.sum() == 100_000 - 2 * (ds.user_num - 1)
    from recbole_faerec.data.popularity import train_popularity

    assert train_popularity(ds).tolist() == expected.tolist()
    # the model's grouper holds it, items never seen in training counted as 1 (reference notes §1)
    assert (expected[1:] == 0).any()
    assert model.grouper.popularity.tolist() == np.maximum(expected, 1).tolist()


def test_pca_init_is_aligned_to_recbole_ids(cache):
    from sklearn.decomposition import PCA

    from recbole_faerec.embeddings import store

    config, model, train, *_ = build(hidden_size=8)
    ds = train._dataset
    tokens, emb = store.parse_atomic_embeddings(str(cache / "ml-100k" / "ml-100k.itememb"))
    # the LLM rows in RecBole id order, rebuilt independently from the atomic file
    order = [tokens.index(t) for t in ds.field2id_token["item_id"][1:]]
    scores = PCA(n_components=8, random_state=config["seed"]).fit_transform(emb[order])
    ids = model.item_embedding.id_embedding.weight.detach().numpy()
    assert ids.shape == (ds.item_num, 8)
    np.testing.assert_allclose(ids[1:], scores, rtol=1e-4, atol=1e-5)
    row = ds.token2id("item_id", "302")
    np.testing.assert_allclose(ids[row], scores[row - 1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backbone", ["SASRec", "GRU4Rec", "NARM", "LightSANs", "BERT4Rec", "Caser",
                                      "NextItNet", "STAMP", "CORE", "FEARec", "SRGNN", "GCSAN",
                                      "FDSA", "GRU4RecF", "SASRecF", "GRU4RecCPR", "SASRecCPR",
                                      "SHAN", "HRM", "NPE", "TransRec", "SINE"])
def test_every_backbone_trains_and_ranks(backbone, cache):
    layers = 2 if backbone == "FEARec" else 1  # FEARec divides by n_layers - 1
    config, model, train, valid, _ = build(f"FAERec_{backbone}", n_layers=layers, num_layers=1,
                                           MAX_ITEM_LIST_LENGTH=5, step=1)
    model.train()
    model.set_epoch(15)
    loss = model.calculate_loss(first_batch(train))
    total = sum(loss) if isinstance(loss, tuple) else loss
    total.backward()
    assert torch.isfinite(total)
    model.eval()
    batch = first_batch(valid)[0]
    with torch.no_grad():
        scores = model.full_sort_predict(batch.to(config["device"]))
    assert scores.numel() == len(batch) * model.n_items and torch.isfinite(scores).all()


def gated_rows(model, ids):
    """Eq. (2)-(4) by hand for the distinct ``ids`` (drawing dropout masks in the order the model
    does: projector, then gate), as rows for ``ids``."""
    fused = model.item_embedding
    unique, inverse = torch.unique(ids, return_inverse=True)
    e = fused.id_embedding.weight[unique]
    p = fused.projector(fused.llm_table[unique])
    g = fused.gate(e, p)
    return (g * e + (1 - g) * p)[inverse]


def test_bce_loss_samples_one_negative(cache):
    from recbole_faerec.model.loss import BCEOneNegativeLoss

    config, model, train, *_ = build(loss_type="BCE")
    assert config["train_neg_sample_args"]["distribution"] == "uniform"
    assert config["train_neg_sample_args"]["sample_num"] == 1
    assert isinstance(model.loss_fct, BCEOneNegativeLoss) and model.loss_type == "BPR"
    batch = first_batch(train)
    assert batch["neg_item_id"].shape == batch["item_id"].shape  # one negative per target
    model.train()  # the training path, dropout on: the same masks for both by seeding both
    model.set_epoch(0)
    torch.manual_seed(7)
    rec, _ = model.calculate_loss(batch)
    torch.manual_seed(7)
    with torch.no_grad():
        seq = model.forward(batch["item_id_list"], batch["item_length"])
        pos = (seq * gated_rows(model, batch["item_id"])).sum(-1)      # eq. (13): gated items
        neg = (seq * gated_rows(model, batch["neg_item_id"])).sum(-1)
    expected = (-torch.log(torch.sigmoid(pos)) - torch.log(1 - torch.sigmoid(neg))).mean()
    assert rec.item() == pytest.approx(expected.item(), rel=1e-5)
    # dropout is on: another step's masks give another loss
    torch.manual_seed(8)
    assert model.calculate_loss(batch)[0].item() != pytest.approx(rec.item(), rel=1e-5)


def test_checkpoint_round_trip_and_wrong_embeddings(cache, tmp_path, monkeypatch):
    from recbole_faerec.embeddings.store import EmbeddingFileError
    from recbole_faerec.quick_start import run_recbole_faerec

    monkeypatch.chdir(tmp_path)
    result = run_recbole_faerec("FAERec_SASRec", "ml-100k", config_dict=TINY)
    checkpoint = torch.load(result["model_file"], weights_only=False)
    assert not any("llm_table" in k for k in checkpoint["state_dict"])

    config, model, _, _, test = build()
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    batch = first_batch(test)[0]
    with torch.no_grad():
        first = model.full_sort_predict(batch)
    config, again, train, _, _ = build()
    again.load_state_dict(checkpoint["state_dict"])
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again.full_sort_predict(batch), first, rtol=0, atol=0)
    # the reloaded model ranks the test users as the run's own test did
    from recbole.trainer import Trainer

    trainer = Trainer(config, again)  # RecBole's own Trainer: its collector is the TailCollector
    trainer.eval_collector.data_collect(train)  # popularity, as fit() would collect it
    reloaded = trainer.evaluate(test, load_best_model=False, show_progress=False)
    assert {k: round(float(v), 4) for k, v in reloaded.items()} == result["test_result"]

    # other embeddings than the checkpoint's (a hand-edited file used as it is): a clear error
    atomic = cache / "ml-100k" / "ml-100k.itememb"
    original = atomic.read_text()
    lines = original.splitlines()
    lines[1] = lines[1].split("\t")[0] + "\t" + " ".join(["0.25"] * 32)
    atomic.write_text("\n".join(lines) + "\n")
    try:
        _, other, *_ = build(llm_emb_provider="precomputed")
        with pytest.raises(EmbeddingFileError, match="trained with other item LLM embeddings"):
            other.load_state_dict(checkpoint["state_dict"])
    finally:
        atomic.write_text(original)
        os.utime(atomic)


def valid_loss_and_ndcg(model, loader):
    """Full-ranking cross-entropy and NDCG@10 of the validation targets (history not masked)."""
    model.eval()
    losses, ndcg = [], []
    with torch.no_grad():
        for batch in loader:
            interaction = batch[0]
            scores = model.full_sort_predict(interaction).view(len(interaction), -1)
            target = interaction["item_id"]
            losses.append(torch.nn.functional.cross_entropy(scores, target, reduction="none"))
            rank = (scores > scores.gather(1, target.view(-1, 1))).sum(1)
            ndcg.append(torch.where(rank < 10, 1 / torch.log2(rank.float() + 2), torch.zeros(())))
    return torch.cat(losses).mean().item(), torch.cat(ndcg).mean().item()


def test_short_real_run_on_amazon_beauty_improves(amazon_beauty, tmp_path, monkeypatch):
    from recbole_faerec.trainer import FAERecTrainer

    monkeypatch.chdir(tmp_path)
    # TF-IDF + SVD of the real titles: a real encoder that fits in seconds (MiniLM on all 12,101
    # titles takes minutes on 2 cores; tests/test_embeddings.py runs it on real titles)
    config, model, train, valid, _ = build(
        dataset="amazon-beauty", data_path=str(amazon_beauty), llm_emb_provider="tfidf",
        llm_emb_dimensions=128, llm_emb_dir=str(tmp_path), hidden_size=32, inner_size=64,
        MAX_ITEM_LIST_LENGTH=10, epochs=1,
        train_batch_size=2048)
    assert model.item_embedding.llm_table.shape == (12102, 128)  # text vectors, PCA-initialised
    loss0, ndcg0 = valid_loss_and_ndcg(model, valid)
    trainer = FAERecTrainer(config, model)
    trainer.fit(train, valid, saved=False, show_progress=False)
    loss2, ndcg2 = valid_loss_and_ndcg(model, valid)
    assert loss2 < loss0
    assert ndcg2 > ndcg0
