"""Speed kernels behind FAERec's readable layers and losses (the equations are in
:mod:`recbole_faerec.model.layers` and :mod:`recbole_faerec.model.loss`; nothing here changes a
value, only how fast or with how much memory it is computed on the CPU).

* :class:`Dropout`: ``nn.Dropout`` with a cheaper random mask on the CPU.
* :func:`diagonal_cross_entropy`: ``F.cross_entropy(u @ v.T, arange(N))`` with one N x N buffer.
* :class:`ItemTableCache`: the bookkeeping of a fused item table, so each training step projects and
  fuses every item once and evaluation fuses the table once.

Each is tested equal to its plain counterpart (``tests/test_faerec_components.py``).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask on the CPU, where the projector and the gate draw one
    for every row of the item table at each training step.

    PyTorch's CPU dropout draws one ``bernoulli_`` number per unit (about 10 ns each). Here every
    64-bit random word gives four 16-bit uniform draws: a unit is kept when its draw is below
    ``k = round((1 - p) * 65536)`` and then scaled by ``65536 / k``, so the output's expectation is
    exactly the input and the keep rate is within 8e-6 of 1 - p. About 3-5x faster than
    ``nn.Dropout`` on a 12,101 x 192 table; on other devices (and for p = 0 or rates that round to
    nothing) this is ``nn.Dropout``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = round((1.0 - self.p) * 65536)
        if not self.training or x.device.type != "cpu" or not 0 < kept < 65536:
            return super().forward(x)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2 ** 63), None)  # 64 random bits
        draws = words.view(torch.int16)[:n].view(x.shape)  # uniform on [-32768, 32767]
        mask = (draws < kept - 32768).to(x.dtype).mul_(65536 / kept)
        return x * mask


class _DiagonalCrossEntropy(torch.autograd.Function):
    r"""Mean cross-entropy of the rows of :math:`u v^\top` with the diagonal as the targets.

    What ``F.cross_entropy(u @ v.t(), arange(N))`` computes, with one N x N buffer instead of four:
    the softmax is formed in place of the logits and becomes the gradient in place. At N = 2048 that
    saves three 16 MB tensors per step, whose fresh pages cost the CPU more than the arithmetic.
    """

    @staticmethod
    def forward(ctx, u, v, exclude):
        ctx.dtypes = u.dtype, v.dtype
        with torch.autocast(u.device.type, enabled=False):  # float32 softmax, as cross_entropy's
            u, v = u.float(), v.float()
            logits = u @ v.t()
            if exclude is not None:
                logits.masked_fill_(exclude, float("-inf"))
            target = logits.diagonal().clone()
            top = logits.amax(1, keepdim=True)
            probs = logits.sub_(top).exp_()
            total = probs.sum(1, keepdim=True)
            probs.div_(total)
            ctx.save_for_backward(u, v, probs)
            return (top.squeeze(1) + total.squeeze(1).log() - target).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        u, v, probs = ctx.saved_tensors
        probs.diagonal().sub_(1)  # d loss / d logits = (softmax - I) / N
        probs.mul_(grad.float() / probs.shape[0])
        return (probs @ v).to(ctx.dtypes[0]), (probs.t() @ u).to(ctx.dtypes[1]), None


def diagonal_cross_entropy(u: torch.Tensor, v: torch.Tensor,
                           exclude: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.cross_entropy(u @ v.t(), arange(N))``, with the logits where ``exclude`` is True left out
    of each row's softmax (see :class:`_DiagonalCrossEntropy`)."""
    return _DiagonalCrossEntropy.apply(u, v, exclude)


class ItemTableCache(nn.Module):
    """How a fused item table is computed fast; the subclass says what it computes.

    A subclass defines ``id_view(ids)``, ``llm_view(ids)``, ``fused(ids, how, e=None, p=None)`` and
    the attributes ``id_embedding``, ``llm_table``, ``n_llm``, ``num_embeddings``. This class gives
    it:

    * :meth:`table`: every item fused one way. In evaluation it is computed once and kept until the
      next ``train()``/``eval()`` switch or weight load (full-sort prediction does not refuse it per
      batch); in training it is computed afresh, or once per step inside :meth:`shared_tables`.
    * :meth:`lookup`: rows of ids. In training outside :meth:`shared_tables` each distinct item is
      fused once (the projector and gate cost more than a lookup).
    * :meth:`views`: ``(id_view, llm_view)`` for the alignment losses, inside :meth:`shared_tables`
      read from the step's full-table projector pass (same values, dropout mask included).
    """

    def __init__(self):
        super().__init__()
        self._cache: Dict[str, torch.Tensor] = {}
        self._step_tables = False

    @property
    def _sharing(self) -> bool:
        """Inside :meth:`shared_tables` while training: one projector pass per step."""
        return self.training and self._step_tables

    def views(self, ids: torch.Tensor):
        if self._sharing:
            return self.id_view(ids), F.embedding(ids, self._all_llm_view())
        return self.id_view(ids), self.llm_view(ids)

    def _all_llm_view(self) -> torch.Tensor:
        """``llm_view`` of every row: the LLM table itself projected (no gather), once per step
        while :attr:`_sharing`."""
        if self._sharing and "llm_view" in self._cache:
            return self._cache["llm_view"]
        if self.num_embeddings <= self.n_llm:
            p = self.projector(self.llm_table[: self.num_embeddings])
        else:
            p = self.llm_view(torch.arange(self.num_embeddings, device=self.llm_table.device))
        if self._sharing:
            self._cache["llm_view"] = p
        return p

    def _full_table(self, how: str) -> torch.Tensor:
        """Every item fused: the ID weight itself rather than a lookup of each of its rows (the
        same values; the backward skips the scatter of a lookup)."""
        ids = torch.arange(self.num_embeddings, device=self.llm_table.device)
        p = None if how == "id" else self._all_llm_view()
        return self.fused(ids, how, e=self.id_embedding.weight, p=p)

    def table(self, how: str) -> torch.Tensor:
        if self.training and not self._step_tables:
            return self._full_table(how)
        if how not in self._cache:
            with torch.no_grad() if not self.training else nullcontext():
                self._cache[how] = self._full_table(how)
        return self._cache[how]

    def lookup(self, ids: torch.Tensor, how: str) -> torch.Tensor:
        # F.embedding rather than table[ids]: same values, but its backward accumulates the rows'
        # gradients about 2.5x faster on the CPU than indexing's index_put.
        if not self.training or self._sharing:
            return F.embedding(ids, self.table(how))
        unique, inverse = torch.unique(ids, return_inverse=True)
        return F.embedding(inverse, self.fused(unique, how))

    @contextmanager
    def shared_tables(self):
        """Within one training step, fuse every item once and let the sequence input, the
        full-table output (CE) and the alignment views share that pass, instead of projecting and
        fusing again for each. Nested (a method that wraps another's step): the outer one's."""
        if self._step_tables:
            yield
            return
        self._step_tables = True
        try:
            yield
        finally:
            self._step_tables = False
            if self.training:
                self._cache.clear()

    def clear_cache(self) -> None:
        self._cache.clear()

    def train(self, mode: bool = True):
        self._cache.clear()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache.clear()
        return super()._load_from_state_dict(*args, **kwargs)
