"""Variants in the comparison runner (``Model[key=value;...]``, e.g. the paper's ablations) and
FAERec's two readings of "w/o AGF"."""

import json
import os

import pytest
import torch
from conftest import TINY_SASREC

from recbole_faerec.quick_start.cli import main
from recbole_faerec.quick_start.compare import (
    ModelSpecError,
    model_pairs,
    parse_model_spec,
    split_models,
)

SETTINGS = {**TINY_SASREC, "user_inter_num_interval": "[0,30]", "state": "WARNING"}


def test_model_entries_and_variants_are_read():
    assert split_models("SASRec,FAERec_SASRec[item_align=False;w_min=0.5],GRU4Rec") == [
        "SASRec", "FAERec_SASRec[item_align=False;w_min=0.5]", "GRU4Rec"]
    assert split_models("A[x=1,y=[2, 3]], B") == ["A[x=1,y=[2, 3]]", "B"]
    assert parse_model_spec("SASRec") == ("SASRec", {})
    assert parse_model_spec("FAERec_SASRec[item_align=False;w_min=0.5]") == (
        "FAERec_SASRec", {"item_align": False, "w_min": 0.5})
    assert parse_model_spec("X[a=1,b=[2, 3],c=mean]") == ("X", {"a": 1, "b": [2, 3], "c": "mean"})
    for bad in ("X[", "X[a]", "[a=1]", "X[a=1;a=2]", "X[]", "X[a=1]y"):
        with pytest.raises(ModelSpecError):
            parse_model_spec(bad)
    names = ["SASRec", "FAERec_SASRec", "FAERec_SASRec[item_align=False]", "SASRec[n_layers=2]"]
    assert model_pairs(names) == [("SASRec", "FAERec_SASRec"),
                                  ("SASRec", "FAERec_SASRec[item_align=False]"),
                                  ("FAERec_SASRec", "FAERec_SASRec[item_align=False]"),
                                  ("SASRec", "SASRec[n_layers=2]")]
    # a variant with the backbone alone (its model not in the list) is still tested against it
    assert model_pairs(["SASRec", "FAERec_SASRec[item_tau=0.1]", "FAERec_GRU4Rec[w_min=0.5]"]) == \
        [("SASRec", "FAERec_SASRec[item_tau=0.1]")]
    # without the backbone itself, its variants stand in (each model under its own budget)
    assert model_pairs(["FAERec_SASRec[epochs=33]", "SASRec[epochs=50]", "GRU4Rec[epochs=9]"]) == \
        [("SASRec[epochs=50]", "FAERec_SASRec[epochs=33]")]
    assert model_pairs(["SASRec", "SASRec[epochs=50]", "FAERec_SASRec"]) == [
        ("SASRec", "SASRec[epochs=50]"), ("SASRec", "FAERec_SASRec")]  # the backbone itself only
    combined = ["SASRec", "TADA_SASRec", "FAERec_SASRec", "FAERec_TADA_SASRec", "FAERec_GRU4Rec"]
    assert model_pairs(combined) == [("SASRec", "TADA_SASRec"), ("SASRec", "FAERec_SASRec"),
                                     ("SASRec", "FAERec_TADA_SASRec"),
                                     ("TADA_SASRec", "FAERec_TADA_SASRec"),
                                     ("FAERec_SASRec", "FAERec_TADA_SASRec")]


