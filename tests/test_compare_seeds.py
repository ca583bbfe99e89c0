"""The comparison runner over several seeds: per-user test outcomes, mean ± std, paired tests."""

import csv
import json
import os
import statistics
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY_SASREC
from scipy import stats

from recbole_faerec.quick_start.cli import build_parser, main
from recbole_faerec.quick_start.compare import (
    load_comparison,
    markdown_table,
    merge_comparisons,
    model_pairs,
    paired_tests,
    parse_pairs,
)

SEEDS = [2020, 2021]
MODELS = ["SASRec", "FAERec_SASRec"]
# the 213 users of ml-100k with at most 30 interactions: a real run at a tenth of the cost;
# TF-IDF item embeddings (no model download); metrics unrounded, to compare per-user means exactly
SETTINGS = {**TINY_SASREC, "embedding_size": 8, "llm_emb_provider": "tfidf",
            "user_inter_num_interval": "[0,30]", "metric_decimal_place": 12, "state": "WARNING"}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, cache):
    """``run_recbole_faerec.py --model=SASRec,FAERec_SASRec --seeds=2020,2021`` (in this process)."""
    work = tmp_path_factory.mktemp("compare-seeds")
    here = os.getcwd()
    os.chdir(work)  # RecBole writes log/ and saved/ into the working directory
    try:
        status = main([f"--model={','.join(MODELS)}", "--dataset=ml-100k", "--out_dir=out",
                       "--tsne_items=0", f"--seeds={','.join(map(str, SEEDS))}",
                       *[f"--{k}={v}" for k, v in SETTINGS.items()]])
    finally:
        os.chdir(here)
    assert status == 0
    return work / "out"


def _per_user(out: Path):
    with np.load(out / "per_user.npz") as f:
        return {key: f[key] for key in f.files}


def _ndcg(rank, k):
    rank = np.asarray(rank, dtype=float)
    return np.where((rank >= 1) & (rank <= k), 1 / np.log2(np.maximum(rank, 1) + 1), 0.0)


def test_per_user_outcomes_reproduce_recbole_metrics(seeded):
    report = json.loads((seeded / "results.json").read_text())
    per_user = _per_user(seeded)
    with np.load(seeded / "views.npz") as views:
        tail = views["tail_mask"]
    assert sum((per_user[f"{i}/rank"] > 0).sum() for i in range(len(report["runs"]))) > 0
    users = report["protocol"]["test_rows"]
    assert users == 213
    for i, run in enumerate(report["runs"]):
        rank, target = per_user[f"{i}/rank"], per_user[f"{i}/target"]
        assert len(rank) == len(target) == len(per_user[f"{i}/user"]) == users
        assert np.array_equal(target, per_user["0/target"])  # the same test rows in every run
        assert np.array_equal(per_user[f"{i}/user"], per_user["0/user"])
        assert rank.min() >= 0 and rank.max() <= max(report["protocol"]["topk"])
        on_tail = tail[target]
        for k in report["protocol"]["topk"]:
            hit = ((rank >= 1) & (rank <= k)).astype(float)
            ndcg = _ndcg(rank, k)
            test = run["test"]
            assert hit.mean() == pytest.approx(test[f"hit@{k}"], abs=1e-11)
            assert ndcg.mean() == pytest.approx(test[f"ndcg@{k}"], abs=1e-11)
            assert ndcg[on_tail].mean() == pytest.approx(test[f"tailndcg@{k}"], abs=1e-11)
            assert hit[~on_tail].mean() == pytest.approx(test[f"headhit@{k}"], abs=1e-11)


