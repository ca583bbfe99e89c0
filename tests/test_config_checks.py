"""Settings that would silently not take effect: the '--key value' command-line form, misspelt
config keys, a dataset given as a path; and model-name suggestions with the real class names."""

import logging
import re

import pytest

from conftest import REPO, TINY_SASREC, run_py

ENTRY = REPO / "run_recbole_faerec.py"
UNKNOWN = "is not a parameter of RecBole or recbole_faerec"


def test_space_form_and_negative_numbers_reach_recbole(tmp_path):
    """'--key value' (argparse's form, in --help) works for the runner's options and for RecBole's
    parameters, negative numbers included; RecBole lists no consumed option as unused, and the
    plugin's usual settings raise no unknown-key warning."""
    args = ["--model", "SASRec", "--dataset", "ml-100k", "--stopping_step", "-1",
            "--learning_rate=0.002"]
    for key, value in TINY_SASREC.items():
        args += [f"--{key}", str(value)]
    proc = run_py([ENTRY, *args], cwd=tmp_path, timeout=300)  # 300 epochs without the fix
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "will not be used" not in output, output[-3000:]
    assert UNKNOWN not in output, output[-3000:]
    (log,) = (tmp_path / "log" / "SASRec").glob("*.log")
    text = log.read_text()
    for key, value in {"epochs": 1, "stopping_step": -1, "learning_rate": 0.002,
                       "MAX_ITEM_LIST_LENGTH": 5, "hidden_size": 8}.items():
        assert re.search(rf"^{key} = {value}$", text, re.M), key
    assert "epoch 0 training" in text and "epoch 1 training" not in text


def test_recbole_args_joins_the_space_form():
    from recbole_faerec.quick_start.cli import recbole_args

    assert recbole_args(["--epochs", "1", "--weight_decay", "-1e-4", "--seed=-3", "--x", "-.5",
                         "--eval_args", "{'mode': 'full'}", "stray"]) == [
        "--epochs=1", "--weight_decay=-1e-4", "--seed=-3", "--x=-.5",
        "--eval_args={'mode': 'full'}", "stray"]


@pytest.mark.parametrize("argv", [["--epochs"], ["--epochs", "--learning_rate=0.1"],
                                  ["--show_progress", "-x"]])
def test_option_without_value_is_an_error(argv, capsys):
    from recbole_faerec.quick_start.cli import main

    # checked before anything runs (without the check: a training of 300 epochs, or here, with
    # a dataset that does not exist, another error)
    assert main(["--model=SASRec", "--dataset=no-such-dataset", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {argv[0]} has no value: write {argv[0]}=VALUE")


def test_misspelt_keys_warn_with_the_closest_known_key(tmp_path, monkeypatch, caplog):
    from recbole_faerec.quick_start import build_config

    config_file = tmp_path / "my.yaml"
    config_file.write_text("item_tau: 0.05\nitme_tau: 0.1\n")
    monkeypatch.setattr("sys.argv", ["run_recbole_faerec.py", "--use_gaet=False"])
    with caplog.at_level(logging.WARNING):
        config = build_config("FAERec_SASRec", "ml-100k", config_file_list=[str(config_file)],
                              config_dict={"align_wieght": 0.5, "align_weight": 0.2,
                                           "w_min": 0.8})
    warned = [r.getMessage() for r in caplog.records if UNKNOWN in r.getMessage()]
    assert len(warned) == 3, warned
    by_key = {re.match(r"config key '(\w+)'", m).group(1): m for m in warned}
    assert "(config_dict)" in by_key["align_wieght"]
    assert by_key["align_wieght"].endswith("Did you mean 'align_weight'?")
    assert f"({config_file}, line 2)" in by_key["itme_tau"]
    assert by_key["itme_tau"].endswith("Did you mean 'item_tau'?")
    assert "(command line)" in by_key["use_gaet"]
    assert by_key["use_gaet"].endswith("Did you mean 'use_gate'?")
    assert config["align_weight"] == 0.2 and config["w_min"] == 0.8

    caplog.clear()  # the same Config again: once per process
    with caplog.at_level(logging.WARNING):
        build_config("FAERec_SASRec", "ml-100k", config_dict={"align_wieght": 0.5})
    assert not [r for r in caplog.records if UNKNOWN in r.getMessage()]


def test_keys_the_code_reads_but_no_yaml_declares_are_known():
    from recbole_faerec.config.configurator import known_config_keys

    known = known_config_keys()
    # RecBole's Config (DDP, benchmark files), the plugin's readers (_get(config, ...))
    for key in ("benchmark_filename", "local_rank", "nproc", "world_size", "ip", "port", "offset",
                "llm_emb_dimensions", "llm_emb_base_url", "ddp_backend", "valid_neg_sample_args"):
        assert key in known, key


def test_dataset_given_as_a_path_is_an_error(tmp_path, monkeypatch, capsys):
    from recbole_faerec.quick_start.cli import main

    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert main(["--model=SASRec", "--dataset", "../../x", "--epochs=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: dataset '../../x' is a path, not a dataset name: give the folder that "
                   "holds the dataset's folder as --data_path (data_path) and the dataset's name "
                   "as --dataset (here --data_path=../.. --dataset=x)"]
    assert not list(tmp_path.rglob("*.log"))  # nothing written, inside or outside log/


def test_model_suggestions_are_class_names():
    from recbole_faerec.utils import ModelNotFoundError, get_model
    from recbole_faerec.utils.utils import suggest_model_names

    assert suggest_model_names("faerec_sasrc")[0] == "FAERec_SASRec"
    assert suggest_model_names("lightgcm")[0] == "LightGCN"
    assert "XGBoost" in suggest_model_names("xgbost")  # no import of the optional xgboost
    with pytest.raises(ModelNotFoundError, match=r"Close names: SASRec, SASRecCPR, SASRecF"):
        get_model("SASRecc")


@pytest.mark.parametrize("model,setting", [
    ("LLMInit_SASRec", "--llm_init_scale=big"),
    ("RLMRecGen_SASRec", "--rlmrec_gen_context=user"),
    ("RLMRecGen_SASRec", "--gen_mask_ratio=1.5"),
    ("FAERec_SASRec", "--fusion_without_gate=max"),
    ("FAERec_SASRec", "--inference_fusion=sum"),
    ("LLMESR_SASRec", "--llmesr_heads=3"),
    ("gMLP", "--inner_size=7"),
    ("SASRec", "--loss_type=bce"),
    ("FAERec_GRU4Rec", "--loss_type=InfoNCE"),
])
def test_a_method_setting_that_cannot_take_effect_is_one_line(model, setting, cache, tmp_path,
                                                              monkeypatch, capsys):
    """Unknown or out-of-range values of a model's own settings stop the entry point with one line
    that names the setting and exit status 2 (before: a traceback and status 1)."""
    from recbole_faerec.quick_start.cli import main

    monkeypatch.chdir(tmp_path)
    key, value = setting[2:].split("=")
    tiny = [f"--{k}={v}" for k, v in {**TINY_SASREC, key: value}.items()]
    assert main([f"--model={model}", "--dataset=ml-100k", *tiny, "--llm_emb_provider=tfidf",
                 "--llm_emb_dimensions=16", "--state=WARNING"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and err.count("error: ") == 1, err[-3000:]
    assert last.startswith("error: ") and key in last, last
