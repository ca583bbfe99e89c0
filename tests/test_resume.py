"""A killed run resumed from its last-epoch checkpoint ends exactly as the uninterrupted run.

Real runs on ml-100k (interactions before 1997-10-10, about a tenth, so that an epoch takes a
second or two) with tiny models; the interrupted run is a real process killed with SIGKILL right
after its epoch-1 checkpoint (tests/resume_probe.py).
"""

import json
import logging
import os
import re
import sys

import pytest
import torch

from conftest import REPO, TINY_SASREC, run_py

PROBE = REPO / "tests" / "resume_probe.py"

SETTINGS = {**TINY_SASREC, "epochs": 3, "state": "INFO", "train_batch_size": 512,
            "val_interval": {"timestamp": "[0,876400000]"},
            # FAERec: quick embeddings, and a curriculum that moves within 3 epochs
            "embedding_size": 8, "llm_emb_provider": "tfidf", "llm_emb_dimensions": 16, "period": 4}


def last_checkpoint(folder, model):
    return torch.load(folder / "saved" / f"{model}-ml-100k-last.pth", weights_only=False)


def weights(path):
    return torch.load(path, weights_only=False)["state_dict"]


def in_folder(folder, function, *args, **kwargs):
    """``function`` run in ``folder`` with no command-line parameters (RecBole's Config reads
    ``--key=value`` from sys.argv: not pytest's)."""
    cwd, argv = os.getcwd(), sys.argv
    os.chdir(folder)
    sys.argv = argv[:1]
    try:
        return function(*args, **kwargs)
    finally:
        os.chdir(cwd)
        sys.argv = argv


def whole_killed_resumed(model, root):
    """The uninterrupted run, the same run killed after epoch 1 and resumed; what the tests compare
    (read before any test touches the folders)."""
    from recbole_faerec.quick_start import run_recbole_faerec

    whole, killed = root / "whole", root / "killed"
    whole.mkdir(), killed.mkdir()
    expected = in_folder(whole, run_recbole_faerec, model, "ml-100k", config_dict=SETTINGS)
    proc = run_py([PROBE, model, 1, json.dumps(SETTINGS)], cwd=killed)
    stopped = last_checkpoint(killed, model) if proc.returncode == -9 else None
    leftovers = list((killed / "saved").glob("*.tmp-*"))
    resumed = in_folder(killed, run_recbole_faerec, model, "ml-100k", config_dict=SETTINGS,
                        resume=True)
    return {
        "killed": killed, "proc": proc, "stopped": stopped, "leftovers": leftovers,
        "expected": expected, "resumed": resumed,
        "last": (last_checkpoint(whole, model)["state_dict"], last_checkpoint(killed, model)["state_dict"]),
        "best": (weights(whole / expected["model_file"]), weights(killed / resumed["model_file"])),
    }


@pytest.fixture(scope="module")
def sasrec_runs(tmp_path_factory):
    return whole_killed_resumed("SASRec", tmp_path_factory.mktemp("sasrec"))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def check_resumed_run(runs, model):
    proc = runs["proc"]
    assert proc.returncode == -9, (proc.stdout + proc.stderr)[-3000:]
    stopped = runs["stopped"]
    assert stopped["epoch"] == 1 and not stopped["stopped_early"]
    assert not runs["leftovers"]  # written by rename: never half a file
    expected, resumed = runs["expected"], runs["resumed"]
    assert resumed["test_result"] == expected["test_result"]
    assert resumed["best_valid_result"] == expected["best_valid_result"]
    assert resumed["best_valid_score"] == expected["best_valid_score"]
    assert resumed["valid_scores"] == expected["valid_scores"]  # all 3 epochs, kept across the kill
    assert len(resumed["train_seconds"]) == 3
    # bit-identical: the weights after the last epoch, and the best checkpoint the test used
    assert_same_weights(*runs["last"])
    assert_same_weights(*runs["best"])
    return stopped


