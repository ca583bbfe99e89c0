r"""FMLP-Rec (Zhou et al., "Filter-enhanced MLP is All You Need for Sequential Recommendation",
WWW 2022), as a RecBole sequential model, made causal.

Embedding layer: item + learned position embeddings, LayerNorm, dropout (paper §3.2). Each of the
``n_layers`` blocks is a learnable filter layer (§3.3, eq. 4-6: FFT along the sequence, an
element-wise product with a learnable complex filter, inverse FFT, dropout, residual, LayerNorm)
followed by the point-wise feed-forward layer (§3.4, eq. 7-8).

**Causality.** FMLP-Rec's filter multiplies the length-``L`` spectrum, i.e. a *circular* convolution
over the whole sequence: the output at position ``t`` mixes in positions after ``t``. The original
trains only on each prefix's last position, where that does no harm, but a model trained at every
position (the FAERec authors' FMLP-Rec, reference notes §4.2) learns to read the next item. Here the
learnable filter lives on a ``2L``-point spectrum (``L + 1`` complex weights per dimension), its
impulse response is cut to the non-negative lags ``0 .. L-1``, and the input is zero-padded to
``2L`` before the FFT: a linear, causal convolution
:math:`y_t = \sum_{s \le t} k_{t-s} x_s`, still computed with FFTs and still learned as a
frequency-domain filter. ``tests/test_plugin_backbones.py`` checks that changing a later item leaves
every earlier output unchanged.
"""

from __future__ import annotations

import torch
from recbole.model.layers import FeedForward
from torch import nn

from recbole_faerec.model.sequential_recommender._causal import CausalSequentialRecommender

__all__ = ["FMLPRec"]


class CausalFilterLayer(nn.Module):
    """Learnable frequency-domain filter (FMLP-Rec eq. 4-6), as a causal linear convolution."""

    def __init__(self, max_len: int, hidden_size: int, dropout: float, eps: float = 1e-12):
        super().__init__()
        self.max_len = max_len
        # L + 1 complex weights per dimension: the rfft bins of a 2L-point sequence
        self.complex_weight = nn.Parameter(torch.randn(max_len + 1, hidden_size, 2) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=eps)

    def kernel(self) -> torch.Tensor:
        """The filter's impulse response at lags ``0 .. L-1`` (``[L, H]``); other lags are cut."""
        response = torch.fft.irfft(torch.view_as_complex(self.complex_weight), n=2 * self.max_len, dim=0)
        return response[: self.max_len]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.size(1)
        n_fft = 2 * length
        spectrum = torch.fft.rfft(x, n=n_fft, dim=1)
        kernel = torch.fft.rfft(self.kernel()[:length], n=n_fft, dim=0)
        y = torch.fft.irfft(spectrum * kernel.unsqueeze(0), n=n_fft, dim=1)[:, :length]
        return self.layer_norm(x + self.dropout(y))


class FMLPRec(CausalSequentialRecommender):
    """FMLP-Rec with a causal learnable filter; see the module docstring.

    Config keys (``props/model/FMLPRec.yaml``): ``n_layers``, ``hidden_size``, ``inner_size``,
    ``hidden_dropout_prob``, ``layer_norm_eps``, ``initializer_range``, ``loss_type`` (CE/BPR).
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        dropout = config["hidden_dropout_prob"]
        eps = config["layer_norm_eps"]
        inner = config["inner_size"]
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        self.layer_norm = nn.LayerNorm(self.hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.filters = nn.ModuleList(
            CausalFilterLayer(self.max_seq_length, self.hidden_size, dropout, eps)
            for _ in range(config["n_layers"]))
        self.feed_forwards = nn.ModuleList(
            FeedForward(self.hidden_size, inner, dropout, "gelu", eps) for _ in range(config["n_layers"]))
        self.apply(self._init_weights)

    def encode(self, item_seq):
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        x = self.item_embedding(item_seq) + self.position_embedding(positions).unsqueeze(0)
        x = self.dropout(self.layer_norm(x))
        for filter_layer, feed_forward in zip(self.filters, self.feed_forwards):
            x = feed_forward(filter_layer(x))
        return x
