"""A last-epoch checkpoint for every RecBole trainer, and resuming a run from it bit-identically.

:func:`resumable` turns a RecBole trainer class (``recbole.trainer.Trainer``, the plugin's
``FAERecTrainer``, ...) into one that, after every training epoch of a ``fit(saved=True)`` (RecBole's
default) in one process, writes ``<checkpoint_dir>/<model>-<dataset>-last.pth`` (temporary file +
rename, so a kill never leaves a half-written one), besides RecBole's best checkpoint. It holds what the rest of the run depends on:

- the model (``state_dict``, ``other_parameter``), the optimizer, a ``scheduler`` if the trainer has
  one, the curriculum epoch of models with ``set_epoch``;
- early stopping: ``cur_step``, ``best_valid_score``, ``best_valid_result`` and the path of the
  best checkpoint (which the resumed run keeps updating and tests with);
- the random states: python's ``random``, numpy's, torch's (CPU and CUDA) and the generators of
  the training and validation loaders (RecBole's dataloaders hold their own ``torch.Generator``;
  its samplers draw from numpy's global state);
- the run's config, whether early stopping ended it, and the run's time and score history.

:meth:`ResumableTrainerMixin.resume_checkpoint` (RecBole's method name) reads it back; ``fit``
then puts the random states back right before the next epoch, so the resumed run computes exactly
what the uninterrupted one would have. Resuming a run that early stopping ended, or whose epochs
are all done, trains nothing: ``fit`` says so and returns the best validation result, and the
caller evaluates the best checkpoint.
"""

from __future__ import annotations

import os
import random
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from recbole.trainer import Trainer

from recbole_faerec.embeddings.store import atomic_write_bytes

#: marks a checkpoint written by this module (RecBole's own best checkpoints lack it)
FORMAT = "recbole_faerec.last/1"

#: config keys that do not change what a run computes: a resumed run may differ in them silently
#: (``epochs`` is reported on its own: training longer is what a resume is for)
RESULT_NEUTRAL_KEYS = frozenset({
    "epochs", "state", "show_progress", "checkpoint_dir", "log_wandb", "wandb_project",
    "save_dataset", "save_dataloaders", "dataset_save_path", "dataloaders_save_path",
    "eval_batch_size", "worker", "resume", "local_rank", "verbose", "config_files",
})


class ResumeError(ValueError):
    """A checkpoint that cannot be resumed (missing, unreadable, from another model or dataset)."""


def last_checkpoint_path(config) -> str:
    """``<checkpoint_dir>/<model>-<dataset>-last.pth``: where a run keeps its last epoch."""
    return os.path.join(config["checkpoint_dir"], f"{config['model']}-{config['dataset']}-last.pth")


def resume_file(config, resume) -> Optional[str]:
    """The checkpoint a ``resume`` argument names: None/False -> None (a fresh run); True or
    ``"last"`` -> :func:`last_checkpoint_path`; anything else is a path. It must exist."""
    if resume is None or resume is False or resume == "":
        return None
    path = last_checkpoint_path(config) if resume is True or resume == "last" else str(resume)
    if not os.path.isfile(path):
        what = "this run's last-epoch checkpoint" if resume is True or resume == "last" else "it"
        raise ResumeError(f"cannot resume: {path} does not exist ({what} is written after every "
                          "training epoch; give --resume=<path> for another one)")
    return path


def matching_checkpoint(config) -> Tuple[Optional[str], str]:
    """The last-epoch checkpoint of ``config``'s model and dataset if it holds this very run (a
    comparison resumed: the same settings, seed and ``epochs``, and its best checkpoint still
    there), else ``None``; with why not (for the log)."""
    path = last_checkpoint_path(config)
    if not os.path.isfile(path):
        return None, f"no last-epoch checkpoint {path}"
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file: the run starts anew and replaces it
        return None, f"{path} is not readable ({err})"
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        return None, f"{path} is not a last-epoch checkpoint"
    saved = _config_dict(checkpoint.get("config") or {})
    changed = changed_keys(saved, config) + (["epochs"] if saved.get("epochs") != config["epochs"]
                                              else [])
    if changed:
        return None, f"{path} is another run's (it differs in {', '.join(changed[:4])})"
    best = checkpoint.get("best_model_file")
    if checkpoint.get("best_valid_result") is not None and not (best and os.path.isfile(best)):
        return None, f"the best checkpoint of {path}'s run, {best}, is missing"
    return path, ""


def _config_dict(config) -> Dict[str, Any]:
    return dict(getattr(config, "final_config_dict", config))


def _same(a, b) -> bool:
    try:
        equal = a == b
        if isinstance(equal, (bool, np.bool_)):
            return bool(equal)
        return bool(np.all(equal))
    except Exception:  # values that cannot be compared (arrays of other shapes, ...)
        return repr(a) == repr(b)


