"""History-excluded full ranking for sequential models, inside RecBole's evaluator.

RecBole 1.2.1 ranks every item for a sequential model's evaluation row, the user's own earlier
items included; general models get their training history masked, sequential ones never. The
authors' code of FAERec (and most of the S3Rec family) takes the history out. With
``eval_exclude_history: True`` the items of each evaluated row's input sequence (``item_id_list``:
the user's earlier items, at most ``MAX_ITEM_LIST_LENGTH`` of them) get the score
``eval_history_score`` after the model scored them:

* ``-inf`` (the default): they leave the ranking, as RecBole does for general models. A row whose
  target repeats one of its history items can then never be hit: it counts as a miss (Hit and NDCG
  0). :func:`targets_in_history` counts such rows (the comparison runner reports them).
* ``0``: the authors' code (``reference-faerec.md`` §1, "history scored 0"): history items stay in
  the ranking with score 0, above every item the model scores below 0.

The authors mask the whole history; here it is the input sequence, which is the whole history for
users with at most ``MAX_ITEM_LIST_LENGTH`` earlier items.

:func:`install_history_exclusion` wraps :meth:`recbole.trainer.Trainer._full_sort_batch_eval`
(``import recbole_faerec`` does it), so every RecBole trainer, the plugin's runner and a user's own
RecBole script all honour the key; it changes nothing while the key is False (RecBole's behaviour).
"""

from __future__ import annotations

import functools
import math

import torch

from recbole_faerec.evaluator.popularity import EvaluationConfigError
from recbole_faerec.settings import setting

KEY = "eval_exclude_history"
SCORE_KEY = "eval_history_score"


def history_score(config) -> float:
    """The score history items get (``eval_history_score``; ``-inf`` when unset)."""
    value = setting(config, SCORE_KEY)
    return -math.inf if value is None else float(value)


def check_history_settings(config) -> None:
    """The key only works for full ranking: anything else is an error, not a silent no-op."""
    value = setting(config, KEY)
    if not isinstance(value, bool):
        raise EvaluationConfigError(f"{KEY} must be True or False, got {value!r}")
    score = setting(config, SCORE_KEY)
    if score is not None:
        try:
            score = float(score)
        except (TypeError, ValueError):
            raise EvaluationConfigError(
                f"{SCORE_KEY} must be a number (-inf: history items leave the ranking; 0: the "
                f"authors' code), got {score!r}") from None
        if not (score == -math.inf or math.isfinite(score)):
            raise EvaluationConfigError(f"{SCORE_KEY} must be -inf or a finite number, got {score}")
    if not value:
        return
    mode = ((setting(config, "eval_args") or {}).get("mode") or "full")
    modes = mode.values() if isinstance(mode, dict) else [mode]
    if any(m != "full" for m in modes):
        raise EvaluationConfigError(
            f"{KEY} takes history items out of the full ranking, but eval_args.mode is {mode!r}: "
            "use mode 'full' or drop eval_exclude_history")


def history_mask(interaction, model, n_items: int) -> torch.Tensor | None:
    """Boolean ``rows x n_items``: the items of each row's input sequence (padding excluded);
    None for a model without an input sequence (not sequential)."""
    field = getattr(model, "ITEM_SEQ", None)
    if field is None or field not in interaction.interaction:
        return None
    seq = interaction[field]
    mask = torch.zeros(seq.shape[0], n_items, dtype=torch.bool, device=seq.device)
    mask.scatter_(1, seq.long(), True)
    mask[:, 0] = False
    return mask


def exclude_history(scores: torch.Tensor, interaction, model, config) -> torch.Tensor:
    """``scores`` (rows x items) with each row's history items set to ``eval_history_score``."""
    mask = history_mask(interaction, model, scores.shape[1])
    if mask is not None:
        scores[mask.to(scores.device)] = history_score(config)
    return scores


def targets_in_history(dataset, item_seq_field: str = "item_id_list") -> int:
    """How many evaluation rows of a sequential ``dataset`` have their target in their input
    sequence (misses under ``eval_history_score: -inf``)."""
    feat = dataset.inter_feat
    if item_seq_field not in feat:
        return 0
    seq = feat[item_seq_field].numpy()
    target = feat[dataset.iid_field].numpy()
    return int((seq == target[:, None]).any(axis=1).sum())


def _with_history_exclusion(method):
    @functools.wraps(method)
    def wrapper(self, batched_data):
        interaction, scores, positive_u, positive_i = method(self, batched_data)
        if setting(self.config, KEY):
            scores = exclude_history(scores, interaction.to(scores.device), self.model, self.config)
        return interaction, scores, positive_u, positive_i

    wrapper._recbole_faerec_history = True
    return wrapper


def install_history_exclusion() -> None:
    """Wrap RecBole's full-sort batch evaluation once (idempotent)."""
    from recbole.trainer.trainer import Trainer

    if not getattr(Trainer._full_sort_batch_eval, "_recbole_faerec_history", False):
        Trainer._full_sort_batch_eval = _with_history_exclusion(Trainer._full_sort_batch_eval)


__all__ = ["check_history_settings", "exclude_history", "history_mask", "history_score",
           "install_history_exclusion", "targets_in_history"]
