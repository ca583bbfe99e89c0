"""TADA's operators (recbole_faerec/model/tada_ops.py) on hand-made sequences: which positions
change, aligned views, the duplicated targets and negatives of T-Insert, the operator choice."""

import numpy as np

from recbole_faerec.data.cooccurrence import CandidateSets
from recbole_faerec.model.tada_ops import TadaOperators

# items 1, 2 are head; 3, 4, 5 tail; 5 has no candidates
SETS = CandidateSets(label=np.array([-1, 1, 1, 0, 0, 0, -1, -1]),
                     head={1: np.array([3, 4]), 2: np.array([5])},
                     tail={3: np.array([1]), 4: np.array([2, 5]), 5: np.array([], dtype=np.int64)})


def ops(max_len=8, rate=1.0):
    return TadaOperators(SETS, 8, rate, rate, max_len)


def test_t_substitute_replaces_head_items_by_their_candidates():
    seq = np.array([1, 3, 2, 5, 1])
    rng = np.random.default_rng(0)
    view2 = ops().substitute(seq, 1.0, rng)
    assert view2[1] == 3 and view2[3] == 5  # tail items stay
    assert view2[0] in (3, 4) and view2[4] in (3, 4) and view2[2] == 5  # head items replaced
    assert np.array_equal(ops().substitute(seq, 0.0, rng), seq)  # rate 0: nothing


def test_t_insert_doubles_tail_items_and_their_targets():
    seq, targets, negatives = np.array([1, 3, 2, 4, 5]), np.array([3, 2, 4, 5, 6]), np.array([7, 7, 6, 7, 6])
    rng = np.random.default_rng(0)
    v1, v2, t, n = ops().insert(seq, targets, negatives, 1.0, rng)
    assert v1.tolist() == [1, 3, 3, 2, 4, 4, 5]  # 3 and 4 have candidates, 5 has none
    assert v2[[0, 2, 3, 5, 6]].tolist() == [1, 3, 2, 4, 5]  # aligned: the same item, or ...
    assert v2[1] == 1 and v2[4] in (2, 5)  # ... a candidate of the tail item that follows it
    assert t.tolist() == [3, 2, 2, 4, 5, 5, 6] and n.tolist() == [7, 7, 7, 6, 7, 7, 6]


def test_a_batch_gets_one_operator_per_row_and_keeps_the_last_positions():
    item_seq = np.array([[1, 3, 4, 0, 0], [1, 2, 1, 2, 1]])
    length = np.array([3, 5])
    targets = np.array([[3, 4, 5, 0, 0], [2, 1, 2, 1, 3]])
    views = ops(max_len=5)(item_seq, length, targets, None, np.random.default_rng(1))
    # row 1 is full length: always T-Substitute, every head item replaced (rate 1)
    assert not views.inserted[1] and views.length[1] == 5
    assert np.array_equal(views.view1[1], item_seq[1]) and np.array_equal(views.targets[1], targets[1])
    assert all(v in (3, 4, 5) for v in views.view2[1])
    # at rate 1 with max_len 5, a T-Insert row of 3 grows to 5 and keeps its last 5 positions
    rows = [ops(max_len=5)(item_seq, length, targets, None, np.random.default_rng(s)) for s in range(20)]
    inserted = [v for v in rows if v.inserted[0]]
    assert inserted, "T-Insert is drawn with probability 1 - 3/5"
    v = inserted[0]
    assert v.length[0] == 5 and v.view1[0].tolist() == [1, 3, 3, 4, 4]
    assert v.targets[0].tolist() == [3, 4, 4, 5, 5]
    # the same seed, the same views
    again = ops(max_len=5)(item_seq, length, targets, None, np.random.default_rng(1))
    assert np.array_equal(again.view2, views.view2) and np.array_equal(again.inserted, views.inserted)


def test_t_insert_views_keep_their_last_max_len_positions():
    item_seq, length, targets = np.array([[1, 3, 4, 0, 0]]), np.array([3]), np.array([[3, 4, 5, 0, 0]])
    for s in range(40):
        v = ops(max_len=4)(item_seq, length, targets, None, np.random.default_rng(s))
        if v.inserted[0]:
            break
    assert v.inserted[0] and v.length[0] == 4
    assert v.view1[0].tolist() == [3, 3, 4, 4, 0] and v.targets[0].tolist() == [4, 4, 5, 5, 0]


def test_right_align_moves_each_rows_end_to_the_last_position():
    import torch

    from recbole_faerec.model.tada_ops import right_align

    x = torch.tensor([[1, 2, 0], [3, 0, 0], [4, 5, 6]])
    assert right_align(x, torch.tensor([2, 1, 3])).tolist() == [[0, 1, 2], [0, 0, 3], [4, 5, 6]]
    states = torch.arange(12.0).view(2, 3, 2)  # [B, L, d]
    out = right_align(states, torch.tensor([1, 3]))
    assert out[0].tolist() == [[0, 0], [0, 0], [0, 1]] and torch.equal(out[1], states[1])
