"""Train and evaluate one model: :func:`recbole.quick_start.run_recbole`, with plugin models.

The steps are RecBole's own (``Config`` -> ``create_dataset`` -> ``data_preparation`` -> model ->
trainer ``fit``/``evaluate``); what differs is the model lookup (plugin first), the plugin's YAML
defaults, checks of the atomic files before RecBole reads them, and no import of ray.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from logging import getLogger
from typing import Any, Dict, List, Optional, Union

import numpy as np
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_environment, init_logger, init_seed, set_color

from recbole_faerec.config import Config
from recbole_faerec.data.atomic import check_atomic_files
from recbole_faerec.evaluator import attach_item_popularity
from recbole_faerec.evaluator.metrics import uses_tail_metrics
from recbole_faerec.evaluator.popularity import check_against_data
from recbole_faerec.model.positions import one_row_per_user
from recbole_faerec.trainer.resume import ResumeError, resumable, resume_file, supports_resume
from recbole_faerec.utils import get_model, get_trainer


def build_config(
    model: Union[str, type],
    dataset: str,
    config_file_list: Optional[List[str]] = None,
    config_dict: Optional[Dict[str, Any]] = None,
) -> Config:
    """The :class:`~recbole_faerec.config.Config` for ``model`` on ``dataset``."""
    return Config(model=model, dataset=dataset, config_file_list=config_file_list,
                  config_dict=config_dict)


def load_dataset(config: Config, logger: Optional[logging.Logger] = None):
    """Check the atomic files, then build RecBole's dataset and its train/valid/test loaders.

    The whole-data item popularity (head/tail split, popularity groups) is taken before RecBole
    splits the data, see :mod:`recbole_faerec.evaluator.popularity`. With ``train_positions:
    all`` the training loader holds one row per user (:mod:`recbole_faerec.model.positions`).
    """
    check_atomic_files(config)
    dataset = create_dataset(config)
    popularity = attach_item_popularity(dataset)
    if uses_tail_metrics(config):
        check_against_data(popularity, config)
    if logger is not None:
        logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    train_data = one_row_per_user(train_data, config)  # train_positions: all
    return dataset, train_data, valid_data, test_data


def run_recbole_faerec(
    model: Union[str, type, None] = None,
    dataset: Optional[str] = None,
    config_file_list: Optional[List[str]] = None,
    config_dict: Optional[Dict[str, Any]] = None,
    saved: bool = True,
    queue=None,
    resume: Union[bool, str, None] = None,
) -> Dict[str, Any]:
    """Train ``model`` on ``dataset`` and evaluate it, like :func:`recbole.quick_start.run_recbole`.

    Args:
        model: a plugin model name (e.g. ``FAERec_SASRec``), a RecBole model name (``SASRec``) or a
            model class.
        dataset: a dataset name; ``ml-100k`` is the copy inside the RecBole wheel, others are read
            from ``data_path/<dataset>/``.
        config_file_list: YAML files, applied in order on top of the plugin's ``props/``.
        config_dict: parameters on top of the files (the command line's ``--key=value`` wins).
        saved: save the best checkpoint and reload it for the test.
        queue: a multiprocessing queue to put the result in (used by distributed runs).
        resume: continue an interrupted run: ``True`` (or ``"last"``) from its last-epoch
            checkpoint ``<checkpoint_dir>/<model>-<dataset>-last.pth``, or a path to one
            (:mod:`recbole_faerec.trainer.resume`); the run then trains the epochs left and
            evaluates its best checkpoint, with the result the uninterrupted run would have had.

    Returns:
        ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``, ``test_result``,
        ``model_file`` (the checkpoint path, when ``saved``), ``train_seconds`` (per epoch),
        ``valid_scores`` (per evaluated epoch), ``valid_epochs`` (the training epoch, from 0, each
        of them follows) and ``model`` (the model's name).
    """
    result = train_and_test(model, dataset, config_file_list, config_dict, saved, resume=resume)
    result.pop("model")
    # the model's name, as RecBole's objective_function returns it (HyperTuning reads it)
    result["model"] = result.pop("config")["model"]
    result.pop("test_data")
    result.pop("train_data")
    result.pop("per_user")
    local_rank = result.pop("local_rank")
    if local_rank == 0 and queue is not None:
        queue.put(result)
    return result


def train_and_test(
    model: Union[str, type, None],
    dataset: Optional[str],
    config_file_list: Optional[List[str]] = None,
    config_dict: Optional[Dict[str, Any]] = None,
    saved: bool = True,
    resume: Union[bool, str, None] = None,
) -> Dict[str, Any]:
    """:func:`run_recbole_faerec`'s work; the result also holds the trained ``model`` (best
    checkpoint loaded when ``saved``), its ``config``, ``train_data``, ``test_data`` and
    ``per_user``: each test row's ``rank`` (1-based position of its target in the top
    ``max(topk)``, 0 for a miss), ``target`` (where a tail-aware metric collected it) and ``user``,
    from :meth:`~recbole_faerec.evaluator.collector.TailCollector.per_user` (``None`` in a
    distributed run, or where the test collected no top-k positions)."""
    config = build_config(model, dataset, config_file_list, config_dict)
    checkpoint = resume_file(config, resume)  # a missing one stops the run before any work
    init_seed(config["seed"], config["reproducibility"])
    logger = getLogger()
    handlers_before = list(logger.handlers)
    init_logger(config)
    logger.info(sys.argv)
    logger.info(config)

    try:
        _, train_data, valid_data, test_data = load_dataset(config, logger)

        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        model_obj = get_model(config["model"])(config, train_data._dataset).to(config["device"])
        logger.info(model_obj)

        trainer_class = get_trainer(config["MODEL_TYPE"], config["model"])
        if checkpoint is not None and not supports_resume(trainer_class):
            raise ResumeError(f"cannot resume: {config['model']}'s trainer {trainer_class.__name__} "
                              "has its own training loop")
        trainer = resumable(trainer_class)(config, model_obj)
        timer = _EpochTimer(trainer)
        if checkpoint is not None:
            trainer.resume_checkpoint(checkpoint)
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"]
        )
        trainer.eval_collector.last_rows = {}  # only the test's rows, whatever evaluate() does
        test_result = trainer.evaluate(
            test_data, load_best_model=saved, show_progress=config["show_progress"]
        )
        per_user = trainer.eval_collector.per_user() if config["single_spec"] else None
        if per_user is not None:
            users = _test_users(test_data, len(per_user["rank"]))
            if users is not None:
                per_user["user"] = users

        best_valid_result = _plain(best_valid_result)
        test_result = _plain(test_result)
        environment_tb = get_environment(config)
        logger.info("The running environment of this training is as follows:\n" + environment_tb.draw())
        logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
        logger.info(set_color("test result", "yellow") + f": {test_result}")

        result = {
            "best_valid_score": best_valid_score,
            "valid_score_bigger": config["valid_metric_bigger"],
            "best_valid_result": best_valid_result,
            "test_result": test_result,
            "model_file": trainer.saved_model_file if saved else None,
            "train_seconds": timer.train_seconds,
            "valid_scores": timer.valid_scores,
            "valid_epochs": timer.valid_epochs,
            "local_rank": config["local_rank"],
            "model": trainer.model,
            "config": config,
            "train_data": train_data,
            "test_data": test_data,
            "per_user": per_user,
        }
        if not config["single_spec"]:
            import torch.distributed as dist

            dist.destroy_process_group()
        return result
    finally:
        _remove_handlers(logger, keep=handlers_before)


class _EpochTimer:
    """Records the wall time of each training epoch and each validation score of a RecBole trainer
    (RecBole only logs them)."""

    def __init__(self, trainer):
        self.train_seconds: List[float] = []
        self.valid_scores: List[float] = []
        self.valid_epochs: List[int] = []  # the training epoch (from 0) each score follows
        train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

        def timed_train_epoch(*args, **kwargs):
            start = time.perf_counter()
            try:
                return train_epoch(*args, **kwargs)
            finally:
                self.train_seconds.append(time.perf_counter() - start)

        def recorded_valid_epoch(*args, **kwargs):
            score, result = valid_epoch(*args, **kwargs)
            self.valid_scores.append(float(score))
            self.valid_epochs.append(len(self.train_seconds) - 1)  # the epoch just trained
            return score, result

        trainer._train_epoch = timed_train_epoch
        trainer._valid_epoch = recorded_valid_epoch
        # kept in the last-epoch checkpoint, so a resumed run reports every epoch
        trainer.run_history = {"train_seconds": self.train_seconds, "valid_scores": self.valid_scores,
                               "valid_epochs": self.valid_epochs}


def tested_epoch(scores: List[float], epochs: Optional[List[int]] = None,
                 bigger: bool = True) -> Optional[int]:
    """The training epoch (from 0) of the checkpoint RecBole tests: the **last** validation that
    equals the best score. RecBole's ``early_stopping`` takes a tie as a new best (``>=``, or
    ``<=`` when smaller is better) and saves the model again, and its scores are rounded
    (``metric_decimal_place``), so ties are common late in training; the first best names an epoch
    whose weights were overwritten. ``epochs``: the training epoch each score follows, where
    validation did not run after every epoch (``eval_start_epoch``, ``eval_step``)."""
    if not scores:
        return None
    best = max(scores) if bigger else min(scores)
    index = len(scores) - 1 - list(reversed(scores)).index(best)
    return int(epochs[index]) if epochs and len(epochs) == len(scores) else index


def run(
    model: Union[str, type],
    dataset: str,
    config_file_list: Optional[List[str]] = None,
    config_dict: Optional[Dict[str, Any]] = None,
    saved: bool = True,
    nproc: int = 1,
    world_size: int = -1,
    ip: str = "localhost",
    port: str = "5678",
    group_offset: int = 0,
    resume: Union[bool, str, None] = None,
) -> Optional[Dict[str, Any]]:
    """:func:`run_recbole_faerec` in one process, or in ``nproc`` DDP workers like RecBole's ``run``.

    Without CUDA the workers use gloo on the CPU (:mod:`recbole_faerec.quick_start.distributed`).
    Cached item embeddings a model needs are checked (and made) once here, before the workers start.
    ``resume`` (one process only) is :func:`run_recbole_faerec`'s.
    """
    if nproc == 1 and world_size <= 0:
        return run_recbole_faerec(model, dataset, config_file_list, config_dict, saved, resume=resume)
    if resume:
        raise ResumeError("cannot resume a distributed run (--nproc/--world_size): its workers' "
                          "random states are not kept; resume runs in one process")
    import torch.multiprocessing as mp

    from recbole_faerec.embeddings.loader import sync_item_embeddings

    config = build_config(model, dataset, config_file_list, config_dict)
    if getattr(get_model(config["model"]), "needs_item_embeddings", False):
        if not logging.getLogger().handlers:  # the launcher has no RecBole logger of its own
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s  %(message)s")
        sync_item_embeddings(config)
    # RecBole's ensure_dir checks, then creates: workers creating the same folder at once race
    # (FileExistsError), so the launcher creates the log and checkpoint folders first.
    for path in ("log", os.path.join("log", config["model"]), config["checkpoint_dir"]):
        os.makedirs(path, exist_ok=True)
    world_size = nproc if world_size == -1 else world_size
    config_dict = {**(config_dict or {}), "world_size": world_size, "ip": ip, "port": port,
                   "nproc": nproc, "offset": group_offset}
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_run_worker, args=(model, dataset, config_file_list, config_dict, saved, queue),
             nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def _run_worker(rank, model, dataset, config_file_list, config_dict, saved, queue):
    run_recbole_faerec(model, dataset, config_file_list, {**config_dict, "local_rank": rank},
                       saved=saved, queue=queue)


def _test_users(test_data, rows: int):
    """The user id of each row RecBole's full-sort test loader evaluates, in its order: the test
    interactions for a sequential model, one row per user (ascending ids) otherwise."""
    dataset = test_data._dataset
    if getattr(test_data, "is_sequential", False):
        users = dataset.inter_feat[dataset.uid_field].numpy()
    elif hasattr(test_data, "user_df"):
        users = test_data.user_df[dataset.uid_field].numpy()
    else:
        return None
    return users.astype(np.int64) if len(users) == rows else None


def _plain(result) -> Dict[str, float]:
    """RecBole's ``OrderedDict`` of ``np.float64`` as a plain ``{metric: float}``."""
    return {key: float(value) for key, value in (result or {}).items()}


def _remove_handlers(logger: logging.Logger, keep: List[logging.Handler]) -> None:
    """Remove the handlers ``init_logger`` added, so a second run in this process logs to its own
    file (``logging.basicConfig`` does nothing while the root logger has handlers)."""
    for handler in list(logger.handlers):
        if handler not in keep:
            handler.close()
            logger.removeHandler(handler)
