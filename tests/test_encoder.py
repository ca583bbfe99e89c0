"""The backbone adapter (recbole_faerec.model.encoder): each backbone's own encoder run on given
input embeddings, on real ml-100k models."""

import pytest
import torch
from conftest import TINY_SASREC, build_model

from recbole_faerec.model.encoder import (ENCODERS, EncoderError, cannot_encode, encode, encode_last)

TINY = {**TINY_SASREC, "MAX_ITEM_LIST_LENGTH": 8, "n_layers": 2, "inner_size": 16, "state": "WARNING",
        "train_batch_size": 512, "k_interests": 4}


@pytest.fixture(scope="module")
def models():
    from recbole.utils import init_seed

    from recbole_faerec.quick_start import build_config
    from recbole_faerec.utils import get_model

    _, _, train = build_model("SASRec", TINY)  # one dataset, every backbone built on it
    batch = next(iter(train))
    built = {}
    for name in ENCODERS:
        config = build_config(name, "ml-100k", config_dict=TINY)
        init_seed(config["seed"], config["reproducibility"])
        built[name] = (get_model(name)(config, train._dataset).eval(), batch)
    return built


def batch_of(model, batch):
    return batch["item_id_list"][:16], batch["item_length"][:16]


@pytest.mark.parametrize("name", list(ENCODERS))
def test_states_equal_the_backbones_own_output(name, models):
    model, batch = models[name]
    seq, length = batch_of(model, batch)
    with torch.no_grad():
        own = model.item_embedding(seq)
        states = encode(model, seq, length, own)
        last = encode_last(model, seq, length, own)
        expected_last = model.forward(seq) if name == "BERT4Rec" else model.forward(seq, length)
        if name == "BERT4Rec":  # its forward gives every position; predict reads the last item's
            expected_last = model.gather_indexes(expected_last, length - 1)
            torch.testing.assert_close(states, model.forward(seq))
    assert states.shape == (*seq.shape, expected_last.shape[-1])
    torch.testing.assert_close(last, expected_last)
    torch.testing.assert_close(states[torch.arange(len(seq)), length - 1], expected_last)
    # the given embeddings are what the encoder reads: other inputs, other states
    with torch.no_grad():
        other = encode_last(model, seq, length, torch.randn_like(own))
    assert not torch.allclose(other, last)
    # the model is itself again afterwards
    assert "forward" not in vars(model.item_embedding) and "gather_indexes" not in vars(model)


@pytest.mark.parametrize("name", [n for n, causal in ENCODERS.items() if causal])
def test_causal_backbones_give_causal_states(name, models):
    model, batch = models[name]
    seq, length = batch_of(model, batch)
    seq, length = seq[length >= 6][:4], length[length >= 6][:4]
    torch.manual_seed(0)
    emb = torch.randn(*seq.shape, model.item_embedding.embedding_dim)
    with torch.no_grad():
        before = encode(model, seq, length, emb, causal=True)
        for t in range(5):
            changed = emb.clone()
            changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:])
            after = encode(model, seq, length, changed, causal=True)
            torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], rtol=0, atol=1e-5)
            assert not torch.allclose(after[:, 5], before[:, 5])


def test_sasrec_without_its_causal_mask_sees_later_items(models):
    model, batch = models["SASRec"]
    seq, length = batch_of(model, batch)
    seq, length = seq[length >= 6][:4], length[length >= 6][:4]
    torch.manual_seed(0)
    emb = torch.randn(*seq.shape, model.item_embedding.embedding_dim)
    changed = emb.clone()
    changed[:, 3:] = torch.randn_like(changed[:, 3:])
    with torch.no_grad():
        causal = encode(model, seq, length, emb), encode(model, seq, length, changed)
        both_ways = encode(model, seq, length, emb, causal=False), encode(model, seq, length, changed,
                                                                          causal=False)
    torch.testing.assert_close(causal[0][:, :3], causal[1][:, :3])
    assert not torch.allclose(both_ways[0][:, :3], both_ways[1][:, :3])
    assert "get_attention_mask" not in vars(model)  # put back


def test_backbones_it_cannot_run_get_one_line():
    from recbole.model.sequential_recommender import BERT4Rec, NARM, SASRec

    from recbole_faerec.model.sequential_recommender.fmlprec import FMLPRec

    assert "NARM has no sequence-encoder adapter" in cannot_encode(NARM)
    assert "SASRec" in cannot_encode(NARM)  # names the ones that have one

    assert "BERT4Rec's encoder is not causal" in cannot_encode(BERT4Rec, causal=True)
    assert "no bidirectional mode" in cannot_encode(FMLPRec, causal=False)
    assert cannot_encode(SASRec, causal=False) is None


def test_refusals_raise(models):
    model, batch = models["BERT4Rec"]
    seq, length = batch_of(model, batch)
    with pytest.raises(EncoderError, match="not causal"):
        encode(model, seq, length, model.item_embedding(seq), causal=True)
    with pytest.raises(EncoderError, match="do not match"):
        encode(model, seq, length, torch.zeros(2, 3, model.item_embedding.embedding_dim))
    assert "forward" not in vars(model.item_embedding)
