"""run_hyper_faerec.py: RecBole's HyperTuning (hyperopt) over plugin models, on real ml-100k."""

import csv
import re

import pytest
import torch

from conftest import REPO, TINY_SASREC, run_py

ENTRY = REPO / "run_hyper_faerec.py"
# FAERec kept small (as in test_faerec_model.py), on the 199 ml-100k users with fewer than 30
# ratings (RecBole's own filter: 4.7k of the 100k interactions), in few large batches
TINY = {**TINY_SASREC, "embedding_size": 8, "state": "WARNING", "llm_emb_provider": "tfidf",
        "llm_emb_dimensions": 32, "align_max_items": 512, "user_inter_num_interval": "[0,30)"}


def tiny_args(**extra):
    return [f"--{k}={v}" for k, v in {**TINY, **extra}.items()]


def test_exhaustive_search_enumerates_the_grid_with_hyperopt_generator():
    """RecBole 1.2.1's exhaustive search seeds a RandomState; hyperopt >= 0.2.7 samples with
    Generator.integers. The plugin's exhaustive_search gives it a Generator for that call."""
    pytest.importorskip("hyperopt")
    from recbole.trainer import HyperTuning
    from recbole.trainer import hyper_tuning

    from recbole_faerec.quick_start.hyper import _hyperopt_uses_generator, exhaustive_search

    seen = []

    def objective(params, config_file_list):
        seen.append((params["a"], params["b"]))
        return {"model": "none", "best_valid_score": params["a"] * 10 + params["b"],
                "valid_score_bigger": True, "best_valid_result": {}, "test_result": {}}

    space = {"choice": {"a": [1, 2, 3], "b": [0.5, 0.25]}}
    if _hyperopt_uses_generator():
        with pytest.raises(AttributeError, match="integers"):
            HyperTuning(objective, params_dict=space, algo="exhaustive").run()
    seen.clear()
    tuner = HyperTuning(objective, params_dict=space, algo="exhaustive")
    tuner.algo = exhaustive_search
    tuner.run()
    assert tuner.max_evals == 6 and sorted(seen) == [(a, b) for a in (1, 2, 3) for b in (0.25, 0.5)]
    assert tuner.best_params == {"a": 3, "b": 0.5}
    # the stand-in numpy was only there during the search
    import numpy

    assert hyper_tuning.np is numpy


def test_two_point_grid_on_ml100k(cache, tmp_path):
    (tmp_path / "grid.hyper").write_text("# alpha, two values\nalign_weight choice [0.1,0.3]\n")
    proc = run_py([ENTRY, "--model=FAERec_SASRec", "--dataset=ml-100k", "--params_file=grid.hyper",
                   "--output_file=out/tune.result", *tiny_args(), "--train_batch_size", "4096"],
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "out" / "tune.csv", newline="") as fp:
        rows = list(csv.DictReader(fp))
    assert len(rows) == 2 and sorted(float(r["align_weight"]) for r in rows) == [0.1, 0.3]
    for row in rows:
        # each trial trained with its own value (and the fixed '--key value'), as its checkpoint says
        checkpoint = torch.load(tmp_path / row["model_file"], weights_only=False)
        assert checkpoint["config"]["align_weight"] == float(row["align_weight"])
        assert checkpoint["config"]["train_batch_size"] == 4096
        assert checkpoint["config"]["model"] == "FAERec_SASRec"
        assert float(row["best_valid_score"]) == float(row["valid_ndcg@10"])  # valid_metric
        assert 0 <= float(row["test_hit@10"]) <= float(row["test_hit@20"]) <= 1
        assert "test_tailhit@10" in row and row["epochs"] == "1" and row["best_epoch"] == "1"
    best = max(rows, key=lambda r: float(r["best_valid_score"]))  # first on a tie, as the runner
    assert [r["best"] for r in rows] == ["yes" if r is best else "" for r in rows]
    printed = re.search(r"best params:\s+\{'align_weight': ([0-9.]+)\}", proc.stdout)
    assert printed and float(printed.group(1)) == float(best["align_weight"])
    md = (tmp_path / "out" / "tune.md").read_text()
    assert len([line for line in md.splitlines() if re.match(r"\| \**\d", line)]) == 2
    assert f"align_weight={best['align_weight']}" in md
    recbole_text = (tmp_path / "out" / "tune.result").read_text()  # RecBole's export_result
    assert "align_weight:0.1\n" in recbole_text and "align_weight:0.3\n" in recbole_text


def test_missing_hyperopt_is_one_clear_line(tmp_path):
    code = ("import runpy, sys; sys.modules['hyperopt'] = None; "
            f"sys.argv = [{str(ENTRY)!r}, '--model=FAERec_SASRec', '--params_file=x.hyper']; "
            f"runpy.run_path({str(ENTRY)!r}, run_name='__main__')")
    proc = run_py(["-c", code], cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install -e ".[tune]"' in lines[0], proc.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("content, args, message", [
    ("align_weight choice 0.1,0.3\n", [], r"grid.hyper:1: 'align_weight choice' needs a non-empty"),
    ("# ok\nalign_weight uniform 0.1\n", ["--algo=random"], r"grid.hyper:2: .*needs 2 comma"),
    ("align_weight sometimes [1]\n", [], r"grid.hyper:1: expected 'name choice"),
    ("align_wieght choice [0.1,0.3]\n", [], r"grid.hyper: 'align_wieght' \(close: align_weight\) is "
                                            r"not a parameter of FAERec_SASRec on ml-100k"),
    ("align_weight uniform 0.1,0.3\n", [], r"exhaustive search enumerates 'choice' lines only; "
                                           r"align_weight \(uniform\)"),
    ("align_weight choice [0.1,0.3]\n", ["--align_weight=0.2"], r"align_weight is tuned, and also "
                                                                r"fixed"),
    ("item_tau choice [0.1]\n", ["--nproc=2"], r"drop --nproc"),
])
def test_bad_search_settings_are_one_line_and_exit_2(content, args, message, tmp_path, monkeypatch,
                                                     capsys):
    pytest.importorskip("hyperopt")
    from recbole_faerec.quick_start.hyper import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.hyper").write_text(content)
    assert main(["--model=FAERec_SASRec", "--params_file=grid.hyper", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
    assert not (tmp_path / "saved").exists()


def test_params_file_of_the_plugin_reads_and_names_faerec_parameters():
    pytest.importorskip("hyperopt")
    from recbole_faerec.quick_start import build_config
    from recbole_faerec.quick_start.hyper import _check_params, read_params_file

    path = REPO / "props" / "hyper" / "faerec.hyper"
    params = read_params_file(str(path))
    assert set(params) == {"choice"}
    assert set(params["choice"]) == {"align_weight", "item_tau", "bt_lambda", "w_min", "period"}
    config = build_config("FAERec_SASRec", "ml-100k")
    for name, values in params["choice"].items():
        assert config[name] in values, name  # the defaults are on the grid
    _check_params(params, str(path), config, "FAERec_SASRec", "ml-100k", "exhaustive", {})
