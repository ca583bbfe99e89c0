"""props/presets/: the paper's stated settings and the authors' code, for a FAERec model and its
backbone alike, found from any directory."""

import logging

import pytest
import yaml

from conftest import REPO, TINY_SASREC, run_py

PRESETS = REPO / "props" / "presets"
# the paper (§5.1) and the authors' code (reference notes §1-2), written out here by hand
PAPER = {"loss_type": "BCE", "MAX_ITEM_LIST_LENGTH": 50, "hidden_size": 128, "embedding_size": 128,
         "train_batch_size": 256, "learning_rate": 0.001, "topk": [5, 10, 20],
         "inference_fusion": "mean", "train_score_fusion": "gate", "reference_quirks": []}
REFERENCE = {"loss_type": "BCE", "MAX_ITEM_LIST_LENGTH": 50, "hidden_size": 128, "inner_size": 512,
             "n_layers": 2, "n_heads": 2, "hidden_dropout_prob": 0.4, "attn_dropout_prob": 0.4,
             "learning_rate": 0.001, "weight_decay": 0.0, "valid_metric": "NDCG@20",
             "eval_start_epoch": 61, "train_positions": "all", "train_batch_size": 256,
             "padding_side": "left",
             "stopping_step": 10, "eval_exclude_history": True, "eval_history_score": 0,
             "head_ratio": 0.2, "popularity_source": "all", "align_weight": 0.2, "item_tau": 0.05,
             "bt_lambda": 0.005, "inference_fusion": "layernorm", "train_score_fusion": "id",
             "reference_quirks": ["train_id_scores", "align_duplicates", "pca_with_padding",
                                  "input_branches"], "align_max_items": 1000000}

# TADA's authors' code (baselines-notes §1.6-1.7), written out here by hand
TADA = {"loss_type": "BCE", "MAX_ITEM_LIST_LENGTH": 50, "hidden_size": 64, "embedding_size": 64,
        "inner_size": 256, "n_layers": 2, "n_heads": 2, "hidden_dropout_prob": 0.2,
        "attn_dropout_prob": 0.2, "learning_rate": 0.001, "train_batch_size": 256, "epochs": 500,
        "stopping_step": 10, "valid_metric": "NDCG@20", "eval_start_epoch": 101,
        "train_positions": "all", "padding_side": "left", "eval_exclude_history": True,
        "eval_history_score": 0, "head_ratio": 0.2, "popularity_source": "train"}


def config_for(model, preset, tmp_path, monkeypatch, **extra):
    from recbole_faerec.quick_start import build_config

    monkeypatch.chdir(tmp_path)  # the preset is found in the plugin's props/, not the cwd
    return build_config(model, "ml-100k", config_file_list=[f"presets/{preset}.yaml"],
                        config_dict={"state": "WARNING", **extra})


@pytest.mark.parametrize("model", ["SASRec", "FAERec_SASRec", "GRU4Rec", "FAERec_LRURec",
                                   "TADA_GRU4Rec"])  # causal
@pytest.mark.parametrize("preset,expected", [("paper", PAPER), ("reference", REFERENCE),
                                             ("tada", TADA)])
def test_preset_settings_reach_the_config(model, preset, expected, tmp_path, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING):
        config = config_for(model, preset, tmp_path, monkeypatch)
    assert {k: config[k] for k in expected} == expected
    assert config["train_neg_sample_args"]["sample_num"] == 1  # one negative per target
    assert "not a known parameter" not in caplog.text and "unknown" not in caplog.text.lower()
    with open(PRESETS / f"{preset}.yaml") as f:
        declared = yaml.safe_load(f)
    # every setting of the file takes effect (RecBole completes eval_args and the sampler's args)
    differ = {k for k, v in declared.items() if config[k] != v}
    assert differ <= {"eval_args", "train_neg_sample_args"}, differ
    for k, v in declared["train_neg_sample_args"].items():
        assert config["train_neg_sample_args"][k] == v
    if "eval_args" in declared:
        assert config["eval_args"]["split"] == declared["eval_args"]["split"]
        assert config["eval_args"]["order"] == declared["eval_args"]["order"]


def test_reference_preset_builds_the_authors_model(tmp_path, monkeypatch, cache):
    from recbole_faerec.model.loss import BCEOneNegativeLoss
    from recbole_faerec.quick_start import load_dataset
    from recbole_faerec.utils import get_model

    tiny = {**TINY_SASREC, "embedding_size": 8, "llm_emb_provider": "tfidf", "llm_emb_dimensions": 32,
            "eval_start_epoch": 0}
    for name in ("SASRec", "FAERec_SASRec"):
        config = config_for(name, "reference", tmp_path, monkeypatch, **tiny)
        _, train, _, _ = load_dataset(config)
        model = get_model(name)(config, train._dataset)
        assert isinstance(model.loss_fct, BCEOneNegativeLoss)
        assert model.trm_encoder.layer[0].feed_forward.dropout.p == 0.4
        assert model.train_positions == "all"
        users = train._dataset.inter_feat["user_id"]
        assert len(users) == len(users.unique())  # one training row per user, as theirs
    fused = model.item_embedding
    assert (fused.input_fusion, fused.train_fusion, fused.eval_fusion) == ("gate", "id", "layernorm")
    assert fused.norm is model.LayerNorm
    assert model.quirks == {"train_id_scores", "align_duplicates", "pca_with_padding", "input_branches"}
    assert model.padding_side == "left"


def test_a_missing_config_file_is_one_clear_line(tmp_path):
    proc = run_py([REPO / "run_recbole_faerec.py", "--model=SASRec", "--dataset=ml-100k",
                   "--config_files=presets/referenc.yaml"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "presets/referenc.yaml" in line and "presets/reference.yaml" in line