def test_two_seeds_give_rows_and_mean_std(seeded):
    report = json.loads((seeded / "results.json").read_text())
    assert [(r["model"], r["seed"]) for r in report["runs"]] == \
        [(m, s) for s in SEEDS for m in MODELS]
    assert report["protocol"]["seeds"] == SEEDS
    assert "views" not in report["runs"][0] and "per_user" not in report["runs"][0]
    runs = {(r["model"], r["seed"]): r["test"] for r in report["runs"]}
    # the seed takes effect: another seed trains another model
    assert runs[("SASRec", 2020)] != runs[("SASRec", 2021)]
    md = (seeded / "results.md").read_text()
    assert "mean ± the sample standard deviation (ddof = 1)" in md and "2020, 2021" in md
    with open(seeded / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [(r["model"], r["seed"]) for r in csv_rows] == \
        [(m, s) for m in MODELS for s in ("2020", "2021", "mean", "std")]
    for model in MODELS:
        values = {key: [runs[(model, s)][key] for s in SEEDS] for key in ("hit@10", "ndcg@10",
                                                                         "tailndcg@10")}
        hit = values["hit@10"]  # the first column
        assert f"| {model} | 2 | {statistics.mean(hit):.4f} ± {statistics.stdev(hit):.4f} |" in md
        ndcg = values["ndcg@10"]
        assert f"{statistics.mean(ndcg):.4f} ± {statistics.stdev(ndcg):.4f}" in md
        mean, std = (next(r for r in csv_rows if r["model"] == model and r["seed"] == label)
                     for label in ("mean", "std"))
        for key, v in values.items():
            assert float(mean[key]) == pytest.approx(statistics.mean(v), rel=1e-12)
            assert float(std[key]) == pytest.approx(statistics.stdev(v), rel=1e-12)
    assert (seeded / "groups.png").read_bytes()[:4] == b"\x89PNG"


def test_paired_test_equals_scipy_on_saved_outcomes(seeded):
    report = json.loads((seeded / "results.json").read_text())
    per_user = _per_user(seeded)
    with np.load(seeded / "views.npz") as views:
        tail = views["tail_mask"]
    index = {(r["model"], r["seed"]): i for i, r in enumerate(report["runs"])}
    mean_ndcg = {m: np.mean([_ndcg(per_user[f"{index[(m, s)]}/rank"], 10) for s in SEEDS], axis=0)
                 for m in MODELS}
    on_tail = tail[per_user["0/target"]]
    [test] = report["significance"]
    assert (test["base"], test["model"], test["metric"], test["seeds"]) == \
        ("SASRec", "FAERec_SASRec", "ndcg@10", SEEDS)
    md = (seeded / "results.md").read_text()
    assert "## Significance" in md
    for subset, mask in (("all", np.ones_like(on_tail)), ("tail", on_tail)):
        m, b = mean_ndcg["FAERec_SASRec"][mask], mean_ndcg["SASRec"][mask]
        got = test[subset]
        assert got["n_users"] == mask.sum() > 0
        assert got["mean_diff"] == pytest.approx(np.mean(m - b), abs=1e-15)
        assert got["p_wilcoxon"] == pytest.approx(
            stats.wilcoxon(m, b, zero_method="pratt").pvalue, rel=1e-12)
        assert got["p_ttest"] == pytest.approx(stats.ttest_rel(m, b).pvalue, rel=1e-12)
        assert f"| FAERec_SASRec vs SASRec ({subset}) | {mask.sum()} | 2 |" in md
    assert test["all"]["relative_change"] == pytest.approx(
        test["all"]["mean_diff"] / test["all"]["base_mean"])


def test_identical_pair_and_reload(seeded, tmp_path):
    """A model against itself: all per-user differences are zero, scipy's Wilcoxon test would
    refuse them; both p-values are reported as 1.0. The saved comparison reloads and merges."""
    rows, info, _, _ = load_comparison(seeded)
    assert all(r["per_user"] is not None for r in rows)
    [same] = paired_tests(rows, info, pairs=[("SASRec", "SASRec")])
    for subset in ("all", "tail"):
        assert same[subset]["mean_diff"] == 0 and same[subset]["identical"]
        assert same[subset]["p_wilcoxon"] == same[subset]["p_ttest"] == 1.0
    assert model_pairs(["SASRec", "SASRec", "GRU4Rec", "FAERec_SASRec", "FAERec_NARM"]) == \
        [("SASRec", "FAERec_SASRec")]
    assert markdown_table(rows, info) == (seeded / "results.md").read_text()
    merged = merge_comparisons([seeded], tmp_path / "merged", plots=False)
    assert merged["significance"] == json.loads((seeded / "results.json").read_text())["significance"]


def test_parts_run_one_seed_each_merge_into_one_table(seeded, tmp_path):
    """Seeds run apart (another machine, another day) merge: the table averages over every seed.
    The second part is the first with its runs labelled as seeds 2022 and 2023."""
    part = tmp_path / "seed-2022"
    part.mkdir()
    for name in ("per_user.npz", "views.npz"):
        if (seeded / name).exists():
            (part / name).write_bytes((seeded / name).read_bytes())
    report = json.loads((seeded / "results.json").read_text())
    report["runs"] = [dict(r, seed=r["seed"] + 2) for r in report["runs"]]
    report["protocol"] = dict(report["protocol"], seed=2022, seeds=[2022, 2023])
    (part / "results.json").write_text(json.dumps(report))
    merged = merge_comparisons([seeded, part], tmp_path / "merged", plots=False)
    assert merged["protocol"]["seeds"] == [2020, 2021, 2022, 2023]
    assert sorted(r["seed"] for r in merged["runs"] if r["model"] == "SASRec") == [2020, 2021, 2022, 2023]
    table = (tmp_path / "merged" / "results.md").read_text()
    assert "once per seed (2020, 2021, 2022, 2023;" in table
    assert "| SASRec | 4 |" in table and "| FAERec_SASRec | 4 |" in table  # four runs each
    with pytest.raises(ValueError, match="already in an earlier part"):
        merge_comparisons([seeded, part, part], tmp_path / "bad", plots=False)


def test_extra_pairs_on_merge_and_kept_by_the_next_merge(seeded, tmp_path, capsys):
    """``--pairs=BASE:MODEL`` adds a paired test the automatic ones lack (here the reverse of the
    automatic pair, FAERec as the base): its figures are the automatic test's with the roles
    swapped; the merged folder keeps the pair, so merging it again keeps the test."""
    out = tmp_path / "merged"
    assert main([f"--merge={seeded}", f"--out_dir={out}",
                 "--pairs=FAERec_SASRec:SASRec"]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["pairs"] == [["FAERec_SASRec", "SASRec"]]
    auto, extra = report["significance"]
    assert (auto["base"], extra["base"]) == ("SASRec", "FAERec_SASRec")
    for subset in ("all", "tail"):
        assert extra[subset]["mean_diff"] == pytest.approx(-auto[subset]["mean_diff"], abs=1e-15)
        assert extra[subset]["p_wilcoxon"] == pytest.approx(auto[subset]["p_wilcoxon"], rel=1e-12)
        assert extra[subset]["base_mean"] == auto[subset]["model_mean"]
    assert "| SASRec vs FAERec_SASRec (tail) |" in (out / "results.md").read_text()
    again = merge_comparisons([out], tmp_path / "again", plots=False)
    assert again["significance"] == report["significance"]
    # a part's pair whose model a merge leaves out is dropped, not an error
    only = merge_comparisons([out], tmp_path / "only", plots=False, models=["SASRec"])
    assert only["pairs"] == [] and only["significance"] == []
    # the automatic pair given again is not tested twice
    assert len(merge_comparisons([seeded], tmp_path / "dup", plots=False,
                                 pairs=[("SASRec", "FAERec_SASRec")])["significance"]) == 1


def test_merge_keeps_the_seeds_asked_for(seeded, tmp_path, capsys):
    """``--merge ... --seeds=2021``: only that seed's runs, the table of one run per model; a seed
    no part ran stops with one line; RecBole parameters beside ``--merge`` get a warning (a merge
    trains nothing)."""
    out = tmp_path / "one-seed"
    assert main([f"--merge={seeded}", f"--out_dir={out}", "--seeds=2021", "--epochs=5"]) == 0
    assert "warning: --merge only reads the parts' results; not used: --epochs=5" in \
        capsys.readouterr().err
    report = json.loads((out / "results.json").read_text())
    assert report["protocol"]["seeds"] == [2021]
    assert [(r["model"], r["seed"]) for r in report["runs"]] == [(m, 2021) for m in MODELS]
    whole = json.loads((seeded / "results.json").read_text())
    assert [r["test"] for r in report["runs"]] == [r["test"] for r in whole["runs"] if r["seed"] == 2021]
    [test] = report["significance"]
    assert test["seeds"] == [2021]
    assert main([f"--merge={seeded}", f"--out_dir={tmp_path / 'bad'}", "--seeds=2021,7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: merge: no part ran seed 7 (they ran 2020, 2021)"
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("pairs, message", [
    ("SASRec:GRU4Rec", "GRU4Rec is not one of the compared models (SASRec, FAERec_SASRec)"),
    ("SASRec", "write a pair as BASE:MODEL"),
    ("SASRec:FAERec_SASRec:SASRec", "write a pair as BASE:MODEL"),
    ("SASRec:SASRec", "a model against itself"),
])
def test_bad_pairs_exit_2(seeded, pairs, message, capsys, tmp_path):
    assert main([f"--merge={seeded}", f"--out_dir={tmp_path / 'm'}", f"--pairs={pairs}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "m").exists()
    # a comparison checks them before any training
    assert main(["--model=SASRec,FAERec_SASRec", f"--out_dir={tmp_path / 'run'}",
                 f"--pairs={pairs}"]) == 2
    assert message.split(" (")[0] in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_pair_without_a_shared_seed_is_named_not_dropped(seeded):
    rows, info, _, _ = load_comparison(seeded)
    apart = [r for r in rows if (r["model"], r["seed"]) in {("SASRec", 2020), ("FAERec_SASRec", 2021)}]
    [test] = paired_tests(apart, info)
    assert test["note"] == ("no seed that both ran (SASRec: 2020; FAERec_SASRec: 2021): "
                            "no paired test") and "all" not in test
    assert "FAERec_SASRec vs SASRec: no seed that both ran" in markdown_table(apart, info)


def test_pairs_read_variants_with_colons_and_commas():
    names = ["SASRec", "FAERec_SASRec[item_tau=0.1,w_min=0.5]", "X[path=a:b]"]
    assert parse_pairs("SASRec:FAERec_SASRec[item_tau=0.1,w_min=0.5], X[path=a:b]:SASRec", names) \
        == [("SASRec", "FAERec_SASRec[item_tau=0.1,w_min=0.5]"), ("X[path=a:b]", "SASRec")]


@pytest.mark.parametrize("name", ["amazon-beauty", "amazon-scientific"])
def test_old_results_still_load(name, tmp_path):
    """The published results.json (written before seeds and per-user outcomes) load, render their
    published table and merge."""
    folder = REPO / "docs" / "results" / name
    rows, info, _, report = load_comparison(folder)
    assert info["seeds"] == [info["seed"]] and all(r["seed"] == info["seed"] for r in rows)
    assert all(r["per_user"] is None for r in rows)
    published = (folder / "results.md").read_text()
    rendered = markdown_table(rows, info)
    assert [line.rstrip() for line in rendered.splitlines()] == \
        [line.rstrip() for line in published.splitlines()]
    merged = merge_comparisons([folder], tmp_path / "merged", plots=False)
    assert merged["significance"] == [] and len(merged["runs"]) == len(report["runs"])


def test_seed_is_recboles_not_an_abbreviation_of_seeds():
    args, extra = build_parser().parse_known_args(["--model=A,B", "--seed=7", "--seed", "8"])
    assert args.seeds is None and extra == ["--seed=7", "--seed", "8"]


@pytest.mark.parametrize("args, message", [
    (["--model=SASRec,GRU4Rec", "--seeds=2020,x"], "give comma-separated integers"),
    (["--model=SASRec,GRU4Rec", "--seeds=2020,2020"], "a seed is listed twice"),
    (["--model=SASRec,GRU4Rec", "--seeds=2020,2021", "--seed", "7"], "either --seeds"),
    (["--model=SASRec", "--seeds=2020,2020"], "a seed is listed twice"),  # one model: compared too
    (["--model=SASRec,SASRec"], "lists SASRec twice"),
])
def test_bad_seeds_exit_2(args, message, capsys, tmp_path):
    assert main([*args, f"--out_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # nothing ran