def test_a_variant_runs_with_its_own_settings(tmp_path):
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        status = main(["--model=SASRec,SASRec[hidden_dropout_prob=0.0;attn_dropout_prob=0.0]",
                       "--dataset=ml-100k", "--out_dir=out", "--tsne_items=0",
                       *[f"--{k}={v}" for k, v in SETTINGS.items()]])
    finally:
        os.chdir(here)
    assert status == 0
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    base, variant = report["runs"]
    assert variant["model"] == "SASRec[hidden_dropout_prob=0.0;attn_dropout_prob=0.0]"
    assert variant["variant"] == {"hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0}
    assert base["variant"] == {}
    # the settings took effect: the same seed, another training (RecBole runs are reproducible)
    assert variant["test"] != base["test"]
    tests = report["significance"]
    assert [(t["base"], t["model"]) for t in tests] == [("SASRec", variant["model"])]
    text = (tmp_path / "out" / "results.md").read_text()
    assert "| SASRec[hidden_dropout_prob=0.0;attn_dropout_prob=0.0] |" in text
    # the training protocol is stated, as RecBole resolved it, with what the variant changed
    training = next(line for line in text.splitlines() if line.startswith("Training, as RecBole"))
    assert f"MAX_ITEM_LIST_LENGTH {SETTINGS['MAX_ITEM_LIST_LENGTH']}," in training
    assert "loss_type CE," in training and "train_positions last," in training
    assert "hidden_dropout_prob 0.5 (0.0 for SASRec[hidden_dropout_prob=0.0;attn_dropout_prob=0.0])" in training


def test_a_malformed_variant_stops_before_training(tmp_path, capsys):
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        status = main(["--model=SASRec,SASRec[hidden_dropout_prob]", "--dataset=ml-100k"])
    finally:
        os.chdir(here)
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SASRec[hidden_dropout_prob]" in err[0]
    assert not (tmp_path / "saved").exists()


def test_a_variant_setting_the_command_line_also_sets_stops_before_training(tmp_path, capsys):
    """RecBole's Config puts the command line above every other source, a variant's settings
    included: ``--epochs=2`` with ``SASRec[epochs=3]`` would train the variant 2 epochs under its
    ``epochs=3`` label. One line, exit 2, nothing trained; the same variant without ``--epochs``
    passes the check."""
    from recbole_faerec.quick_start.compare import _check_variants_take_effect

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        status = main(["--model=SASRec,SASRec[epochs=3]", "--dataset=ml-100k", "--epochs=2",
                       "--out_dir=out"])
    finally:
        os.chdir(here)
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SASRec[epochs=3]" in err[0] and "epochs=3 would run as 2" in err[0]
    assert not (tmp_path / "saved").exists() and not (tmp_path / "out" / "results.json").exists()
    _check_variants_take_effect(["SASRec", "SASRec[epochs=3]"], "ml-100k", None, {"epochs": 2})


def test_without_gate_reads_mean_or_id(cache):
    from recbole.utils import init_seed

    from recbole_faerec.quick_start import build_config, load_dataset
    from recbole_faerec.utils import get_model

    tiny = {**TINY_SASREC, "embedding_size": 8, "state": "WARNING", "llm_emb_provider": "tfidf",
            "llm_emb_dimensions": 32, "use_gate": False}
    fused = {}
    for how in ("mean", "id"):
        config = build_config("FAERec_SASRec", "ml-100k", config_dict={**tiny, "fusion_without_gate": how})
        init_seed(config["seed"], config["reproducibility"])
        _, train, _, _ = load_dataset(config)
        model = get_model("FAERec_SASRec")(config, train._dataset)
        table = model.item_embedding
        assert table.gate is None
        assert (table.input_fusion, table.train_fusion, table.eval_fusion) == (how, how, "mean")
        model.eval()
        seq = next(iter(train))["item_id_list"]
        with torch.no_grad():
            e, p = table.id_embedding(seq), table.llm_view(seq)
            # 'id' is the backbone's own lookup (its padding row as the backbone left it)
            expected = e if how == "id" else (0.5 * (e + p)).masked_fill((seq == 0).unsqueeze(-1), 0.0)
            torch.testing.assert_close(table(seq), expected)
        fused[how] = table
    with pytest.raises(ValueError, match="fusion_without_gate"):
        config = build_config("FAERec_SASRec", "ml-100k", config_dict={**tiny, "fusion_without_gate": "max"})
        get_model("FAERec_SASRec")(config, train._dataset)
