"""The LLM-item family: LLMInit, RLMRec-Con and RLMRec-Gen on RecBole backbones (ml-100k, real
item titles embedded with TF-IDF), their losses against hand computation, and the shared structure
(one mixin + one line makes a method on every backbone)."""

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, TINY_SASREC, build_model, run_py

TINY = {**TINY_SASREC, "embedding_size": 8, "state": "WARNING", "llm_emb_provider": "tfidf",
        "llm_emb_dimensions": 32, "train_batch_size": 512}
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0, "dropout_prob": 0.0}


def hand_info_nce(a, b, tau):
    """mean_i [ -cos(a_i, b_i)/tau + log sum_j exp(cos(a_i, b_j)/tau) ] (RLMRec's InfoNCE)."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t() / tau
    return (-logits.diagonal() + torch.logsumexp(logits, dim=1)).mean()


# ---- LLMInit -------------------------------------------------------------------------------------

def test_llminit_table_is_the_pca_of_the_llm_table(cache):
    from sklearn.decomposition import PCA

    config, model, _ = build_model("LLMInit_SASRec", TINY)
    llm = model.llm_init_table  # kept for the t-SNE; compare with a PCA computed here
    from recbole_faerec.embeddings import ensure_item_embeddings

    table = ensure_item_embeddings(model_dataset(config), config)
    expected = PCA(n_components=8, random_state=config["seed"]).fit(table[1:]).transform(table[1:])
    weight = model.item_embedding.weight.detach().numpy()
    np.testing.assert_allclose(weight[1:], expected, rtol=1e-4, atol=1e-5)
    assert not weight[0].any()  # E[0] = 0
    np.testing.assert_allclose(llm.numpy(), weight, rtol=0, atol=0)
    assert isinstance(model.item_embedding, torch.nn.Embedding)  # the backbone's table, trainable

    _, scaled, _ = build_model("LLMInit_SASRec", {**TINY, "llm_init_scale": "match_std"})
    w = scaled.item_embedding.weight.detach()[1:]
    assert w.std().item() == pytest.approx(0.02, rel=0.05)  # SASRec's N(0, 0.02) initialisation
    # the same directions, rescaled
    np.testing.assert_allclose(w.numpy() / w.numpy().std(), weight[1:] / weight[1:].std(), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="llm_init_scale 'big' is unknown"):
        build_model("LLMInit_SASRec", {**TINY, "llm_init_scale": "big"})


def model_dataset(config):
    from recbole_faerec.quick_start import load_dataset

    return load_dataset(config)[1]._dataset


# ---- RLMRec-Con --------------------------------------------------------------------------------

def test_rlmrec_con_loss_by_hand(cache):
    config, model, train = build_model("RLMRecCon_SASRec", {**TINY, **NO_DROPOUT, "loss_type": "BCE",
                                                            "kd_weight": 0.3})
    model.train()
    batch = next(iter(train))
    rec, kd = model.calculate_loss(batch)
    E, L = model.item_embedding.weight, model.llm_table
    pos, neg = batch["item_id"], batch["neg_item_id"]
    expected = 0.3 * (hand_info_nce(E[pos], model.mapper(L[pos]), 0.2)
                      + hand_info_nce(E[neg], model.mapper(L[neg]), 0.2))
    torch.testing.assert_close(kd, expected, rtol=1e-5, atol=1e-6)
    # the recommendation side is the backbone's, scored with the ID table alone
    seq = model.forward(batch["item_id_list"], batch["item_length"])
    bce = (F.softplus(-(seq * E[pos]).sum(-1)) + F.softplus((seq * E[neg]).sum(-1))).mean()
    torch.testing.assert_close(rec, bce, rtol=1e-5, atol=1e-6)
    mapper = model.mapper[0].weight
    kd.backward()
    assert mapper.grad is not None and mapper.grad.abs().sum() > 0
    views = model.item_embedding_views(torch.arange(1, 4))
    assert set(views) == {"ID", "LLM"} and views["LLM"].shape == views["ID"].shape == (3, 8)

    # under CE there are no sampled negatives: the target term alone
    _, ce, train = build_model("RLMRecCon_SASRec", {**TINY, **NO_DROPOUT})
    ce.train()
    batch = next(iter(train))
    _, kd = ce.calculate_loss(batch)
    pos = batch["item_id"]
    torch.testing.assert_close(kd, 0.01 * hand_info_nce(ce.item_embedding.weight[pos],
                                                        ce.mapper(ce.llm_table[pos]), 0.2), rtol=1e-5, atol=1e-7)


# ---- RLMRec-Gen --------------------------------------------------------------------------------

def test_rlmrec_gen_masks_inputs_and_reconstructs_from_states(cache):
    config, model, train = build_model("RLMRecGen_SASRec", {**TINY, **NO_DROPOUT, "gen_mask_ratio": 0.5,
                                                            "gen_weight": 0.7})
    model.train()
    batch = next(iter(train))
    torch.manual_seed(7)
    rec, gen = model.calculate_loss(batch)
    drawn = model._drawn
    assert drawn.numel() > 0 and model.item_embedding.masked is None  # cleared after the step

    # by hand: the same draw, the inputs read the mask token, states at the masked positions
    table = model.item_embedding
    seq, length = batch["item_id_list"], batch["item_length"]
    mask = torch.zeros(table.num_embeddings, dtype=torch.bool)
    mask[drawn] = True
    table.masked = mask
    try:
        embedded = table(seq)
        where = mask[seq] & (seq > 0)
        assert torch.equal(embedded[where], table.mask_token.expand(int(where.sum()), -1))
        assert torch.equal(embedded[~where], table.id_embedding(seq)[~where])
        model.gather_indexes = lambda output, index: output
        states = model.forward(seq, length)
        del model.gather_indexes
        last = states[torch.arange(len(seq)), length - 1]
    finally:
        table.masked = None
    expected = 0.7 * hand_info_nce(model.generator(states[where]), model.llm_table[seq[where]], 0.5)
    torch.testing.assert_close(gen, expected, rtol=1e-5, atol=1e-6)
    # the recommendation loss ran on the masked inputs; targets scored with the unmasked table
    ce = F.cross_entropy(last @ table.weight.t(), batch["item_id"])
    torch.testing.assert_close(rec, ce, rtol=1e-5, atol=1e-6)
    # evaluation never masks
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.item_embedding(seq), table.id_embedding(seq))


def test_rlmrec_gen_item_fallback_and_backbones_without_states(cache):
    from recbole_faerec.model.llm_item import MethodBackboneError

    with pytest.raises(MethodBackboneError, match="NARM has no state per position; use "
                                                  "rlmrec_gen_context: item"):
        build_model("RLMRecGen_NARM", TINY)
    _, model, train = build_model("RLMRecGen_NARM", {**TINY, "rlmrec_gen_context": "item",
                                                     "gen_mask_ratio": 0.5})
    model.train()
    batch = next(iter(train))
    _, gen = model.calculate_loss(batch)
    drawn = model._drawn
    ids = model.item_embedding.id_embedding(drawn)
    torch.testing.assert_close(gen, 0.1 * hand_info_nce(model.generator(ids), model.llm_table[drawn], 0.5),
                               rtol=1e-5, atol=1e-6)


# ---- the structure -------------------------------------------------------------------------------

def test_a_new_method_is_one_mixin_and_one_line(cache):
    from recbole_faerec.model.backbones import backbones
    from recbole_faerec.model.llm_item import LLMItemMixin, MethodBackboneError, method_family, method_model

    class NormMixin(LLMItemMixin):
        """A toy method: pull each target's ID row towards unit length."""

        method_name = "Toy"
        loss_names = ("rec", "norm")

        def auxiliary_losses(self, interaction):
            rows = self.item_embedding(self.batch_targets(interaction))
            return {"norm": (rows.norm(dim=-1) - 1).pow(2).mean()}

    family = method_family(NormMixin)
    assert list(family) == [f"Toy_{name}" for name in backbones()]
    config, model, train = build_model("SASRec", TINY)  # the config of a backbone, the model of the toy
    from recbole_faerec.quick_start import load_dataset

    toy = family["Toy_SASRec"](config, load_dataset(config)[1]._dataset)
    toy.train()
    batch = next(iter(train))
    rec, norm = toy.calculate_loss(batch)
    rows = toy.item_embedding(batch["item_id"])
    torch.testing.assert_close(norm, (rows.norm(dim=-1) - 1).pow(2).mean())

    class Picky(NormMixin):
        method_name = "Picky"

        @classmethod
        def cannot_wrap(cls, backbone):
            return None if backbone.__name__ == "SASRec" else "it only knows SASRec"

    with pytest.raises(MethodBackboneError, match="Picky_GRU4Rec: Picky cannot wrap GRU4Rec: it only "
                                                  "knows SASRec"):
        method_model(Picky, backbones()["GRU4Rec"])


