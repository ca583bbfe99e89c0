"""FAERec's pieces on tiny tensors: losses against hand computation, grouping, curriculum."""

import math

import numpy as np
import pytest
import torch

from recbole_faerec.model.curriculum import CosineCurriculum
from recbole_faerec.model.layers import DimensionGate, FusedItemEmbedding, LLMProjector
from recbole_faerec.model.loss import (
    BCEOneNegativeLoss,
    barlow_twins_loss,
    feature_alignment_loss,
    item_alignment_loss,
)
from recbole_faerec.data.popularity import PopularityGrouper


def test_item_alignment_loss_by_hand():
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    tau = 0.5
    # cos(e0,p0)=1/sqrt2, cos(e0,p1)=0, cos(e1,p0)=1/sqrt2, cos(e1,p1)=1
    s = 1 / math.sqrt(2)
    l0 = -math.log(math.exp(s / tau) / (math.exp(s / tau) + math.exp(0)))
    l1 = -math.log(math.exp(1 / tau) / (math.exp(s / tau) + math.exp(1 / tau)))
    assert item_alignment_loss(e, p, tau).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_item_alignment_duplicates_are_not_negatives():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    ids = torch.tensor([7, 8, 7])
    tau = 1.0
    # row 0: its duplicate (row 2) is masked: -log(e^1 / (e^1 + e^0))
    expected_row0 = -math.log(math.e / (math.e + 1))
    expected_row1 = -math.log(math.e / (1 + math.e + 1))
    got = item_alignment_loss(e, p, tau, ids).item()
    assert got == pytest.approx((2 * expected_row0 + expected_row1) / 3, rel=1e-6)
    assert item_alignment_loss(e, p, tau).item() > got  # unmasked, the copy counts as a negative


def test_barlow_twins_by_hand():
    rng = np.random.default_rng(0)
    u = rng.standard_normal((5, 3))
    v = rng.standard_normal((5, 3))
    zu = (u - u.mean(0)) / (u.std(0, ddof=1) + 1e-5)
    zv = (v - v.mean(0)) / (v.std(0, ddof=1) + 1e-5)
    c = zu.T @ zv / 5
    expected = sum((1 - c[i, i]) ** 2 for i in range(3)) + 0.01 * sum(
        c[i, j] ** 2 for i in range(3) for j in range(3) if i != j)
    got = barlow_twins_loss(torch.tensor(u), torch.tensor(v), lambd=0.01).item()
    assert got == pytest.approx(expected, rel=1e-9)
    # identical, decorrelated views give ~0: the diagonal is (k-1)/k, not exactly 1
    x = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    assert barlow_twins_loss(x, x, 0.005).item() == pytest.approx(2 * (1 - 3 / 4) ** 2, abs=1e-4)


def test_feature_alignment_sums_groups_and_skips_singletons():
    torch.manual_seed(0)
    u, v = torch.randn(6, 4), torch.randn(6, 4)
    groups = (torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([5]), torch.tensor([], dtype=torch.long))
    expected = barlow_twins_loss(u[:3], v[:3], 0.005) + barlow_twins_loss(u[3:], v[3:], 0.005)
    assert feature_alignment_loss(u, v, groups, 0.005).item() == pytest.approx(expected.item(), rel=1e-6)
    assert feature_alignment_loss(u, v, (torch.tensor([2]),), 0.005).item() == 0.0


def test_bce_one_negative_by_hand():
    pos, neg = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 1.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = np.mean([-math.log(sig(2.0)) - math.log(1 - sig(0.5)),
                        -math.log(sig(-1.0)) - math.log(1 - sig(1.0))])
    assert BCEOneNegativeLoss()(pos, neg).item() == pytest.approx(expected, rel=1e-6)


def test_grouper_median_ties_and_small_groups():
    # popularity by item id (0 = pad); item 5 never seen in training -> counts as 1
    g = PopularityGrouper([0, 10, 3, 3, 7, 0, 1])
    items = torch.tensor([1, 2, 3, 4, 5, 6])       # pops 10, 3, 3, 7, 1, 1 -> lower median 3
    high, low = g.split(items)
    assert items[high].tolist() == [1, 2, 3, 4]   # ties at the median go high
    assert items[low].tolist() == [5, 6]
    high, low = g.split(torch.tensor([2, 3]))     # all tied: one group, the other empty
    assert high.tolist() == [0, 1] and low.numel() == 0
    high, low = g.split(torch.tensor([1]))
    assert high.tolist() == [0] and low.numel() == 0
    high, low = g.split(torch.tensor([], dtype=torch.long))
    assert high.numel() == 0 and low.numel() == 0
    high, low = g.split(torch.tensor([1, 4]))     # even count: lower median 7
    assert high.tolist() == [0, 1] and low.numel() == 0


def test_curriculum_values():
    c = CosineCurriculum(w_min=0.3, w_max=1.0, period=20)
    assert c.weights(0) == pytest.approx((1.0, 0.0))
    assert c.weights(10) == pytest.approx((0.3, 0.7))
    assert c.weights(5) == pytest.approx((0.65, 0.35))
    assert c.weights(20) == pytest.approx((1.0, 0.0))
    assert c.weights(25) == pytest.approx(c.weights(5))
    fixed = CosineCurriculum(0.9, 1.0, 30, enabled=False, fixed=0.6)
    assert fixed.weights(0) == fixed.weights(13) == pytest.approx((0.6, 0.4))
    with pytest.raises(ValueError):
        CosineCurriculum(w_min=0.9, w_max=0.5, period=30)


