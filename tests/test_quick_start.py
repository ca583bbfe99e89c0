"""The entry point and Python API: real (short) training + full-sort evaluation on real data."""

import json
import re

import pytest

from conftest import REPO, TINY_SASREC, run_py

ENTRY = REPO / "run_recbole_faerec.py"


def tiny_args(**extra):
    settings = {**TINY_SASREC, **extra}
    return [f"--{k}={v}" for k, v in settings.items()]


def parse_result(output, label):
    match = re.search(label + r"\s*: (\{.*\})", output)
    assert match, output[-3000:]
    return json.loads(match.group(1).replace("'", '"'))


def test_cli_sasrec_on_embedded_ml100k(tmp_path):
    proc = run_py([ENTRY, "--model=SASRec", "--dataset=ml-100k", *tiny_args()], cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    test = parse_result(out, "test result")
    valid = parse_result(out, "best valid ")
    # the plugin's default metrics: RecBole's Hit/NDCG plus the tail-aware ones, at 10 and 20
    assert set(test) == {f"{m}@{k}" for m in ("hit", "ndcg", "tailhit", "tailndcg", "headhit",
                                              "headndcg", "coverage", "tailcoverage") for k in (10, 20)}
    assert 0 < test["hit@10"] <= test["hit@20"] <= 1 and 0 < test["ndcg@10"] <= test["hit@10"]
    assert min(test["tailhit@10"], test["headhit@10"]) <= test["hit@10"] <= max(test["tailhit@10"], test["headhit@10"])
    assert 0 < valid["ndcg@10"]
    # The bundled copy, its item text, a checkpoint and a log file, as with RecBole's run_recbole.py.
    assert "dataset_example/ml-100k" in out
    assert "movie_title" in out and "release_year" in out and "class" in out
    # the best checkpoint, and the last epoch's for --resume (tests/test_resume.py)
    assert len(list((tmp_path / "saved").glob("SASRec-*.pth"))) == 2
    assert (tmp_path / "saved" / "SASRec-ml-100k-last.pth").is_file()
    assert len(list((tmp_path / "log" / "SASRec").glob("*.log"))) == 1
    assert "Loading model structure and parameters from" in out


def test_cli_gru4rec_on_amazon_beauty(amazon_beauty, tmp_path):
    # BPR with one sampled negative: a softmax over the 12,101 items for each of the ~133k training
    # rows would take most of this test's time (CE on amazon-beauty: test_faerec_model.py)
    proc = run_py([ENTRY, "--model=GRU4Rec", "--dataset=amazon-beauty", f"--data_path={amazon_beauty}",
                   "--embedding_size=8", "--hidden_size=8", "--MAX_ITEM_LIST_LENGTH=5", "--epochs=1",
                   "--loss_type=BPR", "--show_progress=False"], cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "The number of users: 22364" in out  # 22,363 users + [PAD]
    assert "The number of items: 12102" in out
    test = parse_result(out, "test result")
    assert 0 < test["hit@20"] and test["hit@10"] <= test["hit@20"]


def test_python_api_returns_plain_results_and_checkpoint(tmp_path, monkeypatch):
    from recbole_faerec.quick_start import run_recbole_faerec

    monkeypatch.chdir(tmp_path)
    result = run_recbole_faerec(model="SASRec", dataset="ml-100k",
                                config_dict={**TINY_SASREC, "state": "WARNING"})
    assert set(result) == {"best_valid_score", "valid_score_bigger", "best_valid_result",
                           "test_result", "model_file", "train_seconds", "valid_scores",
                           "valid_epochs", "model"}
    assert result["model"] == "SASRec"  # the name, which RecBole's HyperTuning reads
    assert len(result["train_seconds"]) == 1 and result["train_seconds"][0] > 0
    assert result["valid_scores"] == [pytest.approx(result["best_valid_score"])]
    assert result["valid_epochs"] == [0]
    assert all(type(v) is float for v in result["test_result"].values())
    assert result["valid_score_bigger"] is True
    assert result["best_valid_score"] == pytest.approx(result["best_valid_result"]["ndcg@10"])
    assert (tmp_path / result["model_file"]).is_file()


def test_config_priority_and_defaults(tmp_path):
    from recbole_faerec.quick_start import build_config

    yaml_file = tmp_path / "mine.yaml"
    yaml_file.write_text("topk: [5]\nlearning_rate: 0.01\n")
    config = build_config("SASRec", "ml-100k", config_file_list=[str(yaml_file)],
                          config_dict={"learning_rate": 0.005})
    # RecBole's own model YAML, the plugin's props, then the user's file and dict.
    assert config["n_heads"] == 2 and config["hidden_size"] == 64
    assert config["metrics"][:2] == ["Hit", "NDCG"] and "TailNDCG" in config["metrics"]
    assert config["valid_metric"] == "NDCG@10" and config["head_ratio"] == 0.2
    assert config["topk"] == [5]
    assert config["learning_rate"] == 0.005
    assert config["load_col"]["item"] == ["item_id", "movie_title", "release_year", "class"]
    assert config["eval_args"]["order"] == "TO" and config["eval_args"]["mode"]["test"] == "full"
    # CE needs no negatives; RecBole 1.2.1 would refuse its own default here.
    assert config["train_neg_sample_args"]["distribution"] == "none"
    # BPR keeps RecBole's default of one uniform negative; explicit settings are kept as given.
    bpr = build_config("SASRec", "ml-100k", config_dict={"loss_type": "BPR"})
    assert bpr["train_neg_sample_args"]["distribution"] == "uniform"
    bpr = build_config("SASRec", "ml-100k", config_dict={
        "loss_type": "BPR", "train_neg_sample_args": {"distribution": "popularity", "sample_num": 2}})
    assert bpr["train_neg_sample_args"]["sample_num"] == 2


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec", "NARM", "LightSANs", "BERT4Rec", "Caser",
                                   "NextItNet", "STAMP", "CORE", "FEARec", "SRGNN", "GCSAN"])
def test_every_sequential_model_resolves(model):
    from recbole.model.abstract_recommender import SequentialRecommender

    from recbole_faerec.utils import get_model

    cls = get_model(model)
    assert cls.__name__ == model and issubclass(cls, SequentialRecommender)


@pytest.mark.parametrize("model", ["Pop", "BPR", "FM"])
def test_non_sequential_models_keep_recboles_defaults(model, tmp_path):
    """General and context-aware models run through the entry point with RecBole's own settings."""
    proc = run_py([ENTRY, f"--model={model}", "--dataset=ml-100k", "--epochs=1", "--embedding_size=8",
                   "--show_progress=False"], cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    test = parse_result(out, "test result")
    # RecBole's own metrics for each kind: top-k ranking for general models, AUC for CTR models
    expected = "auc" if model == "FM" else "recall@10"
    assert expected in test and 0 < test[expected] <= 1