def test_killed_sasrec_run_resumes_to_the_uninterrupted_result(sasrec_runs):
    check_resumed_run(sasrec_runs, "SASRec")


def test_killed_faerec_run_resumes_to_the_uninterrupted_result(cache, tmp_path):
    stopped = check_resumed_run(whole_killed_resumed("FAERec_SASRec", tmp_path), "FAERec_SASRec")
    assert stopped["model_epoch"] == 1  # the curriculum's epoch


def test_resume_of_a_finished_run_or_with_another_config(sasrec_runs, tmp_path, capsys, caplog):
    """``--resume`` of a finished run: nothing is trained, the best checkpoint is tested; a changed
    key is named; with nothing to resume the command line stops with one line (exit status 2)."""
    from recbole_faerec.quick_start.cli import main
    from recbole_faerec.quick_start import run_recbole_faerec

    args = ["--model=SASRec", "--dataset=ml-100k", *[f"--{k}={v}" for k, v in SETTINGS.items()]]
    assert in_folder(tmp_path, main, [*args, "--resume"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: cannot resume: saved{os.sep}SASRec-ml-100k-last.pth does not exist (this run's "
        "last-epoch checkpoint is written after every training epoch; give --resume=<path> for "
        "another one)")
    assert not (tmp_path / "log").exists()  # stopped before any work

    folder = sasrec_runs["killed"]  # resumed to the end by now
    caplog.set_level(logging.INFO)
    assert in_folder(folder, main, [*args, "--resume=saved/SASRec-ml-100k-last.pth"]) == 0
    assert "nothing left to train (all 3 epochs are done)" in caplog.text
    assert not re.search(r"epoch \d+ training", caplog.text)
    tested = re.search(r"test result\S*: (\{.*\})", caplog.text).group(1)
    assert json.loads(tested.replace("'", '"')) == sasrec_runs["expected"]["test_result"]

    # a key that changes results, and more epochs: a warning, then one more epoch
    caplog.clear()
    result = in_folder(folder, run_recbole_faerec, "SASRec", "ml-100k", resume=True,
                       config_dict={**SETTINGS, "learning_rate": 0.01, "epochs": 4})
    changed = re.search(r"differs from its run in (.*): the result", caplog.text).group(1)
    assert changed == "learning_rate (0.001 -> 0.01)"
    assert len(result["valid_scores"]) == 4 and len(result["train_seconds"]) == 4
    assert last_checkpoint(folder, "SASRec")["epoch"] == 3


@pytest.mark.parametrize("extra, message", [
    # a comparison resumes as a whole (tests/test_compare_resume.py), a merge trains nothing
    (["--merge=a,b", "--out_dir=out"], "error: --merge trains nothing, so --resume cannot take "
                                       "effect; to finish a part, run its own command with --resume, "
                                       "then merge"),
    (["--model=SASRec", "--nproc=2"], "error: cannot resume a distributed run (--nproc/--world_size): "
                                      "its workers' random states are not kept; resume runs in one process"),
])
def test_resume_refuses_what_it_cannot_continue(extra, message, tmp_path, capsys):
    from recbole_faerec.quick_start.cli import main

    assert in_folder(tmp_path, main, [*extra, "--dataset=ml-100k", "--resume"]) == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "saved").exists()


def test_only_trainers_with_recboles_fit_loop_resume():
    from recbole.trainer import KGATTrainer, NCLTrainer, S3RecTrainer, Trainer

    from recbole_faerec.trainer import FAERecTrainer, resumable, supports_resume

    assert supports_resume(Trainer) and supports_resume(FAERecTrainer) and supports_resume(KGATTrainer)
    assert not supports_resume(S3RecTrainer) and not supports_resume(NCLTrainer)
    assert resumable(S3RecTrainer) is S3RecTrainer  # left as it is: it writes no last checkpoint
    assert resumable(Trainer) is resumable(Trainer) and issubclass(resumable(Trainer), Trainer)