def make_fused(n=6, d=4, llm_dim=8, extra_rows=0, **kw):
    torch.manual_seed(0)
    ids = torch.nn.Embedding(n + extra_rows, d, padding_idx=0)
    llm = torch.randn(n, llm_dim)
    llm[0] = 0
    return FusedItemEmbedding(ids, llm, LLMProjector(llm_dim, d, None, 0.0), DimensionGate(d, 0.0), **kw)


def test_fused_table_views_and_modes():
    f = make_fused()
    ids = torch.tensor([1, 3])
    e, p = f.id_view(ids), f.llm_view(ids)
    g = f.gate(e, p)
    f.train()
    torch.testing.assert_close(f(ids.view(1, 2))[0], g * e + (1 - g) * p)  # input: gate (eq. 4)
    torch.testing.assert_close(f(ids), g * e + (1 - g) * p)                # training output: gate
    f.eval()
    torch.testing.assert_close(f(ids), 0.5 * (e + p))                      # inference: mean
    torch.testing.assert_close(f.weight[ids], 0.5 * (e + p))
    assert not f.weight[0].any()                                            # padding row is zero
    torch.testing.assert_close(f(ids.view(1, 2))[0], g * e + (1 - g) * p)  # input keeps the gate


def test_eval_table_is_computed_once_per_evaluation():
    f = make_fused()
    calls = []
    f.projector.register_forward_hook(lambda *a: calls.append(1))
    f.eval()
    for _ in range(5):
        f.weight
        f(torch.tensor([1, 2]))
    assert len(calls) == 1
    f.train()
    f.eval()
    f.weight
    assert len(calls) == 2  # a new evaluation recomputes


def test_rows_beyond_llm_table_use_id_embedding():
    f = make_fused(extra_rows=1)  # e.g. BERT4Rec's mask token
    f.eval()
    torch.testing.assert_close(f.weight[6], f.id_embedding.weight[6])


def test_cpu_dropout_keeps_units_at_rate_and_scales_them():
    from recbole_faerec.model.kernels import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.3)
    x = torch.ones(400, 501, requires_grad=True)  # 200,400 units: not a multiple of 4
    y = drop(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.004)  # sd 0.001
    for lane in range(4):  # each 16-bit lane of the random words is uniform on its own
        assert kept.flatten()[lane::4].float().mean().item() == pytest.approx(0.7, abs=0.006)
    scale = 65536 / round(0.7 * 65536)
    assert scale == pytest.approx(1 / 0.7, rel=2e-5)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], scale))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() * scale)  # gradient through kept units only
    assert not torch.equal(drop(x), y)  # a fresh mask per call
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # ... from torch's generator: seeded runs repeat
    big = torch.ones(1000, 1000)
    assert drop(big).mean().item() == pytest.approx(1.0, abs=0.003)  # unbiased
    drop.eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert not Dropout(1.0).train()(x).any()


def test_one_projector_pass_per_shared_step():
    f = make_fused()
    calls = []
    f.projector.register_forward_hook(lambda *a: calls.append(1))
    f.train()
    items = torch.tensor([1, 2, 4])
    with f.shared_tables():
        table = f.weight                              # the full table (CE)
        seq = f(torch.tensor([[1, 2, 0], [3, 4, 5]]))  # the input lookups
        e, p = f.views(items)                          # the alignment views
    assert len(calls) == 1
    torch.testing.assert_close(seq[1], table[[3, 4, 5]])
    torch.testing.assert_close(e, f.id_embedding.weight[items])
    torch.testing.assert_close(p, f.llm_view(items))  # dropout 0: the same values as a new pass
    p.sum().backward()                                 # and the step's pass carries the gradient
    assert f.projector.net[0].weight.grad.abs().sum() > 0
    with f.shared_tables():
        f.weight
    assert len(calls) == 3  # llm_view above, then a new step projects again


def _reference_item_alignment(e, p, tau, ids=None):
    """Eq. (5) the plain way: cosine logits / tau, duplicates masked, torch's cross-entropy."""
    logits = torch.nn.functional.normalize(e, dim=-1) @ torch.nn.functional.normalize(p, dim=-1).t() / tau
    if ids is not None:
        same = ids.unsqueeze(0) == ids.unsqueeze(1)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(e)))


@pytest.mark.parametrize("duplicates", [False, True])
def test_item_alignment_matches_cross_entropy_with_gradients(duplicates):
    torch.manual_seed(0)
    e = torch.randn(300, 16, requires_grad=True)
    p = torch.randn(300, 16, requires_grad=True)
    ids = torch.randint(1, 120, (300,)) if duplicates else None
    got = item_alignment_loss(e, p, 0.05, ids)
    want = _reference_item_alignment(e, p, 0.05, ids)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(2.5 * got, [e, p]), torch.autograd.grad(2.5 * want, [e, p])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_item_alignment_under_autocast_and_twice_backward():
    torch.manual_seed(0)
    e = torch.randn(64, 8, requires_grad=True)
    p = torch.randn(64, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = item_alignment_loss(e, p, 0.1)
    assert loss.dtype == torch.float32  # the softmax runs in float32, as cross_entropy's does
    torch.testing.assert_close(loss, _reference_item_alignment(e, p, 0.1))
    loss.backward(retain_graph=True)
    assert e.grad.dtype == torch.float32 and e.grad.abs().sum() > 0
    with pytest.raises(RuntimeError):  # its buffer became the gradient: a second pass must fail
        loss.backward()