def changed_keys(saved, current) -> List[str]:
    """Config keys whose values differ between a checkpoint's run and this one, leaving out
    :data:`RESULT_NEUTRAL_KEYS`."""
    saved, current = _config_dict(saved), _config_dict(current)
    keys = (set(saved) | set(current)) - RESULT_NEUTRAL_KEYS
    missing = object()
    return sorted(k for k in keys if not _same(saved.get(k, missing), current.get(k, missing)))


def _loader_generator(loader) -> Optional[torch.Generator]:
    generator = getattr(loader, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None


def random_states(loaders: Dict[str, Any]) -> Dict[str, Any]:
    """Every random state the next epoch draws from."""
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "loaders": {},
    }
    for name, loader in loaders.items():
        generator = _loader_generator(loader)
        if generator is not None:
            states["loaders"][name] = generator.get_state()
    return states


def set_random_states(states: Dict[str, Any], loaders: Dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    for name, loader in loaders.items():
        generator = _loader_generator(loader)
        if generator is not None and name in states["loaders"]:
            generator.set_state(states["loaders"][name])


def atomic_save(obj, path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, then renamed over ``path``."""
    atomic_write_bytes(path, lambda f: torch.save(obj, f, pickle_protocol=4))


class ResumableTrainerMixin:
    """Writes the last-epoch checkpoint during ``fit`` and resumes from it; see the module
    docstring. Put it before a RecBole trainer class (:func:`resumable` does)."""

    _fit_saved = True

    def __init__(self, config, model):
        super().__init__(config, model)
        self.last_checkpoint_file = last_checkpoint_path(config)
        self._resumed_from: Optional[str] = None
        self._resumed_stopped = False
        self._pending_random_states: Optional[Dict[str, Any]] = None
        self._fit_loaders: Dict[str, Any] = {}
        self._epoch_trained: Optional[int] = None  # last epoch whose training finished
        self._epoch_written: Optional[int] = None  # last epoch in the last-epoch checkpoint

    # ---- writing ----------------------------------------------------------------------------
    @property
    def _writes_last_checkpoint(self) -> bool:
        # one process only: the random states of DDP workers differ (resume is refused there)
        return bool(self.config["single_spec"])

    def _last_state(self, epoch: int, stopped: bool) -> Dict[str, Any]:
        scheduler = getattr(self, "scheduler", None)
        history = getattr(self, "run_history", None)
        return {
            "format": FORMAT,
            "config": self.config,  # the Config object, as in RecBole's checkpoints
            "epoch": epoch,
            "stopped_early": stopped,
            "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score,
            "best_valid_result": self.best_valid_result,
            "best_model_file": self.saved_model_file,
            "train_loss_dict": dict(self.train_loss_dict),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if hasattr(scheduler, "state_dict") else None,
            "model_epoch": getattr(self.model, "current_epoch", None),
            "random_states": random_states(self._fit_loaders),
            "run_history": {k: list(v) for k, v in history.items()} if history else None,
        }

    def _write_last_checkpoint(self, epoch: int, stopped: bool = False) -> None:
        self._epoch_written = epoch
        if self._writes_last_checkpoint and self._fit_saved:
            atomic_save(self._last_state(epoch, stopped), self.last_checkpoint_file)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        # An epoch without validation is complete once the next one starts: write it first.
        if self._epoch_trained is not None and self._epoch_written != self._epoch_trained:
            self._write_last_checkpoint(self._epoch_trained)
        if self._pending_random_states is not None:  # a resumed run's first epoch
            set_random_states(self._pending_random_states, self._fit_loaders)
            self._pending_random_states = None
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func,
                                    show_progress=show_progress)
        self._epoch_trained = epoch_idx
        return loss

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False,
            callback_fn=None):
        if self._resumed_from is not None and (self._resumed_stopped or self.start_epoch >= self.epochs):
            why = ("early stopping had ended it" if self._resumed_stopped
                   else f"all {self.epochs} epochs are done")
            self.logger.info(f"Resumed run: nothing left to train ({why}); evaluating its best "
                             f"checkpoint {self.saved_model_file}")
            self.eval_collector.data_collect(train_data)  # what fit() collects for evaluate()
            return self.best_valid_score, self.best_valid_result
        self._fit_saved = saved
        self._fit_loaders = {"train": train_data}
        if valid_data:
            self._fit_loaders["valid"] = valid_data

        def after_validation(epoch_idx, valid_score):
            # RecBole calls this after early stopping's bookkeeping and the best checkpoint
            self._write_last_checkpoint(epoch_idx, stopped=self.cur_step > self.stopping_step)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        result = super().fit(train_data, valid_data, verbose=verbose, saved=saved,
                             show_progress=show_progress, callback_fn=after_validation)
        if self._epoch_trained is not None and self._epoch_written != self._epoch_trained:
            self._write_last_checkpoint(self._epoch_trained)
        return result

    # ---- resuming ---------------------------------------------------------------------------
    def resume_checkpoint(self, resume_file):
        """Continue the run ``resume_file`` holds (this module's last-epoch checkpoint; a RecBole
        best checkpoint is resumed RecBole's way, with a warning that it is not bit-identical)."""
        resume_file = str(resume_file)
        try:
            checkpoint = torch.load(resume_file, map_location=self.device, weights_only=False)
        except Exception as err:  # a truncated or foreign file
            raise ResumeError(f"cannot resume: {resume_file} is not a readable checkpoint ({err})") from err
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise ResumeError(f"cannot resume: {resume_file} is not a RecBole checkpoint")
        saved_config = _config_dict(checkpoint["config"] if checkpoint.get("config") is not None else {})
        for key in ("model", "dataset"):
            if str(saved_config.get(key)).lower() != str(self.config[key]).lower():
                raise ResumeError(f"cannot resume: {resume_file} is a checkpoint of {key} "
                                  f"'{saved_config.get(key)}', this run's is '{self.config[key]}'")
        if checkpoint.get("format") != FORMAT:
            super().resume_checkpoint(resume_file)
            self.logger.warning(
                f"{resume_file} is a best-model checkpoint, not a last-epoch one: training goes on "
                f"from epoch {self.start_epoch} without the random states, the early-stopping "
                "results or the optimizer's later steps, so it is not the run that was interrupted")
            self._resumed_from = resume_file
            return

        changed = changed_keys(saved_config, self.config)
        if changed:
            self.logger.warning(
                f"Resuming {resume_file} with a config that differs from its run in "
                + ", ".join(f"{k} ({saved_config.get(k)!r} -> {self.config[k]!r})" for k in changed)
                + ": the result is not the one the interrupted run would have given")
        if saved_config.get("epochs") != self.config["epochs"]:
            self.logger.info(f"Resuming with epochs={self.config['epochs']} "
                             f"(the run had epochs={saved_config.get('epochs')})")

        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler = getattr(self, "scheduler", None)
        if checkpoint.get("scheduler") is not None and hasattr(scheduler, "load_state_dict"):
            scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("model_epoch") is not None and hasattr(self.model, "set_epoch"):
            self.model.set_epoch(checkpoint["model_epoch"])

        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.best_valid_result = checkpoint["best_valid_result"]
        self.train_loss_dict = dict(checkpoint.get("train_loss_dict") or {})
        best = checkpoint.get("best_model_file")
        if best is not None:
            if self.best_valid_result is not None and not os.path.isfile(best):
                raise ResumeError(f"cannot resume {resume_file}: its run's best checkpoint {best} "
                                  "(what the run tests in the end) is missing")
            self.saved_model_file = best  # the resumed run keeps it up to date
        history = getattr(self, "run_history", None)
        if history is not None and checkpoint.get("run_history"):
            for key, values in checkpoint["run_history"].items():
                if key in history:
                    history[key][:0] = values
        self._pending_random_states = checkpoint["random_states"]
        self._resumed_stopped = bool(checkpoint.get("stopped_early"))
        self._resumed_from = resume_file
        self._epoch_trained = self._epoch_written = checkpoint["epoch"]
        self.logger.info(f"Resuming {resume_file}: epoch {checkpoint['epoch']} was the last one "
                         f"done; the best checkpoint is {self.saved_model_file}")


_RESUMABLE: Dict[type, type] = {}


def resumable(trainer_class: type) -> type:
    """``trainer_class`` with :class:`ResumableTrainerMixin` (one class per trainer class).

    Only trainers that train with RecBole's ``Trainer.fit`` loop; others are returned unchanged
    (see :func:`supports_resume`).
    """
    if issubclass(trainer_class, ResumableTrainerMixin) or not supports_resume(trainer_class):
        return trainer_class
    if trainer_class not in _RESUMABLE:
        _RESUMABLE[trainer_class] = type(
            f"Resumable{trainer_class.__name__}", (ResumableTrainerMixin, trainer_class),
            {"__module__": __name__, "__doc__": f"{trainer_class.__name__} with a last-epoch "
             "checkpoint and resume (recbole_faerec.trainer.resume)."})
    return _RESUMABLE[trainer_class]


def supports_resume(trainer_class: type) -> bool:
    """Whether ``trainer_class`` trains with RecBole's ``Trainer.fit`` (its own ``fit`` loop, as in
    RecBole's pre-training and tree trainers, cannot be resumed this way)."""
    return (isinstance(trainer_class, type) and issubclass(trainer_class, Trainer)
            and trainer_class.fit is Trainer.fit)
