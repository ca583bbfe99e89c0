"""The comparison runner: several models, one config, a table and the two plots."""

import csv
import json
import shutil

import pytest
from conftest import REPO, TINY_SASREC, run_py

from recbole_faerec.quick_start.compare import merge_comparisons

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    work = tmp_path_factory.mktemp("compare")
    args = [f"--{k}={v}" for k, v in {**TINY_SASREC, "embedding_size": 8}.items()]
    proc = run_py([REPO / "run_recbole_faerec.py", "--model=SASRec,FAERec_SASRec", "--dataset=ml-100k",
                   "--out_dir=out", "--tsne_items=120", *args], cwd=work, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work / "out"


def test_runner_writes_table_csv_and_plots(comparison):
    md = (comparison / "results.md").read_text()
    assert "943 test users" in md and "head = top 0.2 of 1682 items = 336 items" in md
    assert ("Full ranking with the users' history items ranked (RecBole's protocol); 0 test targets "
            "repeat an item of their input sequence.") in md
    for model in ("SASRec", "FAERec_SASRec"):
        assert f"| {model} |" in md and f"| {model} NDCG@10 |" in md
    with open(comparison / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["SASRec", "FAERec_SASRec"]
    for row in rows:
        for key in ("hit@10", "ndcg@20", "tailndcg@10", "headhit@10", "coverage@10",
                    "tailcoverage@10", "groupndcg_50+@10", "train_s_per_epoch"):
            assert row[key] != "", key
        assert row["epochs"] == "1" and float(row["train_s_per_epoch"]) > 0
        assert 0 < float(row["coverage@10"]) <= 1
    report = json.loads((comparison / "results.json").read_text())
    assert report["missing_runs"] == []
    sasrec, faerec = (run["config"] for run in report["runs"])  # as RecBole resolved them
    assert faerec["item_tau"] == 0.1 and "item_tau" not in sasrec and faerec["n_layers"] == 1
    assert "seed" not in faerec and "device" not in faerec  # where it ran is not compared
    assert report["protocol"]["group_test_rows"] == [11, 19, 57, 129, 727]  # 943 users in all
    assert report["settings"]["MAX_ITEM_LIST_LENGTH"] == "5"
    assert len(report["tsne_items"]) == 120
    for image in ("groups.png", "tsne.png"):
        data = (comparison / image).read_bytes()
        assert data[:8] == PNG and len(data) > 10_000, image


def test_one_model_with_out_dir_is_a_comparison_of_one(comparison, tmp_path):
    """``--model=SASRec --seed=7 --out_dir=D`` writes D (its run, per-user outcomes) instead of
    ignoring --out_dir, and D merges with a comparison that ran other seeds."""
    args = [f"--{k}={v}" for k, v in {**TINY_SASREC, "embedding_size": 8}.items()]
    proc = run_py([REPO / "run_recbole_faerec.py", "--model=SASRec", "--dataset=ml-100k",
                   "--seed=7", "--out_dir=one", "--tsne_items=0", *args], cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "one" / "results.json").read_text())
    assert [(r["model"], r["seed"]) for r in report["runs"]] == [("SASRec", 7)]
    assert (tmp_path / "one" / "per_user.npz").exists() and "| SASRec |" in (
        tmp_path / "one" / "results.md").read_text()
    merged = merge_comparisons([comparison, tmp_path / "one"], tmp_path / "merged", plots=False,
                               models=["SASRec"])
    assert [r["seed"] for r in merged["runs"]] == [2020, 7]


def test_merge_refuses_other_settings(comparison, tmp_path, caplog):
    merged = merge_comparisons([comparison], tmp_path / "merged")
    assert [r["model"] for r in merged["runs"]] == ["SASRec", "FAERec_SASRec"]
    assert (tmp_path / "merged" / "tsne.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="SASRec with seed 2020 is already in an earlier part"):
        merge_comparisons([comparison, comparison], tmp_path / "twice")
    other = tmp_path / "other"
    shutil.copytree(comparison, other)
    report = json.loads((other / "results.json").read_text())
    report["settings"]["MAX_ITEM_LIST_LENGTH"] = "50"
    (other / "results.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="another dataset, protocol, settings or config file"):
        merge_comparisons([comparison, other], tmp_path / "bad")
    # the same command line with another --config_files (a preset): its content is compared
    assert json.loads((comparison / "results.json").read_text())["config_files"] == []
    preset = tmp_path / "preset"
    shutil.copytree(comparison, preset)
    report = json.loads((preset / "results.json").read_text())
    for run in report["runs"]:
        run["seed"] = 2021
    report["protocol"]["seed"], report["protocol"]["seeds"] = 2021, [2021]
    report["config_files"] = [{"path": "presets/reference.yaml", "sha256": "0" * 64}]
    (preset / "results.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="another dataset, protocol, settings or config file"):
        merge_comparisons([comparison, preset], tmp_path / "bad_preset")
    del report["config_files"]  # written before config files were recorded: not compared
    (preset / "results.json").write_text(json.dumps(report))
    merge_comparisons([comparison, preset], tmp_path / "old_part", plots=False)
    # the same command line, but a YAML default changed between the runs
    report["runs"][1]["config"]["item_tau"] = 0.05
    (preset / "results.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match=r"FAERec_SASRec ran with other settings than in .*"
                                         r"\(item_tau 0.1 vs 0.05; a changed default\?\)"):
        merge_comparisons([comparison, preset], tmp_path / "bad_default", plots=False)
    merged = merge_comparisons([comparison, preset], tmp_path / "sasrec_only", plots=False,
                               models=["SASRec"])  # only the rows asked for are compared
    assert [r["seed"] for r in merged["runs"]] == [2020, 2021]
    # a setting the plugin added between the two runs (one run recorded it): warned, merged
    report["runs"][1]["config"]["item_tau"] = 0.1
    report["runs"][1]["config"]["a_new_option"] = "off"
    (preset / "results.json").write_text(json.dumps(report))
    with caplog.at_level("WARNING"):
        merge_comparisons([comparison, preset], tmp_path / "new_key", plots=False)
    assert "recorded by some runs and not by others" in caplog.text
    assert "a_new_option (FAERec_SASRec)" in caplog.text
    caplog.clear()
    for run in report["runs"]:  # written before runs recorded their settings: warned, merged
        del run["config"]
    (preset / "results.json").write_text(json.dumps(report))
    with caplog.at_level("WARNING"):
        merge_comparisons([comparison, preset], tmp_path / "older", plots=False)
    assert f"{preset} was written before runs recorded their resolved settings" in caplog.text


def _relabelled(comparison, where, seed, items):
    """A copy of the comparison as if run with ``seed`` first, its map drawn on ``items``."""
    shutil.copytree(comparison, where)
    report = json.loads((where / "results.json").read_text())
    for run in report["runs"]:
        run["seed"] = seed
    report["protocol"]["seed"], report["protocol"]["seeds"] = seed, [seed]
    report["tsne_items"] = items
    (where / "results.json").write_text(json.dumps(report))
    return where


def test_merge_draws_the_map_of_the_first_part_that_kept_views(comparison, tmp_path, caplog):
    """A first part without views.npz (not kept) does not leave the merge without a map: it is
    drawn on the items of the part that kept them; a model without a panel is said."""
    import numpy as np

    items = json.loads((comparison / "results.json").read_text())["tsne_items"]
    first = _relabelled(comparison, tmp_path / "first", 2021, items[::-1])
    (first / "views.npz").unlink()  # per_user.npz keeps the tail mask
    with caplog.at_level("WARNING"):
        merged = merge_comparisons([first, comparison], tmp_path / "merged")
    assert merged["tsne_items"] == items and "t-SNE" not in caplog.text
    assert (tmp_path / "merged" / "tsne.png").read_bytes()[:8] == PNG
    with np.load(tmp_path / "merged" / "views.npz") as views:
        drawn = sorted(k for k in views.files if "/" in k)
    runs = merged["runs"]  # the views of the seed-2020 runs, indexed as in the merged runs
    assert drawn == sorted(f"{i}/{v}" for i, r in enumerate(runs) if r["seed"] == 2020
                           for v in (["ID"] if r["model"] == "SASRec" else ["ID", "LLM"]))
    # FAERec's views lost: SASRec keeps its panel, FAERec's absence is one warning line
    no_faerec = tmp_path / "no_faerec"
    shutil.copytree(comparison, no_faerec)
    with np.load(no_faerec / "views.npz") as views:
        kept = {k: views[k] for k in views.files if not k.startswith("1/")}
    np.savez_compressed(no_faerec / "views.npz", **kept)
    caplog.clear()
    with caplog.at_level("WARNING"):
        merge_comparisons([first, no_faerec], tmp_path / "one_panel")
    assert "the t-SNE map has no panel for FAERec_SASRec: no part kept their views" in caplog.text
    assert (tmp_path / "one_panel" / "tsne.png").exists()


def test_merge_picks_models_and_reads_one_data_folder_two_ways(comparison, tmp_path):
    """--merge through the entry point: --model keeps those rows in that order; parts whose
    data_path differs only by a trailing slash name the same folder; parts without views.npz keep
    their paired tail tests; bad input is one line, exit 2."""
    parts = []
    for seed, data_path in ((2020, "dataset"), (2021, "dataset/")):
        part = tmp_path / f"s{seed}"
        shutil.copytree(comparison, part)
        report = json.loads((part / "results.json").read_text())
        for run in report["runs"]:
            run["seed"] = seed
        report["protocol"]["seed"], report["protocol"]["seeds"] = seed, [seed]
        report["settings"]["data_path"] = data_path
        (part / "results.json").write_text(json.dumps(report))
        (part / "views.npz").unlink()  # often not kept (large): per_user.npz holds the tail mask
        parts.append(str(part))
    proc = run_py([REPO / "run_recbole_faerec.py", f"--merge={','.join(parts)}",
                   "--model=FAERec_SASRec,SASRec", "--out_dir=merged"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert [(r["model"], r["seed"]) for r in merged["runs"]] == [
        ("FAERec_SASRec", 2020), ("FAERec_SASRec", 2021), ("SASRec", 2020), ("SASRec", 2021)]
    assert merged["protocol"]["seeds"] == [2020, 2021]
    (test,) = merged["significance"]
    assert test["seeds"] == [2020, 2021] and test["tail"]["n_users"] > 0
    proc = run_py([REPO / "run_recbole_faerec.py", f"--merge={parts[0]}", "--model=GRU4Rec",
                   "--out_dir=bad"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        "error: merge: no part holds GRU4Rec")
    proc = run_py([REPO / "run_recbole_faerec.py", f"--merge={tmp_path / 'nothing'}",
                   "--out_dir=bad"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "no results.json in" in proc.stderr


def test_merge_reports_the_tested_epoch_of_older_results(comparison, tmp_path):
    """Results written before the best epoch followed RecBole's tie rule (an older results.json:
    no ``valid_epochs``, ``best_epoch`` the first best) are read with the epoch RecBole tested."""
    old = tmp_path / "old"
    shutil.copytree(comparison, old)
    report = json.loads((old / "results.json").read_text())
    assert report["runs"][0]["valid_epochs"] == [0] and report["runs"][0]["valid_score_bigger"]
    for run in report["runs"]:
        run["valid_curve"] = [0.01, 0.03, 0.02, 0.03, 0.01]
        run["best_epoch"], run["epochs"] = 1, 5
        del run["valid_epochs"], run["valid_score_bigger"]
    (old / "results.json").write_text(json.dumps(report))
    merged = merge_comparisons([old], tmp_path / "merged", plots=False)
    assert [r["best_epoch"] for r in merged["runs"]] == [3, 3]
    assert "| 5 (3) |" in (tmp_path / "merged" / "results.md").read_text()


def test_unfinished_comparison_keeps_its_runs_for_merge(tmp_path, caplog):
    """A comparison stopped by an error (or a killed job) after its first run keeps that run as a
    mergeable part: results.json and per_user.npz after every run, the runs not done named in
    results.md and in the merge's warning."""
    args = [f"--{k}={v}" for k, v in {**TINY_SASREC, "embedding_size": 8}.items()]
    spec = "TADA_SASRec[tada_init_checkpoint=missing.pth]"
    proc = run_py([REPO / "run_recbole_faerec.py", f"--model=SASRec,{spec}", "--dataset=ml-100k",
                   "--out_dir=out", *args], cwd=tmp_path, timeout=900)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: tada_init_checkpoint missing.pth")
    out = tmp_path / "out"
    report = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in report["runs"]] == ["SASRec"]
    assert report["missing_runs"] == [{"model": spec, "seed": 2020}]
    assert (out / "per_user.npz").exists() and not (out / "groups.png").exists()
    assert (out / "results.md").read_text().startswith(
        f"**Unfinished comparison**: 1 of 2 runs done; not run: {spec} (seed 2020).")
    with caplog.at_level("WARNING"):
        merged = merge_comparisons([out], tmp_path / "merged", plots=False)
    assert [r["model"] for r in merged["runs"]] == ["SASRec"]
    assert merged["missing_runs"] == report["missing_runs"]
    assert f"{out} is an unfinished comparison" in caplog.text and spec in caplog.text
    merged = merge_comparisons([out], tmp_path / "only", plots=False, models=["SASRec"])
    assert merged["missing_runs"] == []  # the runs asked for are all there
    # the run finished in another part (here: once the checkpoint exists) completes the merge
    shutil.copy(next((tmp_path / "saved").glob("SASRec-*.pth")), tmp_path / "missing.pth")
    proc = run_py([REPO / "run_recbole_faerec.py", f"--model={spec}", "--dataset=ml-100k",
                   "--out_dir=rest", *args], cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    caplog.clear()
    with caplog.at_level("WARNING"):
        merged = merge_comparisons([out, tmp_path / "rest"], tmp_path / "whole", plots=False)
    assert [r["model"] for r in merged["runs"]] == ["SASRec", spec]
    assert merged["missing_runs"] == [] and "unfinished" not in caplog.text
    assert not (tmp_path / "whole" / "results.md").read_text().startswith("**Unfinished")


def test_merge_takes_parts_under_other_budgets_when_every_run_recorded_its_own(comparison, tmp_path,
                                                                               caplog):
    """A part run with another ``--epochs`` joins when each model has one budget: the merge warns
    and the training line states each model's. Without recorded settings, or with one model under
    two budgets, it is refused."""
    longer = tmp_path / "longer"
    shutil.copytree(comparison, longer)
    report = json.loads((longer / "results.json").read_text())
    report["settings"]["epochs"] = "2"
    for run in report["runs"]:
        run["model"] += "[epochs=2]"
        run["config"]["epochs"] = 2
    (longer / "results.json").write_text(json.dumps(report))
    with caplog.at_level("WARNING"):
        merged = merge_comparisons([comparison, longer], tmp_path / "merged", plots=False)
    assert "the parts ran under other budgets (epochs)" in caplog.text
    assert [r["model"] for r in merged["runs"]] == [
        "SASRec", "FAERec_SASRec", "SASRec[epochs=2]", "FAERec_SASRec[epochs=2]"]
    assert merged["settings"]["epochs"] == "per model"
    md = (tmp_path / "merged" / "results.md").read_text()
    assert "epochs 1 (2 for SASRec[epochs=2], FAERec_SASRec[epochs=2])" in md
    # one model under two budgets: refused by its recorded settings
    same_model = tmp_path / "same_model"
    shutil.copytree(longer, same_model)
    report_same = json.loads((same_model / "results.json").read_text())
    for run in report_same["runs"]:
        run["model"] = run["model"].replace("[epochs=2]", "")
        run["seed"] = 2021
    report_same["protocol"]["seed"], report_same["protocol"]["seeds"] = 2021, [2021]
    (same_model / "results.json").write_text(json.dumps(report_same))
    with pytest.raises(ValueError, match=r"SASRec ran with other settings than in .*\(epochs 1 vs 2"):
        merge_comparisons([comparison, same_model], tmp_path / "bad", plots=False)
    # a run that did not record its settings: the budgets cannot be told per model
    del report["runs"][0]["config"]
    (longer / "results.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="another epochs than .*written before runs recorded"):
        merge_comparisons([comparison, longer], tmp_path / "unrecorded", plots=False)
