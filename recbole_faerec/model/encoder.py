"""The backbone adapter: a backbone's sequence encoder run on given input embeddings.

Dual-view methods (LLM-ESR, LLM-CFSR) run one backbone over two embedding sequences of the same
items, an ID view and an LLM view, and read every position's state. A backbone's ``forward`` only
takes item ids: it looks them up in ``self.item_embedding``, adds its own position embedding,
normalisation and dropout where it has them, runs its encoder and keeps the state at each sequence's
last item (``gather_indexes``). :func:`encode` runs that same ``forward``, unchanged, with two
substitutions for the one call (the backbone's ``forward``, even where a method overrides it):

* the item table's lookup of the sequence returns the given ``[B, L, d]`` embeddings instead;
* ``gather_indexes`` returns every position (:func:`encode`) or is the backbone's own
  (:func:`encode_last`).

So no backbone code is copied, and whatever the backbone does to its inputs (SASRec's position
embedding and LayerNorm, GRU4Rec's embedding dropout, ...) it does to the given embeddings too.
:data:`ENCODERS` lists the backbones it has been checked on (``tests/test_encoder.py``: the states
equal the backbone's own output where both exist, causal backbones stay causal); a method asked of
another one gets one line that says why (:func:`cannot_encode`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import torch

#: backbone name -> whether position t's state depends on positions <= t only
ENCODERS = {
    "SASRec": True,
    "GRU4Rec": True,
    "FMLPRec": True,
    "LRURec": True,
    "gMLP": True,
    "BERT4Rec": False,
    "LightSANs": False,
}
#: backbones whose attention mask can be made bidirectional (``causal=False``)
_MASKED = ("SASRec",)


class EncoderError(ValueError):
    """A backbone the adapter cannot run, or a causality it cannot give."""


def encoder_name(cls: type) -> Optional[str]:
    """The :data:`ENCODERS` backbone ``cls`` is (or derives from: ``LLMESR_SASRec``), else None."""
    for base in cls.__mro__:
        module = getattr(base, "__module__", "")
        if base.__name__ in ENCODERS and module.startswith(("recbole.model.", "recbole_faerec.model.")):
            return base.__name__
    return None


def cannot_encode(cls: type, causal: Optional[bool] = None) -> Optional[str]:
    """Why :func:`encode` cannot run ``cls`` (with the asked ``causal``ity), or None."""
    name = encoder_name(cls)
    if name is None:
        return (f"{cls.__name__} has no sequence-encoder adapter (per-position states from given "
                f"input embeddings); the backbones that have one: {', '.join(ENCODERS)}")
    if causal is True and not ENCODERS[name]:
        causal_ones = ", ".join(n for n, c in ENCODERS.items() if c)
        return (f"{name}'s encoder is not causal (a position sees later items); causal ones: "
                f"{causal_ones}")
    if causal is False and ENCODERS[name] and name not in _MASKED:
        return (f"{name}'s encoder is causal by construction and has no bidirectional mode; one "
                f"that can be made bidirectional: {', '.join(_MASKED)}")
    return None


def is_causal(model, causal: Optional[bool] = None) -> bool:
    """Whether :func:`encode` gives causal states for ``model`` with this ``causal`` setting."""
    return ENCODERS[encoder_name(type(model))] if causal is None else causal


@contextmanager
def _given_inputs(model, item_seq: torch.Tensor, embeddings: torch.Tensor, every_position: bool,
                  causal: Optional[bool]):
    reason = cannot_encode(type(model), causal)
    if reason:
        raise EncoderError(reason)
    if embeddings.shape[:2] != item_seq.shape:
        raise EncoderError(f"input embeddings {tuple(embeddings.shape)} do not match the item "
                           f"sequence {tuple(item_seq.shape)}")
    table = model.item_embedding
    calls = []

    def lookup(ids):
        if ids is not item_seq and not (ids.shape == item_seq.shape and torch.equal(ids, item_seq)):
            raise EncoderError(f"{type(model).__name__}.forward looked up items other than its "
                               f"sequence: the adapter cannot give it input embeddings")
        calls.append(1)
        return embeddings

    table.forward = lookup
    if every_position:
        model.gather_indexes = lambda output, index: output
    bidirectional = causal is False and encoder_name(type(model)) in _MASKED
    if bidirectional:
        mask = model.get_attention_mask
        model.get_attention_mask = lambda seq, bidirectional=False: mask(seq, bidirectional=True)
    try:
        yield
        if len(calls) != 1:
            raise EncoderError(f"{type(model).__name__}.forward looked up its sequence {len(calls)} "
                               f"times, not once: the adapter cannot give it input embeddings")
    finally:
        del table.forward
        if every_position:
            del model.gather_indexes
        if bidirectional:
            del model.get_attention_mask


def _backbone_forward(model):
    """The backbone's own ``forward`` bound to ``model`` (a method may override ``forward``)."""
    name = encoder_name(type(model))
    cls = next(base for base in type(model).__mro__ if base.__name__ == name)
    return cls.forward.__get__(model)


def _forward(model, item_seq, item_seq_len):
    if encoder_name(type(model)) == "BERT4Rec":  # forward(item_seq): every position already
        return _backbone_forward(model)(item_seq)
    return _backbone_forward(model)(item_seq, item_seq_len)


def encode(model, item_seq: torch.Tensor, item_seq_len: torch.Tensor, embeddings: torch.Tensor,
           causal: Optional[bool] = None) -> torch.Tensor:
    """Every position's state ``[B, L, H]`` of ``model``'s encoder over ``embeddings`` ``[B, L, d]``
    in place of the item table's lookup of ``item_seq`` (right-padded with 0, lengths
    ``item_seq_len``; the padding positions still shape the masks). ``causal``: None = the backbone
    as it is; True = refuse a non-causal backbone; False = a bidirectional mask where the backbone has
    one (SASRec), refused for a backbone that is causal by construction."""
    with _given_inputs(model, item_seq, embeddings, True, causal):
        states = _forward(model, item_seq, item_seq_len)
    if states.dim() != 3 or states.shape[:2] != item_seq.shape:
        raise EncoderError(f"{type(model).__name__}.forward gave {tuple(states.shape)}, not one "
                           f"state per position {tuple(item_seq.shape)}")
    return states


def encode_last(model, item_seq: torch.Tensor, item_seq_len: torch.Tensor, embeddings: torch.Tensor,
                causal: Optional[bool] = None) -> torch.Tensor:
    """The state ``[B, H]`` at each sequence's last item (what the backbone's ``forward`` returns)
    over ``embeddings`` (see :func:`encode`)."""
    if encoder_name(type(model)) == "BERT4Rec":
        states = encode(model, item_seq, item_seq_len, embeddings, causal)
        return model.gather_indexes(states, item_seq_len - 1)
    with _given_inputs(model, item_seq, embeddings, False, causal):
        return _forward(model, item_seq, item_seq_len)


__all__ = ["ENCODERS", "EncoderError", "cannot_encode", "encode", "encode_last", "encoder_name",
           "is_causal"]
