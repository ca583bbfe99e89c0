"""When validation starts: ``eval_start_epoch`` (the authors' ``star_test``), for every RecBole trainer.

RecBole validates after every ``eval_step``-th training epoch from the first one on, so early
stopping (``stopping_step`` validations without a better score) can end a run in its first epochs.
FAERec's authors validate only once the epoch passes ``star_test`` (reference notes §2: 60 by
default; 20 and 30 in their amazon-beauty runs), which makes it a minimum training length: the
curriculum of eq. (11) gets to run before a validation score can stop it.

``eval_start_epoch: N`` (``props/overall.yaml``; 0 is RecBole's behaviour) trains epochs ``0 .. N-1``
without validating them (no validation score, no early-stopping step, no best checkpoint), then
validates every ``eval_step``-th epoch as RecBole does. The authors' ``epoch > star_test`` is
``eval_start_epoch: star_test + 1``. The compat fix ``trainer_epoch``
(:mod:`recbole_faerec.compat`) calls :func:`hold_validation` before each training epoch of any
RecBole trainer; :func:`check_eval_start` runs with the other evaluation checks when the plugin's
``Config`` is built.
"""

from __future__ import annotations

from recbole_faerec.settings import setting

KEY = "eval_start_epoch"


def check_eval_start(config) -> None:
    """``eval_start_epoch`` must be an integer from 0 to ``epochs - 1`` (else no epoch would ever be
    validated and no best model saved to test)."""
    from recbole_faerec.evaluator.popularity import EvaluationConfigError

    start = setting(config, KEY)
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise EvaluationConfigError(f"{KEY} must be a non-negative integer (the first validated "
                                    f"epoch, counted from 0), got {start!r}")
    epochs, eval_step = config["epochs"], config["eval_step"]
    if start and eval_step and eval_step > 0 and epochs is not None and start >= epochs:
        raise EvaluationConfigError(
            f"{KEY} {start} >= epochs {epochs}: no epoch would be validated and no best model "
            f"saved; lower it (--{KEY}=N, N < {epochs}) or raise epochs")


def hold_validation(trainer, epoch_idx: int) -> None:
    """Before training epoch ``epoch_idx``: make RecBole's ``fit`` skip this epoch's validation
    while ``epoch_idx < eval_start_epoch`` (it validates when ``(epoch_idx + 1) % eval_step == 0``),
    and restore the configured ``eval_step`` from the start epoch on."""
    start = setting(trainer.config, KEY)
    if not start:
        return
    configured = trainer.__dict__.setdefault("_configured_eval_step", trainer.eval_step)
    if configured <= 0:  # RecBole's "no validation": nothing to hold back
        return
    trainer.eval_step = configured if epoch_idx >= start else epoch_idx + 2


__all__ = ["KEY", "check_eval_start", "hold_validation"]
