"""Training on every position of each user's sequence (``train_positions: all``).

RecBole trains a sequential model on prefixes: every prefix of a user's training history is a row
with one target, its next item (``train_positions: last``, RecBole's way). The original SASRec,
and FAERec's authors' code, instead feed each user's training sequence once and supervise every
position with the item that follows it (reference notes §1 "Splits": input ``s[:-3]``, targets
``s[1:-2]``). Both see the same targets; the second runs the encoder once per user instead of
once per prefix, about 7x less compute on amazon-beauty, and a batch is a batch of users.

With ``train_positions: all``:

* :func:`one_row_per_user` keeps each user's longest training prefix (its whole training sequence,
  the last ``MAX_ITEM_LIST_LENGTH`` items) in the training loader; the plugin's
  :func:`~recbole_faerec.quick_start.load_dataset` calls it.
* :func:`all_positions_loss` wraps a causal backbone's ``calculate_loss``: the backbone's own
  ``forward`` gives every position's output (its final ``gather_indexes`` is skipped), position
  ``t`` is scored against item ``t + 1`` (the last against the row's target), and the backbone's
  own loss (CE over all items, or BPR/BCE with one negative per position) runs on those pairs,
  unchanged. The negatives are drawn by :func:`sample_negatives`: uniformly from the items that are
  not in the row's sequence, as RecBole's own sampler draws them for prefix rows (it excludes the
  user's training items) and as the authors' code does (it also excludes the user's validation and
  test items, which a training step here never sees).

Only backbones whose output at position ``t`` depends on positions ``<= t`` qualify (else a
position would see its own target): RecBole's SASRec and GRU4Rec and the plugin's FMLPRec, LRURec
and gMLP; any other model refuses the setting when it is built.

Where the padding goes (``padding_side``). RecBole keeps a sequence's items at positions
``0 .. n-1`` and pads after them, so SASRec's position embedding counts from the first item. The
original SASRec and FAERec's authors' code pad before the items (``left``): the last item is always
at position ``L - 1`` and the position embedding counts back from the most recent item.
:func:`padding_forward` wraps RecBole's ``SASRec.forward`` (and so every method built on it that
keeps its ``forward``): with ``left`` it right-aligns the sequence, runs the backbone, reads the
output at ``L - 1`` and moves per-position outputs back to RecBole's alignment, so losses,
``train_positions``, history exclusion and every other reader see RecBole's layout. A model with
its own ``forward`` warns when it is built and keeps RecBole's layout.
"""

from __future__ import annotations

import functools
from logging import getLogger

import numpy as np
import torch

from recbole_faerec.settings import SettingError, setting

KEY = "train_positions"
VALUES = ("last", "all")
PADDING_KEY = "padding_side"
PADDING_VALUES = ("right", "left")
#: RecBole's own backbones whose per-position outputs are causal and end in ``gather_indexes``
RECBOLE_CAUSAL = ("SASRec", "GRU4Rec")


class TrainPositionsError(SettingError):
    """``train_positions`` set to something the model or data cannot do."""


def supports_all_positions(cls) -> bool:
    """Whether ``cls`` (a model class) can train on every position: a causal backbone."""
    return any(getattr(base, "causal_positions", False) or (
        base.__name__ in RECBOLE_CAUSAL and base.__module__.startswith("recbole.model."))
        for base in cls.__mro__)


def positions_init(init):
    """Wrap ``SequentialRecommender.__init__``: read ``train_positions`` and refuse ``all`` for a
    model that cannot do it, naming the ones that can."""

    @functools.wraps(init)
    def wrapper(self, config, dataset, *args, **kwargs):
        init(self, config, dataset, *args, **kwargs)
        value = setting(config, KEY)
        if value not in VALUES:
            raise TrainPositionsError(f"{KEY} '{value}' is unknown; expected one of {VALUES}")
        if value == "all" and not supports_all_positions(type(self)):
            raise TrainPositionsError(
                f"{type(self).__name__} cannot train on every position ({KEY}: all): its output at "
                f"a position is not causal or not per position; the models that can: SASRec, "
                f"GRU4Rec, FMLPRec, LRURec, gMLP and their FAERec_ versions")
        self.train_positions = value
        side = setting(config, PADDING_KEY)
        if side not in PADDING_VALUES:
            raise TrainPositionsError(f"{PADDING_KEY} '{side}' is unknown; expected one of {PADDING_VALUES}")
        if side == "left" and not getattr(type(self).forward, "_recbole_faerec_padding", False):
            # a warning, not an error: presets/reference.yaml serves every backbone
            getLogger().warning(
                f"{type(self).__name__} cannot pad sequences on the left ({PADDING_KEY}: left is "
                f"RecBole's SASRec.forward and the methods that keep it: FAERec_SASRec, "
                f"LLMInit_SASRec, ...); it runs its own forward, on RecBole's layout")
            side = "right"
        self.padding_side = side

    wrapper._recbole_faerec_compat = True
    return wrapper


