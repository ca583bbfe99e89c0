"""The paper's backbones RecBole lacks: FMLPRec, LRURec, gMLP (and their FAERec versions)."""

import pytest
import torch
from conftest import TINY_SASREC

from recbole_faerec.model.sequential_recommender.lrurec import lru_parallel_scan, lru_recurrence

BACKBONES = ["FMLPRec", "LRURec", "gMLP"]
TINY = {**TINY_SASREC, "MAX_ITEM_LIST_LENGTH": 8, "n_layers": 2, "inner_size": 16,
        "state": "WARNING", "train_batch_size": 1024, "llm_emb_provider": "tfidf",
        "llm_emb_dimensions": 32}


@pytest.fixture(scope="module")
def data():
    from recbole_faerec.quick_start import build_config, load_dataset

    config = build_config("FMLPRec", "ml-100k", config_dict=TINY)
    return load_dataset(config)[1:]


def build(model, data, **extra):
    from recbole.utils import init_seed

    from recbole_faerec.quick_start import build_config
    from recbole_faerec.utils import get_model

    config = build_config(model, "ml-100k", config_dict={**TINY, **extra})
    init_seed(config["seed"], config["reproducibility"])
    return config, get_model(model)(config, data[0]._dataset)


@pytest.mark.parametrize("model_name", BACKBONES + [f"FAERec_{b}" for b in BACKBONES])
def test_causal_a_later_item_never_changes_an_earlier_output(model_name, data, cache):
    _, model = build(model_name, data)
    model.eval()
    torch.manual_seed(0)
    seq = torch.randint(1, model.n_items, (4, 8))
    seq[1, 6:] = 0  # a right-padded sequence, as RecBole builds them
    with torch.no_grad():
        before = model.encode(seq) if hasattr(model, "encode") else None
        for t in range(7):
            changed = seq.clone()
            changed[:, t + 1:] = torch.randint(1, model.n_items, changed[:, t + 1:].shape)
            after = model.encode(changed)
            torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], rtol=0, atol=1e-5)
            # ... and the prediction from the prefix ending at t ignores what follows
            lengths = torch.full((4,), t + 1)
            torch.testing.assert_close(model.forward(changed, lengths), model.forward(seq, lengths),
                                       rtol=0, atol=1e-5)
        assert not torch.allclose(after[:, 7], before[:, 7])  # the last output does see the change


def test_fmlp_filter_is_a_causal_linear_convolution(data):
    _, model = build("FMLPRec", data)
    layer = model.filters[0]
    layer.eval()
    x = torch.randn(2, 8, model.hidden_size)
    kernel = layer.kernel()
    direct = torch.stack([sum(kernel[t - s] * x[:, s] for s in range(t + 1)) for t in range(8)], dim=1)
    expected = layer.layer_norm(x + direct)
    torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-5)


def test_lru_parallel_scan_equals_the_recurrence():
    torch.manual_seed(0)
    for length in (1, 2, 5, 8, 13, 50):
        lam = torch.polar(torch.rand(16) * 0.2 + 0.79, torch.rand(16) * 6.28)
        b = torch.complex(torch.randn(3, length, 16), torch.randn(3, length, 16))
        torch.testing.assert_close(lru_parallel_scan(lam, b), lru_recurrence(lam, b), rtol=1e-4, atol=1e-5)


def test_lru_ring_initialisation_and_model_paths_agree(data):
    config, model = build("LRURec", data)
    layer = model.lru_layers[0]
    magnitude = layer.lam().abs()
    assert magnitude.min() >= 0.8 - 1e-6 and magnitude.max() <= 0.99 + 1e-6
    assert layer.lam().shape == (2 * model.hidden_size,)
    torch.testing.assert_close(torch.exp(layer.gamma_log), torch.sqrt(1 - magnitude ** 2))
    model.eval()
    seq = torch.randint(1, model.n_items, (3, 8))
    with torch.no_grad():
        parallel = model.encode(seq)
        model.parallel = False
        sequential = model.encode(seq)
        model.parallel = True
    torch.testing.assert_close(parallel, sequential, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_name", BACKBONES)
def test_shapes_and_gradients(model_name, data):
    config, model = build(model_name, data)
    train, valid, _ = data
    model.train()
    batch = next(iter(train))
    assert model.encode(batch["item_id_list"]).shape == (len(batch), 8, model.hidden_size)
    loss = model.calculate_loss(batch)
    loss.backward()
    for name, param in model.named_parameters():
        if name == "position_embedding.weight" or name.endswith("item_embedding.weight"):
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
    model.eval()
    interaction = next(iter(valid))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(interaction)
        single = model.predict(interaction)
    assert scores.shape == (len(interaction), model.n_items)
    torch.testing.assert_close(single, scores[torch.arange(len(interaction)), interaction["item_id"]],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_name", BACKBONES + ["FAERec_LRURec"])
def test_train_save_reload_on_ml100k(model_name, cache, tmp_path, monkeypatch):
    from recbole_faerec.quick_start.quick_start import train_and_test

    monkeypatch.chdir(tmp_path)
    result = train_and_test(model_name, "ml-100k", config_dict=TINY)
    assert result["test_result"]["ndcg@10"] > 0 and len(result["train_seconds"]) == 1
    checkpoint = torch.load(result["model_file"], weights_only=False)
    _, again = build(model_name, (result["train_data"], None, None))
    again.load_state_dict(checkpoint["state_dict"])
    again.eval()
    model = result["model"].eval()
    batch = next(iter(result["test_data"]))[0]
    with torch.no_grad():
        torch.testing.assert_close(again.full_sort_predict(batch), model.full_sort_predict(batch),
                                   rtol=0, atol=0)
