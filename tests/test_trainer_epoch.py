"""RecBole's own ``recbole.trainer.Trainer`` tells FAERec its epoch (compat ``trainer_epoch``) and
logs its losses by name (compat ``loss_names``); a model trained without an epoch warns.

Real tiny FAERec_SASRec runs on ml-100k (interactions before 1997-10-10, about a tenth).
"""

import logging
import re
import sys

import pytest

from conftest import TINY_SASREC

SETTINGS = {**TINY_SASREC, "embedding_size": 8, "state": "INFO", "llm_emb_provider": "tfidf",
            "llm_emb_dimensions": 16, "train_batch_size": 1024, "period": 4,
            "val_interval": {"timestamp": "[0,876400000]"}}
NEVER_SET = "is trained without its epoch ever being set"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def data(cache):
    from recbole.utils import init_seed

    from recbole_faerec.quick_start import build_config, load_dataset

    argv = sys.argv
    sys.argv = argv[:1]  # RecBole's Config reads --key=value there: not pytest's
    try:
        config = build_config("FAERec_SASRec", "ml-100k", config_dict=SETTINGS)
    finally:
        sys.argv = argv
    init_seed(config["seed"], config["reproducibility"])
    _, train, valid, _ = load_dataset(config)
    return config, train, valid


def build(data, epochs):
    """A fresh FAERec_SASRec for ``epochs`` epochs, with the training and validation data."""
    from recbole.utils import init_seed

    from recbole_faerec.utils import get_model

    config, train, valid = data
    config["epochs"] = epochs
    init_seed(config["seed"], config["reproducibility"])
    return config, get_model("FAERec_SASRec")(config, train._dataset), train, valid


def record_epochs(model):
    """The curriculum epoch of every ``calculate_loss`` call."""
    seen = []
    calculate_loss = model.calculate_loss

    def recording(interaction):
        seen.append(model.current_epoch)
        return calculate_loss(interaction)

    model.calculate_loss = recording
    return seen


def fit_with_recbole_trainer(data, epochs, caplog):
    from recbole.trainer import Trainer

    config, model, train, valid = build(data, epochs)
    seen = record_epochs(model)
    caplog.clear()
    Trainer(config, model).fit(train, valid, saved=False, show_progress=False)
    return model, seen, ANSI.sub("", caplog.text), len(train)