def right_align(x: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Rows ``x`` ``[B, L, ...]`` padded after their ``length`` items (RecBole's layout) moved so
    that each row's last item sits at ``L - 1``, zeros before its first: left padding, under which
    positions count back from the end of the sequence."""
    width = x.shape[1]
    index = torch.arange(width, device=x.device).unsqueeze(0) - (width - length).unsqueeze(1)
    return _gather_rows(x, index)


def left_align(x: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`right_align`: each row's ``length`` last positions moved to
    ``0 .. length - 1``, zeros after them (RecBole's layout)."""
    width = x.shape[1]
    index = torch.arange(width, device=x.device).unsqueeze(0) + (width - length).unsqueeze(1)
    return _gather_rows(x, index)


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[b, t] = x[b, index[b, t]]`` where ``0 <= index < L``, zero elsewhere."""
    batch, width = x.shape[:2]
    extra = [1] * (x.dim() - 2)
    valid = ((index >= 0) & (index < width)).view(batch, width, *extra)
    index = index.clamp(0, width - 1).view(batch, width, *extra).expand_as(x)
    return torch.where(valid, x.gather(1, index), torch.zeros((), dtype=x.dtype, device=x.device))


def padding_forward(forward):
    """Wrap RecBole's ``SASRec.forward`` for ``padding_side: left`` (see the module)."""

    @functools.wraps(forward)
    def wrapper(self, item_seq, item_seq_len):
        if getattr(self, "padding_side", "right") != "left":
            return forward(self, item_seq, item_seq_len)
        states = getattr(self, "sequence_states", None)
        width = item_seq.shape[1]
        output = forward(self, right_align(item_seq, item_seq_len), torch.full_like(item_seq_len, width))
        if output.dim() == 3:  # every position (its gather_indexes skipped): RecBole's layout
            output = left_align(output, item_seq_len)
        kept = getattr(self, "sequence_states", None)
        if kept is not None and kept is not states:  # a method that keeps every position's state
            self.sequence_states = left_align(kept, item_seq_len)
        return output

    wrapper._recbole_faerec_compat = True
    wrapper._recbole_faerec_padding = True
    return wrapper


def all_positions_loss(calculate_loss):
    """Wrap a causal backbone's ``calculate_loss`` for ``train_positions: all`` (see the module)."""

    @functools.wraps(calculate_loss)
    def wrapper(self, interaction):
        if getattr(self, "train_positions", "last") != "all":
            return calculate_loss(self, interaction)
        return _every_position(self, calculate_loss, interaction)

    wrapper._recbole_faerec_compat = True
    return wrapper


def position_targets(item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor):
    """``(mask, targets)``: ``mask[b, t]`` for the positions ``t < item_seq_len[b]``, and the item
    each position is scored against: ``item_seq[b, t + 1]``, the row's ``target`` at the last."""
    batch, length = item_seq.shape
    positions = torch.arange(length, device=item_seq.device).unsqueeze(0)
    mask = positions < item_seq_len.unsqueeze(1)
    targets = torch.zeros_like(item_seq)
    targets[:, :-1] = item_seq[:, 1:]
    last = (item_seq_len - 1).clamp(min=0)
    targets[torch.arange(batch, device=item_seq.device), last] = target
    return mask, targets


def _every_position(model, calculate_loss, interaction):
    item_seq = interaction[model.ITEM_SEQ]
    item_seq_len = interaction[model.ITEM_SEQ_LEN]
    _warn_if_prefix_rows(model, interaction)
    mask, targets = position_targets(item_seq, item_seq_len, interaction[model.POS_ITEM_ID])
    forward = model.forward

    def every_position_forward(seq, seq_len):
        output = every_position_output(model, seq, seq_len, forward)
        if getattr(model, "keep_states", False):  # methods that read every position's state
            model.sequence_states = output
        return output[mask]

    flat = {model.POS_ITEM_ID: targets[mask]}
    if model.NEG_ITEM_ID in interaction.interaction:  # BPR/BCE: one negative per position
        flat[model.NEG_ITEM_ID] = sample_negatives(item_seq, targets, mask, model.n_items)
    # the step's negatives, for methods that use them beyond the loss (FAERec aligns them)
    model.position_negatives = flat.get(model.NEG_ITEM_ID)
    per_position = _Positions(interaction, flat)
    model.forward = every_position_forward
    try:
        return calculate_loss(model, per_position)
    finally:
        del model.forward


def every_position_output(model, seq: torch.Tensor, seq_len: torch.Tensor, forward=None) -> torch.Tensor:
    """The causal backbone's output at every position ``[B, L, d]``: its own ``forward`` (or the
    given one) with its final ``gather_indexes`` skipped."""
    forward = forward or model.forward
    model.gather_indexes = lambda output, index: output  # keep every position
    try:
        output = forward(seq, seq_len)
    finally:
        del model.gather_indexes
    if output.dim() != 3 or output.shape[:2] != seq.shape:
        raise TrainPositionsError(f"{type(model).__name__}.forward gave {tuple(output.shape)}, "
                                  f"not one output per position {tuple(seq.shape)}")
    return output


def sample_negatives(item_seq: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                     n_items: int, max_rounds: int = 100) -> torch.Tensor:
    """One negative for each position of ``mask`` (flattened as ``targets[mask]``): an item id drawn
    uniformly from ``1 .. n_items - 1`` that is neither in its row's input sequence nor among its
    row's targets. Draws that hit the row are drawn again (a few rounds: the row's items are a
    small share of the catalogue); a row that holds every item cannot get a negative (an error)."""
    rows = torch.arange(item_seq.shape[0], device=item_seq.device).unsqueeze(1).expand_as(mask)[mask]
    row_items = torch.cat([item_seq, targets * mask], dim=1)  # padding 0 is never drawn
    negatives = torch.randint(1, n_items, rows.shape, device=item_seq.device)
    for _ in range(max_rounds):
        hit = (row_items[rows] == negatives.unsqueeze(1)).any(dim=1)
        if not hit.any():
            return negatives
        negatives[hit] = torch.randint(1, n_items, (int(hit.sum()),), device=item_seq.device)
    raise TrainPositionsError(f"no negative found outside the sequence of {int(hit.sum())} "
                              f"position(s) after {max_rounds} draws ({n_items - 1} items)")


class _Positions:
    """The batch as the backbone's ``calculate_loss`` reads it: the sequences as they are, the
    target (and negative) of every position, flattened."""

    def __init__(self, interaction, flat):
        self._interaction = interaction
        self._flat = flat
        self.interaction = {**interaction.interaction, **flat}

    def __getitem__(self, key):
        return self._flat[key] if key in self._flat else self._interaction[key]

    def __contains__(self, key):
        return key in self.interaction


def _warn_if_prefix_rows(model, interaction) -> None:
    """Once per model: several rows of one user in a batch mean RecBole's prefix rows, which
    ``train_positions: all`` would count over and over (load the data with
    ``recbole_faerec.quick_start.load_dataset``, or :func:`one_row_per_user`)."""
    if getattr(model, "_prefix_rows_checked", False) or model.USER_ID not in interaction.interaction:
        return
    model._prefix_rows_checked = True
    users = interaction[model.USER_ID]
    if torch.unique(users).numel() < users.numel():
        getLogger().warning(
            f"{type(model).__name__}: {KEY} is 'all' but a training batch holds several rows of one "
            "user (RecBole's prefix rows): every position of every prefix is trained on. Build the "
            "training data with recbole_faerec.quick_start.load_dataset, or pass RecBole's training "
            "loader through recbole_faerec.model.positions.one_row_per_user")


def longest_rows(users: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The row of each user's longest prefix (its whole training sequence), by ascending user id."""
    order = np.lexsort((-lengths, users))  # by user, the longest prefix first
    return order[np.unique(users[order], return_index=True)[1]]


def one_row_per_user(train_data, config):
    """RecBole's training loader with only each user's longest prefix (its training sequence), for
    ``train_positions: all``; the loader itself when the setting is ``last``."""
    if setting(config, KEY) != "all":
        return train_data
    from recbole_faerec import compat

    if "train_positions" not in compat.applied():
        raise TrainPositionsError(f"{KEY}: all needs the compat fix 'train_positions', which "
                                  f"${compat.SKIP_ENV} switches off")
    dataset = train_data._dataset
    feat = dataset.inter_feat
    users = feat[dataset.uid_field].numpy()
    keep = torch.as_tensor(np.sort(longest_rows(users, feat[config["ITEM_LIST_LENGTH_FIELD"]].numpy())))
    getLogger().info(f"{KEY}: all: {len(keep)} training rows (one per user) of {len(users)} prefixes")
    rows = dataset.copy(feat[keep])
    return type(train_data)(config, rows, train_data._sampler, shuffle=config["shuffle"])


__all__ = ["KEY", "PADDING_KEY", "TrainPositionsError", "all_positions_loss", "every_position_output",
           "left_align", "longest_rows", "one_row_per_user", "padding_forward", "position_targets",
           "positions_init", "right_align", "sample_negatives", "supports_all_positions"]
