"""TADA's tail-aware augmentation operators on RecBole's training rows (baselines-notes §1.4).

Each training row (an item sequence, right-padded with 0, and its targets) gets two aligned views
from one operator, drawn per row (the authors' ``src/datasets.py:123-170``):

* which one: **T-Insert** with probability ``1 - len / max_len``, else **T-Substitute** (always
  T-Substitute for a full-length row);
* the rate ``p ~ U(rate_a, rate_b)``, one draw per row;
* **T-Substitute**: view 1 is the row; in view 2 each head item ``h`` with candidates is replaced,
  with probability ``p``, by a uniform draw from ``C_head(h)``; targets unchanged;
* **T-Insert**: for each tail item ``t`` with candidates, with probability ``p``, view 1 holds
  ``t, t`` and view 2 holds ``c, t`` (``c`` uniform from ``C_tail(t)``) where the row held ``t``;
  the position's target (and negative) is duplicated, so the views stay aligned; the views keep
  their last ``max_len`` positions.

The candidate sets come from :mod:`recbole_faerec.data.cooccurrence`. Draws use a
``numpy.random.Generator`` passed in, so a run is reproducible from RecBole's seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from recbole_faerec.data.cooccurrence import CandidateSets, pack_sets
from recbole_faerec.model.positions import right_align  # re-exported: TADA pairs views by it
from recbole_faerec.settings import SettingError


@dataclass
class PackedSets:
    """Candidate sets as one flat array per kind: ``flat[offsets[i]:offsets[i + 1]]`` are item
    ``i``'s candidates (empty for items of the other kind)."""

    offsets: np.ndarray
    flat: np.ndarray

    @classmethod
    def of(cls, sets: Dict[int, np.ndarray], n_items: int) -> "PackedSets":
        return cls(*pack_sets(sets, n_items))

    def count(self, items: np.ndarray) -> np.ndarray:
        return self.offsets[items + 1] - self.offsets[items]

    def draw(self, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One uniform candidate of each of ``items`` (each must have at least one)."""
        picks = np.floor(rng.random(len(items)) * self.count(items)).astype(np.int64)
        return self.flat[self.offsets[items] + picks]


@dataclass
class Views:
    """Two aligned views of a batch of rows: sequences ``[B, L]`` (right-padded), lengths ``[B]``,
    each position's target ``[B, L]`` (0 beyond the length) and negative (when given), and which
    operator made each row (True: T-Insert)."""

    view1: np.ndarray
    view2: np.ndarray
    length: np.ndarray
    targets: np.ndarray
    negatives: Optional[np.ndarray]
    inserted: np.ndarray


class TadaOperators:
    """T-Substitute and T-Insert over the candidate sets of one dataset (see the module)."""

    def __init__(self, sets: CandidateSets, n_items: int, rate_a: float, rate_b: float,
                 max_len: int):
        if not 0 <= rate_a <= rate_b <= 1:
            raise SettingError(f"TADA rates must satisfy 0 <= rate_a <= rate_b <= 1, got {rate_a}, {rate_b}")
        self.head = PackedSets.of(sets.head, n_items)
        self.tail = PackedSets.of(sets.tail, n_items)
        self.rate_a, self.rate_b, self.max_len = rate_a, rate_b, max_len

    def substitute(self, seq: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
        """View 2 of T-Substitute for one row's items (no padding)."""
        out = seq.copy()
        chosen = (self.head.count(seq) > 0) & (rng.random(len(seq)) < rate)
        if chosen.any():
            out[chosen] = self.head.draw(seq[chosen], rng)
        return out

    def insert(self, seq: np.ndarray, targets: np.ndarray, negatives: Optional[np.ndarray],
               rate: float, rng: np.random.Generator):
        """``(view1, view2, targets, negatives)`` of T-Insert for one row (no padding), before the
        views are cut to their last ``max_len`` positions."""
        chosen = (self.tail.count(seq) > 0) & (rng.random(len(seq)) < rate)
        if not chosen.any():
            return seq, seq.copy(), targets, negatives
        repeat = np.where(chosen, 2, 1)
        view1 = np.repeat(seq, repeat)
        view2 = view1.copy()
        first = np.cumsum(repeat) - repeat  # where each original position starts in the views
        view2[first[chosen]] = self.tail.draw(seq[chosen], rng)
        return (view1, view2, np.repeat(targets, repeat),
                None if negatives is None else np.repeat(negatives, repeat))

    def __call__(self, item_seq: np.ndarray, length: np.ndarray, targets: np.ndarray,
                 negatives: Optional[np.ndarray], rng: np.random.Generator) -> Views:
        """The two views of every row: ``item_seq`` ``[B, L]`` right-padded, ``length`` ``[B]``,
        ``targets`` (and ``negatives``) ``[B, L]`` per position."""
        batch, width = item_seq.shape
        out1 = np.zeros((batch, width), dtype=np.int64)
        out2 = np.zeros((batch, width), dtype=np.int64)
        out_t = np.zeros((batch, width), dtype=np.int64)
        out_n = None if negatives is None else np.zeros((batch, width), dtype=np.int64)
        out_len = np.zeros(batch, dtype=np.int64)
        inserted = np.zeros(batch, dtype=bool)
        for b in range(batch):
            n = int(length[b])
            seq, tgt = item_seq[b, :n], targets[b, :n]
            neg = None if negatives is None else negatives[b, :n]
            rate = rng.uniform(self.rate_a, self.rate_b)
            if rng.random() < 1 - n / self.max_len:
                inserted[b] = True
                v1, v2, tgt, neg = self.insert(seq, tgt, neg, rate, rng)
                keep = slice(max(0, len(v1) - min(self.max_len, width)), None)
                v1, v2, tgt = v1[keep], v2[keep], tgt[keep]
                neg = None if neg is None else neg[keep]
            else:
                v1, v2 = seq, self.substitute(seq, rate, rng)
            m = len(v1)
            out1[b, :m], out2[b, :m], out_t[b, :m], out_len[b] = v1, v2, tgt, m
            if out_n is not None:
                out_n[b, :m] = neg
        return Views(out1, out2, out_len, out_t, out_n, inserted)


__all__ = ["PackedSets", "TadaOperators", "Views", "right_align"]