@pytest.fixture
def info_logs(caplog, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's trainer creates saved/ and log_tensorboard/
    caplog.set_level(logging.INFO)
    return caplog


def test_recbole_trainer_advances_the_curriculum_and_names_the_losses(data, info_logs):
    model, seen, log, batches = fit_with_recbole_trainer(data, 3, info_logs)
    assert seen == [0] * batches + [1] * batches + [2] * batches
    # period 4: the feature-level weight rises from 0 as the epochs go by (eq. 11)
    assert [round(model.curriculum.weights(e)[1], 6) for e in range(3)] == [0, 0.05, 0.1]
    assert NEVER_SET not in log
    losses = re.findall(r"epoch (\d) training \[time: [\d.]+s, train loss: ([\d.]+) "
                        r"\(rec: ([\d.]+), align: ([\d.]+)\)\]", log)
    assert [int(e) for e, *_ in losses] == [0, 1, 2], log[-2000:]
    for _, total, rec, align in losses:
        assert float(total) == pytest.approx(float(rec) + float(align), abs=2e-4)
        assert float(align) > 0
    assert "train_loss1" not in log


def test_without_the_fixes_the_epoch_stays_0_and_the_model_warns(data, info_logs, monkeypatch):
    from recbole.trainer import Trainer

    # RecBole 1.2.1's own methods, as before recbole_faerec.compat's trainer_epoch and loss_names
    for name in ("_train_epoch", "_generate_train_loss_output"):
        monkeypatch.setattr(Trainer, name, getattr(Trainer, name).__wrapped__)
    model, seen, log, batches = fit_with_recbole_trainer(data, 2, info_logs)
    assert seen == [0] * (2 * batches)
    assert log.count(NEVER_SET) == 1  # once, not per batch
    assert "stays at epoch 0 (w_item=1, w_feat=0)" in log and "model.set_epoch(epoch)" in log
    assert re.search(r"train_loss1: [\d.]+, train_loss2: [\d.]+", log)


def test_hand_written_loop_warns_once_and_set_epoch_silences_it(data, info_logs):
    config, model, train, _ = build(data, 1)
    batch = next(iter(train))
    model.train()
    model.calculate_loss(batch)
    model.calculate_loss(batch)
    assert info_logs.text.count(NEVER_SET) == 1

    info_logs.clear()
    _, again, _, _ = build(data, 1)
    again.train()
    again.set_epoch(0)
    again.calculate_loss(batch)
    assert NEVER_SET not in info_logs.text


def test_validation_starts_at_eval_start_epoch(data, info_logs):
    """RecBole's own trainer validates from the first epoch; with ``eval_start_epoch: 2`` epochs 0
    and 1 train unvalidated (the authors' ``star_test``), then every epoch is validated."""
    from recbole.trainer import Trainer

    config, model, train, valid = build(data, 4)
    config["eval_start_epoch"] = 2
    try:
        trainer = Trainer(config, model)
        info_logs.clear()
        trainer.fit(train, valid, saved=False, show_progress=False)
    finally:
        config["eval_start_epoch"] = 0
    log = ANSI.sub("", info_logs.text)
    trained = [int(e) for e in re.findall(r"epoch (\d) training", log)]
    validated = [int(e) for e in re.findall(r"epoch (\d) evaluating", log)]
    assert trained == [0, 1, 2, 3] and validated == [2, 3], log[-2000:]
    assert trainer.eval_step == 1  # the configured step, back from epoch 2 on


@pytest.mark.parametrize("start, message", [(4, "eval_start_epoch 4 >= epochs 4"),
                                            (-1, "must be a non-negative integer")])
def test_eval_start_epoch_that_cannot_work_is_an_error(start, message):
    from recbole_faerec.evaluator import EvaluationConfigError
    from recbole_faerec.quick_start import build_config

    argv = sys.argv
    sys.argv = argv[:1]
    try:
        with pytest.raises(EvaluationConfigError, match=message):
            build_config("SASRec", "ml-100k", config_dict={**TINY_SASREC, "epochs": 4,
                                                          "eval_start_epoch": start})
    finally:
        sys.argv = argv


def test_best_epoch_counts_the_unvalidated_epochs():
    from recbole_faerec.quick_start.quick_start import tested_epoch

    assert tested_epoch([0.1, 0.3, 0.2], [2, 3, 4]) == 3  # validated from epoch 2 on
    assert tested_epoch([0.1, 0.3, 0.2], None) == 1  # RecBole's every epoch
    assert tested_epoch([], []) is None


def test_best_epoch_is_the_checkpoint_recbole_keeps():
    """RecBole's own early stopping decides which validation's weights are saved and tested; the
    reported best epoch must be that one, ties included (scores are rounded, so they happen)."""
    from recbole.utils import early_stopping

    from recbole_faerec.quick_start.quick_start import tested_epoch

    curves = [
        ([0.05, 0.0656, 0.0650, 0.0656, 0.0649], True),   # a tie: RecBole saves the second one
        ([0.01, 0.02, 0.03, 0.02], True),
        ([0.5, 0.3, 0.3, 0.4], False),                       # smaller is better, with a tie
        ([0.2, 0.2, 0.2], True),
    ]
    for scores, bigger in curves:
        best, step, saved = -float("inf") if bigger else float("inf"), 0, None
        for epoch, score in enumerate(scores):
            best, step, stop, update = early_stopping(score, best, step, max_step=10, bigger=bigger)
            if update:
                saved = epoch
        assert tested_epoch(scores, None, bigger) == saved, scores
