"""A killed comparison continued with ``--resume`` ends as the uninterrupted one: the runs done are
kept, the interrupted run goes on from its last-epoch checkpoint, the rest run; and a folder of
another command is refused rather than rewritten.

Real runs on ml-100k (the 213 users with at most 30 interactions) with a tiny SASRec and two
variants of it; the interrupted comparison is a real process killed with SIGKILL right after the
second run's epoch-0 checkpoint (tests/resume_probe.py --cli).
"""

import json
import logging

import numpy as np
import pytest
from conftest import REPO, TINY_SASREC, run_py

from recbole_faerec.quick_start.cli import main

PROBE = REPO / "tests" / "resume_probe.py"
MODELS = "SASRec,SASRec[hidden_dropout_prob=0.2],SASRec[hidden_dropout_prob=0.3]"
SETTINGS = {**TINY_SASREC, "epochs": 2, "user_inter_num_interval": "[0,30]",
            "metric_decimal_place": 12, "state": "INFO"}
ARGS = [f"--model={MODELS}", "--dataset=ml-100k", "--out_dir=out", "--tsne_items=20",
        "--seeds=2020", "--data_path=dataset/", *[f"--{k}={v}" for k, v in SETTINGS.items()]]


def in_folder(folder, argv):
    import os

    here = os.getcwd()
    os.chdir(folder)  # RecBole writes log/ and saved/ into the working directory
    try:
        return main(argv)
    finally:
        os.chdir(here)


def runs(folder):
    report = json.loads((folder / "out" / "results.json").read_text())
    with np.load(folder / "out" / "per_user.npz") as f:
        ranks = {key: f[key] for key in f.files if key.endswith("/rank")}
    return report, ranks


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    whole = tmp_path_factory.mktemp("whole")
    assert in_folder(whole, ARGS) == 0
    killed = tmp_path_factory.mktemp("killed")
    proc = run_py([PROBE, "--cli", 0, 2, *ARGS], cwd=killed)
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-2000:]
    interrupted = json.loads((killed / "out" / "results.json").read_text())
    messages, root = Messages(), logging.getLogger()
    level = root.level
    root.addHandler(messages)
    root.setLevel(logging.INFO)  # the runner's own lines come before RecBole's logger is set up
    try:
        assert in_folder(killed, [*ARGS, "--resume"]) == 0
    finally:
        root.removeHandler(messages)
        root.setLevel(level)
    return whole, killed, interrupted, "\n".join(messages.lines)


class Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_a_killed_comparison_resumes_to_the_uninterrupted_result(killed_and_resumed):
    whole, killed, interrupted, log = killed_and_resumed
    # the kill came in the second run: one run was kept, two were still to do
    assert [(r["model"], r["seed"]) for r in interrupted["runs"]] == [("SASRec", 2020)]
    assert [(r["model"], r["seed"]) for r in interrupted["missing_runs"]] == [
        ("SASRec[hidden_dropout_prob=0.2]", 2020), ("SASRec[hidden_dropout_prob=0.3]", 2020)]
    expected, expected_ranks = runs(whole)
    resumed, resumed_ranks = runs(killed)
    assert resumed["missing_runs"] == []
    assert [(r["model"], r["seed"]) for r in resumed["runs"]] == \
        [(r["model"], r["seed"]) for r in expected["runs"]]
    for want, got in zip(expected["runs"], resumed["runs"]):
        assert got["config"] == want["config"]
        assert got["test"] == want["test"]
        assert got["valid_curve"] == want["valid_curve"]  # both epochs, kept across the kill
        assert got["best_epoch"] == want["best_epoch"]
    assert resumed_ranks.keys() == expected_ranks.keys()
    for key in expected_ranks:
        np.testing.assert_array_equal(resumed_ranks[key], expected_ranks[key])
    assert resumed["tsne_items"] == expected["tsne_items"]
    assert (killed / "out" / "tsne.png").exists()  # the plots, once every run is done
    # the run done was not run again; the interrupted one went on from epoch 0's checkpoint; the
    # last one's checkpoint (left by the second run, another run's) was not taken
    assert "resume: 1 of 3 runs are done" in log
    assert log.count("Resuming ") == 1 and "epoch 0 was the last one done" in log
    assert "SASRec[hidden_dropout_prob=0.3] (seed 2020) starts anew" in log
    assert "differs in hidden_dropout_prob" in log
    assert [r.get("resumed_from") for r in resumed["runs"]] == \
        [None, "saved/SASRec-ml-100k-last.pth", None]


def test_resume_keeps_a_folder_of_another_command(killed_and_resumed, capsys):
    _, killed, _, _ = killed_and_resumed
    before = (killed / "out" / "results.json").read_text()
    other = [a if not a.startswith("--epochs=") else "--epochs=3" for a in ARGS]
    assert in_folder(killed, [*other, "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings (epochs: '2' there, '3' here)" in err[0], err
    fewer = [a if not a.startswith("--model=") else "--model=SASRec,SASRec[hidden_dropout_prob=0.2]"
             for a in ARGS]
    assert in_folder(killed, [*fewer, "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("it holds SASRec[hidden_dropout_prob=0.3] (seed 2020), which this "
                              "command does not run") in err[0], err
    assert in_folder(killed, [*ARGS, "--resume=saved/x.pth"]) == 2
    assert "give --resume without a path" in capsys.readouterr().err
    assert (killed / "out" / "results.json").read_text() == before  # nothing rewritten


def test_resuming_a_finished_comparison_runs_nothing(killed_and_resumed):
    _, killed, _, _ = killed_and_resumed
    before = json.loads((killed / "out" / "results.json").read_text())
    # the same command, its data_path written another way (the same folder); a real process with no
    # logging set up: the runner's own lines come between runs, where RecBole's handlers are gone
    same = [a if a != "--data_path=dataset/" else "--data_path=dataset" for a in ARGS]
    proc = run_py([REPO / "run_recbole_faerec.py", *same, "--resume"], cwd=killed)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resume: 3 of 3 runs are done" in proc.stderr
    assert f"comparison written to {killed / 'out'}" in proc.stderr
    after = json.loads((killed / "out" / "results.json").read_text())
    assert [r["test"] for r in after["runs"]] == [r["test"] for r in before["runs"]]
    assert [r["wall_s"] for r in after["runs"]] == [r["wall_s"] for r in before["runs"]]