def test_train_save_reload_rank_through_the_entry_point(cache, tmp_path):
    """Each method trains, saves, reloads and ranks as trained, through run_recbole_faerec.py."""
    from recbole_faerec.quick_start.reload import load_data_and_model
    from recbole_faerec.utils import get_trainer

    models = ["LLMInit_SASRec", "RLMRecCon_GRU4Rec", "RLMRecGen_SASRec", "LLMESR_SASRec",
              "LLMCFSR_GRU4Rec"]
    # the 199 ml-100k users with fewer than 30 ratings (as test_hyper.py), to keep CI short
    args = [f"--{k}={v}" for k, v in {**TINY, "state": "INFO", "user_inter_num_interval": "[0,30)"}.items()]
    proc = run_py([REPO / "run_recbole_faerec.py", f"--model={','.join(models)}", "--dataset=ml-100k",
                   "--out_dir=out", "--tsne_items=60", *args], cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "out" / "results.csv") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert list(rows) == models
    assert (tmp_path / "out" / "tsne.png").stat().st_size > 10_000  # both views of every method
    for name in models:
        (checkpoint,) = [p for p in (tmp_path / "saved").glob(f"{name}-*.pth")
                         if not p.name.endswith("-last.pth")]  # the best model, not the resume file
        config, model, _, train, _, test = load_data_and_model(str(checkpoint), logger_init=False)
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        trainer.eval_collector.data_collect(train)  # the popularity the tail metrics need
        result = trainer.evaluate(test, load_best_model=False, show_progress=False)
        assert result["ndcg@10"] == pytest.approx(float(rows[name]["ndcg@10"]), abs=1e-4), name

    # bad input: a method on a backbone it cannot wrap, one line, exit 2
    proc = run_py([REPO / "run_recbole_faerec.py", "--model=RLMRecGen_NARM", "--dataset=ml-100k",
                   *args], cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: RLMRecGen_NARM: rlmrec_gen_context")
