r"""TADA's item co-occurrence model and candidate sets (``shared/docs/baselines-notes.md`` §1.1-1.3).

TADA (Dang et al., WWW 2026) replaces and inserts items in training sequences with items that are
related to them. Relatedness comes from two places, both computed on the **training part** only
(RecBole's training sequences: each user's longest training row and its target):

**The linear co-occurrence model** (SLIS, the closed form of Choi et al.'s SLIST; the authors'
``src/LIS.py``). With :math:`X \in \{0,1\}^{U \times m}` marking the items of each user's last 50
training items (``m`` = the items seen in training):

.. math::

    P = (X^\top X + \lambda I)^{-1}, \qquad
    \gamma_j = \begin{cases}\lambda & 1 - \lambda P_{jj} \le \xi \\ (1 - \xi) / P_{jj} & \text{otherwise}\end{cases}

    B = I - P\,\mathrm{diag}(\gamma), \qquad B_{jj} \leftarrow \min(B_{jj}, \xi)

with :math:`\lambda = 0.1`, :math:`\xi = 0.2`. Row ``i`` of ``B`` scores the items related to ``i``;
``top_similar`` keeps, for every item, the others with :math:`B_{ij} \ge` ``th`` (at most ``top_k``,
best first), or the plain ``top_k`` when none passes.

**Adjacency** in the training sequences: ``head_rel[h]`` = the tail items right before or after
head item ``h`` somewhere; ``tail_rel[t]`` = every item right before tail item ``t``.

**Candidate sets**: :math:`C_{head}(h) = head\_rel[h] \cup topk(h)`,
:math:`C_{tail}(t) = tail\_rel[t] \cup topk(t)`. Head items are the top ``head_ratio`` of the items
seen in training by training count (ties by first appearance), tail items the other seen items.

Memory: ``B`` is dense over the items seen in training, ``m x m`` float32, built and inverted in
place (amazon-beauty: 12,061 items seen in training, 0.54 GiB a matrix;
``benchmarks/tada_cooccurrence.py`` measures time and peak memory). The authors' dense form over every id of a 57,289-item catalogue (beauty-large-ids)
would take 13 GB a matrix: ``max_items`` (``tada_slis_max_items``) keeps the items in the most
training sequences, and the others get adjacency candidates only. Only the top-k lists and the
candidate sets are kept and cached (:func:`cooccurrence_model`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

LAMBDA, XI, WINDOW = 0.1, 0.2, 50


def slis_matrix(sequences: Sequence[np.ndarray], n_items: int, lam: float = LAMBDA, xi: float = XI,
                window: int = WINDOW, dtype=np.float32, max_items: Optional[int] = None):
    """``(items, B)``: the items seen in ``sequences`` (internal ids, ascending) and SLIS's ``B``
    over them (``B[a, b]`` relates ``items[a]`` to ``items[b]``). Each sequence counts its last
    ``window`` items. ``max_items`` keeps only that many of the items in the most sequences (ties
    by id): the dense matrices are ``m x m``, so a 57k-item catalogue would take 13 GB each."""
    from scipy import sparse

    rows, cols = [], []
    for u, seq in enumerate(sequences):
        distinct = np.unique(np.asarray(seq[-window:]))
        distinct = distinct[distinct > 0]
        rows.append(np.full(len(distinct), u))
        cols.append(distinct)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    items, counts = np.unique(cols, return_counts=True)
    if max_items is not None and len(items) > max_items:
        items = np.sort(items[np.argsort(-counts, kind="stable")[:max_items]])
        keep = np.isin(cols, items)
        rows, cols = rows[keep], cols[keep]
    local = np.searchsorted(items, cols)
    x = sparse.csr_matrix((np.ones(len(rows), dtype=dtype), (rows, local)),
                          shape=(len(sequences), len(items)))
    # X^T X accumulated over blocks of users (dense BLAS, one m x m matrix alive), then inverted
    # and turned into B in place: about one m x m matrix at the peak
    gram = np.zeros((len(items), len(items)), dtype=dtype)
    for start in range(0, x.shape[0], 2048):
        block = x[start:start + 2048].toarray()
        gram += block.T @ block
    gram[np.diag_indices_from(gram)] += lam
    from scipy.linalg import inv

    # X^T X + lambda I is symmetric: its transpose is a Fortran-ordered view LAPACK inverts in
    # place, and the transposed result is P again, C-ordered
    b = inv(gram.T, overwrite_a=True, check_finite=False).T  # P
    del gram
    diag = np.diag(b).copy()
    gamma = np.where(1 - lam * diag <= xi, lam, (1 - xi) / diag).astype(dtype)
    b *= -gamma[None, :]  # - P diag(gamma) ...
    b[np.diag_indices_from(b)] += 1  # ... + I
    b[np.diag_indices_from(b)] = np.minimum(np.diag(b), xi)
    return items, b


def top_similar(items: np.ndarray, b: np.ndarray, th: float, top_k: int) -> Dict[int, np.ndarray]:
    """For every item of ``items``: the other items with ``B >= th`` (at most ``top_k``, best
    first), or the plain ``top_k`` best when none passes (the authors' ``LIS.py:36-75``)."""
    out = {}
    for a, item in enumerate(items):
        row = b[a].copy()
        row[a] = -np.inf  # not itself
        order = np.argsort(-row, kind="stable")[:top_k]
        passed = order[row[order] >= th]
        out[int(item)] = items[passed if len(passed) else order]
    return out


def training_head(sequences: Sequence[np.ndarray], n_items: int, head_ratio: float) -> np.ndarray:
    """``[n_items]`` 1 for head, 0 for tail, -1 for items not seen in training: head = the top
    ``head_ratio`` of the seen items by training count, ties by first appearance."""
    counts = np.zeros(n_items, dtype=np.int64)
    first = np.full(n_items, np.iinfo(np.int64).max)
    position = 0
    for seq in sequences:
        seq = np.asarray(seq)
        seq = seq[seq > 0]
        np.add.at(counts, seq, 1)
        first[seq] = np.minimum(first[seq], position + np.arange(len(seq)))
        position += len(seq)
    seen = np.flatnonzero(counts > 0)
    order = seen[np.lexsort((first[seen], -counts[seen]))]
    label = np.full(n_items, -1, dtype=np.int8)
    label[seen] = 0
    label[order[: int(head_ratio * len(seen))]] = 1
    return label


def adjacency(sequences: Sequence[np.ndarray], label: np.ndarray, window: int = WINDOW):
    """``(head_rel, tail_rel)``: for each head item the tail items right before or after it, for
    each tail item every item right before it, over each sequence's last ``window`` items."""
    head_rel: Dict[int, set] = {}
    tail_rel: Dict[int, set] = {}
    for seq in sequences:
        seq = np.asarray(seq[-window:])
        seq = seq[seq > 0]
        for prev, cur in zip(seq[:-1], seq[1:]):
            prev, cur = int(prev), int(cur)
            if label[cur] == 0:
                tail_rel.setdefault(cur, set()).add(prev)
                if label[prev] == 1:
                    head_rel.setdefault(prev, set()).add(cur)
            if label[prev] == 0 and label[cur] == 1:
                head_rel.setdefault(cur, set()).add(prev)
    return head_rel, tail_rel


@dataclass
class CandidateSets:
    """TADA's candidates: ``head[h]`` (for T-Substitute) and ``tail[t]`` (for T-Insert), each a
    sorted array of internal item ids; ``label`` is the training head/tail label of every id."""

    label: np.ndarray
    head: Dict[int, np.ndarray]
    tail: Dict[int, np.ndarray]


def candidate_sets(sequences: Sequence[np.ndarray], n_items: int, head_ratio: float, th: float,
                   top_k: int, lam: float = LAMBDA, xi: float = XI,
                   max_items: Optional[int] = None) -> CandidateSets:
    """:math:`C_{head}(h) = head\\_rel[h] \\cup topk(h)` and :math:`C_{tail}(t) = tail\\_rel[t]
    \\cup topk(t)` (see the module); items left out of SLIS by ``max_items`` have adjacency
    candidates only."""
    label = training_head(sequences, n_items, head_ratio)
    items, b = slis_matrix(sequences, n_items, lam, xi, max_items=max_items)
    similar = top_similar(items, b, th, top_k)
    del b
    head_rel, tail_rel = adjacency(sequences, label)
    none = np.zeros(0, dtype=np.int64)  # an item seen in training, but not in the last 50 items

    def union(rel, item):
        return np.unique(np.concatenate([np.fromiter(rel.get(item, ()), dtype=np.int64),
                                         similar.get(item, none)])).astype(np.int64)

    head = {int(h): union(head_rel, int(h)) for h in np.flatnonzero(label == 1)}
    tail = {int(t): union(tail_rel, int(t)) for t in np.flatnonzero(label == 0)}
    return CandidateSets(label, head, tail)


# ---- the cache beside the atomic files --------------------------------------------------------
def _digest(sequences: Sequence[np.ndarray], settings: Dict) -> str:
    h = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    for seq in sequences:
        h.update(np.asarray(seq, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


def pack_sets(sets: Dict[int, np.ndarray], n_items: int):
    """``(offsets, flat)``: item ``i``'s set is ``flat[offsets[i]:offsets[i + 1]]`` (empty for
    items without one)."""
    offsets = np.zeros(n_items + 1, dtype=np.int64)
    for item, values in sets.items():
        offsets[item + 1] = len(values)
    offsets = np.cumsum(offsets)
    flat = np.zeros(offsets[-1], dtype=np.int64)
    for item, values in sets.items():
        flat[offsets[item]:offsets[item + 1]] = values
    return offsets, flat


def _unpack(offsets: np.ndarray, flat: np.ndarray, items: np.ndarray) -> Dict[int, np.ndarray]:
    return {int(i): flat[offsets[i]:offsets[i + 1]] for i in items}


def cooccurrence_model(path: str, sequences: Sequence[np.ndarray], n_items: int, head_ratio: float,
                       th: float, top_k: int, logger=None,
                       max_items: Optional[int] = None) -> CandidateSets:
    """:func:`candidate_sets`, read from ``path`` (an ``.npz``) when it was made from the same
    training sequences and settings, else computed and written there (temporary file + rename)."""
    settings = {"lambda": LAMBDA, "xi": XI, "window": WINDOW, "head_ratio": head_ratio, "th": th,
                "top_k": top_k, "n_items": n_items, "max_items": max_items}
    digest = _digest(sequences, settings)
    if os.path.isfile(path):
        with np.load(path) as f:
            if str(f["digest"]) == digest:
                label = f["label"]
                if logger:
                    logger.info(f"TADA candidate sets: reused {path}")
                return CandidateSets(label, _unpack(f["head_offsets"], f["head"], np.flatnonzero(label == 1)),
                                     _unpack(f["tail_offsets"], f["tail"], np.flatnonzero(label == 0)))
    seen = len(np.unique(np.concatenate([np.asarray(q[-WINDOW:]) for q in sequences])))
    if logger and max_items is not None and seen - 1 > max_items:
        logger.warning(f"TADA: {seen - 1} items seen in training; the co-occurrence model keeps the "
                       f"{max_items} in the most sequences (tada_slis_max_items), the others get "
                       f"adjacency candidates only")
    sets = candidate_sets(sequences, n_items, head_ratio, th, top_k, max_items=max_items)
    head_offsets, head = pack_sets(sets.head, n_items)
    tail_offsets, tail = pack_sets(sets.tail, n_items)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    np.savez_compressed(tmp, digest=np.array(digest), label=sets.label, head_offsets=head_offsets,
                        head=head, tail_offsets=tail_offsets, tail=tail,
                        settings=np.array(json.dumps(settings)))
    os.replace(tmp, path)
    if logger:
        logger.info(f"TADA candidate sets: computed and cached in {path}")
    return sets


def training_sequences(dataset, item_seq_field: str, length_field: str, target_field: str,
                       uid_field: str) -> List[np.ndarray]:
    """Each user's training items, oldest first: the longest training row's input and its target
    (RecBole's leave-one-out training part, ``s[:-2]``, within ``MAX_ITEM_LIST_LENGTH`` + 1)."""
    from recbole_faerec.model.positions import longest_rows

    feat = dataset.inter_feat
    lens = feat[length_field].numpy()
    first = longest_rows(feat[uid_field].numpy(), lens)
    seqs, targets = feat[item_seq_field].numpy(), feat[target_field].numpy()
    return [np.append(seqs[r, : lens[r]], targets[r]) for r in first]


__all__ = ["CandidateSets", "adjacency", "candidate_sets", "cooccurrence_model", "pack_sets",
           "slis_matrix", "top_similar", "training_head", "training_sequences"]
