"""LLM-ESR (recbole_faerec/model/sequential_recommender/llmesr.py) on real ml-100k data, item titles
embedded with TF-IDF: cross-attention masks, the two views side by side, the distillation teacher."""

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_SASREC, build_model

from recbole_faerec.model.sequential_recommender.llmesr import CrossAttention

TINY = {**TINY_SASREC, "MAX_ITEM_LIST_LENGTH": 8, "embedding_size": 8, "state": "WARNING",
        "llm_emb_provider": "tfidf", "llm_emb_dimensions": 32, "train_batch_size": 64,
        "train_positions": "all", "llmesr_neighbours": 3, "llmesr_user_embedding": "item_mean"}


@pytest.fixture(scope="module")
def sasrec(cache):
    config, model, train = build_model("LLMESR_SASRec", TINY)
    return model, next(iter(train))


def test_cross_attention_masks_padding_and_later_keys():
    torch.manual_seed(0)
    attention = CrossAttention(8, 2, dropout=0.0)
    x, y = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    out = attention(x, y, padding, causal=True)
    assert out.shape == (2, 5, 8) and torch.isfinite(out).all()
    changed = y.clone()
    changed[:, 2:] = torch.randn(2, 3, 8)  # later keys
    changed[1, 3:] = 100.0  # and padding keys
    again = attention(x, changed, padding, causal=True)
    torch.testing.assert_close(again[:, :2], out[:, :2])  # positions 0, 1 see keys <= themselves
    bidirectional = attention(x, y, padding, causal=False)
    moved = attention(x, changed, padding, causal=False)
    assert not torch.allclose(moved[0, :2], bidirectional[0, :2])  # without the mask they see them
    # padding keys never count, in either mode
    only_padding = y.clone()
    only_padding[1, 3:] = -50.0
    torch.testing.assert_close(attention(x, only_padding, padding, causal=False)[1], bidirectional[1])
    # by hand: head h of query t is softmax(q k^T / sqrt(d/h)) v over the allowed keys
    q, k, v = attention.query(x), attention.key(y), attention.value(y)
    h = slice(0, 4)
    scores = q[1, 2, h] @ k[1, :3, h].T / 2.0
    context = torch.softmax(scores, -1) @ v[1, :3, h]
    full = attention.out.weight[:, h] @ context + attention.out.weight[:, 4:] @ (
        torch.softmax(q[1, 2, 4:] @ k[1, :3, 4:].T / 2.0, -1) @ v[1, :3, 4:]) + attention.out.bias
    torch.testing.assert_close(out[1, 2], full)


def test_user_and_items_are_the_two_views_side_by_side(sasrec):
    model, batch = sasrec
    model.eval()
    seq, length = batch["item_id_list"], batch["item_length"]
    d = model.item_embedding.embedding_dim
    with torch.no_grad():
        states = model.dual_states(seq, length, True)
        user = model.forward(seq, length)
        items = model.item_representations()
        scores = model.full_sort_predict(batch)
    assert states.shape == (*seq.shape, 2 * d) and user.shape == (len(seq), 2 * d)
    torch.testing.assert_close(user, states[torch.arange(len(seq)), length - 1])
    torch.testing.assert_close(items[:, :d], model.item_embedding.weight)
    torch.testing.assert_close(items[:, d:], model.adapter(model.llm_table))
    torch.testing.assert_close(scores, user @ items.T)
    # the ID table starts as the PCA of the LLM table, the LLM table itself is frozen
    assert "llm_table" not in dict(model.named_parameters())


def test_ce_loss_over_every_position_by_hand(sasrec):
    from recbole_faerec.model.positions import position_targets

    model, batch = sasrec
    model.eval()  # no dropout: the hand computation sees the same states
    seq, length = batch["item_id_list"], batch["item_length"]
    with torch.no_grad():
        loss = model.recommendation_loss(batch)
        mask, targets = position_targets(seq, length, batch["item_id"])
        logits = model.dual_states(seq, length, True)[mask] @ model.item_representations().T
    assert loss.item() == pytest.approx(F.cross_entropy(logits, targets[mask]).item(), rel=1e-5)


def test_the_teacher_is_other_users_and_carries_no_gradient(sasrec):
    model, batch = sasrec
    neighbours = model.neighbours
    users = torch.arange(len(neighbours))
    has = model.user_seq_len > 0
    assert (neighbours[has] >= 0).all() and not (neighbours[has] == users[has, None]).any()
    assert (neighbours[~has] == -1).all()
    # the neighbours are the most similar by the users' mean item embedding
    llm = torch.as_tensor(model.llm_table_np, dtype=torch.float32)
    u = int(batch["user_id"][0])

    def mean(v):  # the user's training items: the longest row's input sequence and its target
        items = torch.cat([model.user_seq[v, : model.user_seq_len[v]], model.user_last[v:v + 1]])
        return F.normalize(llm[items].mean(0), dim=0)

    assert model.user_last[u] == batch["item_id"][0]  # one row per user: its whole sequence
    own = mean(u)
    sims = torch.stack([own @ mean(v) if has[v] else torch.tensor(-2.0)
                        for v in range(len(neighbours))])
    sims[u] = -2.0
    assert set(neighbours[u].tolist()) == set(sims.topk(3).indices.tolist())

    model.train()
    student = torch.randn(len(batch["user_id"]), 2 * model.item_embedding.embedding_dim,
                          requires_grad=True)
    model._step["student"] = student
    model.zero_grad()
    loss = model.auxiliary_losses(batch)["distill"]
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())  # the teacher is detached


def test_epoch_teachers_equal_the_step_teachers_and_are_kept_for_the_epoch(sasrec):
    model, batch = sasrec
    model.eval()  # no dropout: both modes see the same model
    student = torch.zeros(len(batch["user_id"]), 2 * model.item_embedding.embedding_dim)
    try:
        model.teacher_mode = "step"
        model._step["student"] = student
        step = model.auxiliary_losses(batch)["distill"]
        model.teacher_mode = "epoch"
        model.set_epoch(7)
        model._step["student"] = student
        epoch = model.auxiliary_losses(batch)["distill"]
        torch.testing.assert_close(epoch, step)
        cached = model.epoch_teachers()
        has = model.user_seq_len > 0
        assert (cached[~has] == 0).all() and cached[has].abs().sum(1).gt(0).all()
        with torch.no_grad():  # a step of training changes the model; the epoch's teachers stay
            model.adapter[0].weight.mul_(1.5)
            assert model.epoch_teachers() is cached
            model.set_epoch(8)
            assert not torch.allclose(model.epoch_teachers(), cached)
            model.adapter[0].weight.div_(1.5)
    finally:
        model.teacher_mode = "step"


def test_cross_attention_is_the_originals_option_and_drops_no_weights(sasrec, cache):
    """The original's cross-attention has no dropout on its weights; without it
    (``llmesr_cross_attention: False``, the original's ``--use_cross_att`` off) the encoder gets
    each view's inputs ``sqrt(d) * table + P`` as they are."""
    model, batch = sasrec
    assert model.id_from_llm.dropout.p == 0.0 and model.llm_from_id.dropout.p == 0.0
    _, plain, _ = build_model("LLMESR_SASRec", {**TINY, "llmesr_cross_attention": False})
    plain.eval()
    assert plain.id_from_llm is None and not any("from_" in n for n, _ in plain.named_parameters())
    seq = batch["item_id_list"]
    d = plain.item_embedding.embedding_dim
    positions = torch.arange(1, seq.shape[1] + 1).unsqueeze(0) * (seq > 0)
    with torch.no_grad():
        x_id, x_llm = plain._inputs(seq)
        pos = plain.view_position(positions)
        torch.testing.assert_close(x_id, d ** 0.5 * plain.item_embedding.weight[seq] + pos)
        torch.testing.assert_close(x_llm, d ** 0.5 * plain.adapter(plain.llm_table[seq]) + pos)
        model.eval()
        crossed, _ = model._inputs(seq)
    assert not torch.allclose(crossed, d ** 0.5 * model.item_embedding.weight[seq]
                              + model.view_position(positions))


def test_an_unknown_teacher_mode_is_one_line(cache):
    from recbole_faerec.settings import SettingError

    with pytest.raises(SettingError, match="llmesr_teacher 'batch' is unknown"):
        build_model("LLMESR_SASRec", {**TINY, "llmesr_teacher": "batch"})


def test_backbones_it_cannot_run(cache):
    from recbole_faerec.model.llm_item import UNWRAPPABLE

    assert "no sequence-encoder adapter" in UNWRAPPABLE["LLMESR_NARM"]
    assert "masked-item prediction" in UNWRAPPABLE["LLMESR_BERT4Rec"]
    from recbole_faerec.model.llm_item import MethodBackboneError

    with pytest.raises(MethodBackboneError, match="LLMESR_LightSANs with llmesr_causal True: "
                                                  "LightSANs's encoder is not causal"):
        build_model("LLMESR_LightSANs", {**TINY, "train_positions": "last"})
    with pytest.raises(MethodBackboneError, match="GRU4Rec's encoder is causal by construction"):
        build_model("LLMESR_GRU4Rec", {**TINY, "llmesr_causal": False})


def test_user_prompts_are_embedded_once_and_find_the_neighbours(cache, caplog):
    """``llmesr_user_embedding: text``: each user's prompt over its training items' names, embedded
    with the item encoder into <dataset>.useremb, reused by the next model."""
    from recbole_faerec.embeddings import store
    from recbole_faerec.embeddings.loader import user_embedding_paths, user_prompt
    from recbole_faerec.embeddings.prompts import read_item_texts, text_hash

    settings = {**TINY, "llmesr_user_embedding": "text"}
    config, model, train = build_model("LLMESR_SASRec", settings)
    paths = user_embedding_paths(config)
    tokens, emb, manifest = store.load_embeddings(paths)
    assert paths.atomic.endswith("ml-100k.useremb") and manifest["kind"] == "users"
    has = model.user_seq_len > 0
    assert len(tokens) == int(has.sum())
    # one user's prompt, by hand: the names of its training items, oldest first
    item_token = train._dataset.field2id_token["item_id"]
    user_token = train._dataset.field2id_token["user_id"]
    ids, values, _ = read_item_texts(f"{config['data_path']}/ml-100k.item")
    title = {t: v["movie_title"] for t, v in zip(ids, values)}
    u = int(torch.nonzero(has)[0])
    items = model.user_seq[u, : model.user_seq_len[u]].tolist() + [int(model.user_last[u])]
    prompt = user_prompt([title[item_token[i]] for i in items], config["llm_prompt_category"])
    assert prompt.startswith("The user has visited following") and title[item_token[items[-1]]] in prompt
    assert manifest["items"][user_token[u]] == text_hash(prompt)
    # the neighbours are the most similar users by those embeddings
    row = {t: i for i, t in enumerate(tokens)}
    matrix = torch.zeros(len(model.user_seq), emb.shape[1])
    for v in torch.nonzero(has).flatten().tolist():
        matrix[v] = torch.as_tensor(emb[row[user_token[v]]])
    sims = F.normalize(matrix, dim=-1) @ F.normalize(matrix[u], dim=0)
    sims[~has] = -2.0
    sims[u] = -2.0
    assert set(model.neighbours[u].tolist()) == set(sims.topk(3).indices.tolist())
    # a second model reuses every vector
    with caplog.at_level("INFO"):
        build_model("LLMESR_SASRec", settings)
    assert "0 embedded in this run" in caplog.text


def test_user_prompt_keeps_the_most_recent_items():
    from recbole_faerec.embeddings.loader import USER_PROMPT_CAP, user_prompt

    names = [f"item number {i:04d}" for i in range(500)]  # 18 characters each: too many
    prompt = user_prompt(names, "movie")
    assert prompt.endswith("item number 0499.") and "item number 0000" not in prompt
    assert len(prompt) <= USER_PROMPT_CAP + 60
    assert user_prompt(["a", "b"], "movie") == "The user has visited following movies: a; b."


# ---- LLM-CFSR (a reconstruction on LLM-ESR) ------------------------------------------------------

@pytest.fixture(scope="module")
def cfsr(cache):
    config, model, train = build_model("LLMCFSR_SASRec", TINY)
    return config, model.eval(), next(iter(train))


def test_cfsr_defaults_and_its_layers_of_fusion(cfsr):
    config, model, batch = cfsr
    assert config["llmesr_distill_weight"] == 0.0  # not in its abstract
    # its embedding layer adds the cross-attention to the inputs, as the later layers do
    assert model.id_from_llm is not None and model.cross_residual
    assert not build_model("LLMESR_SASRec", TINY)[1].cross_residual  # LLM-ESR's replaces them
    assert model.sequence_fusion and model.prediction_fusion
    assert model.auxiliary_losses(batch) == {}
    seq, length = batch["item_id_list"], batch["item_length"]
    d = model.item_embedding.embedding_dim
    with torch.no_grad():
        h_id, h_llm = model.view_states(seq, length, True)
        last_id, last_llm = model.view_states(seq, length, False)
        rows = torch.arange(len(seq)), length - 1
        torch.testing.assert_close(last_id, h_id[rows])
        user = model.forward(seq, length)
        # the prediction layer by hand: two tokens (with their view type) attend over both
        tokens = torch.stack([last_id, last_llm], dim=1) + model.view_type.weight
        none = torch.zeros(len(seq), 2, dtype=torch.bool)
        fused = tokens + model.view_tokens(tokens, tokens, none, causal=False)
    torch.testing.assert_close(user, fused.reshape(len(seq), 2 * d))
    assert not torch.allclose(user, torch.cat([last_id, last_llm], -1))  # it does fuse


def later_items_changed(model, batch):
    """Four sequences of at least 6 items, and the same with every item from position 3 on redrawn."""
    seq, length = batch["item_id_list"], batch["item_length"]
    keep = length >= 6
    seq, length = seq[keep][:4], length[keep][:4]
    changed = seq.clone()
    changed[:, 3:] = torch.randint(1, model.n_items, changed[:, 3:].shape)
    return seq, length, changed


def test_cfsr_sequence_fusion_stays_causal(cfsr):
    _, model, batch = cfsr
    seq, length, changed = later_items_changed(model, batch)
    with torch.no_grad():
        before = model.dual_states(seq, length, True)
        after = model.dual_states(changed, length, True)
    torch.testing.assert_close(after[:, :3], before[:, :3])
    assert not torch.allclose(after[:, 5], before[:, 5])


def test_llmesr_states_are_causal_and_the_original_is_not(sasrec):
    model, batch = sasrec
    model.eval()
    seq, length, changed = later_items_changed(model, batch)
    with torch.no_grad():
        before, after = model.dual_states(seq, length, True), model.dual_states(changed, length, True)
        torch.testing.assert_close(after[:, :3], before[:, :3])
        model.causal = False  # the original: bidirectional cross-attention and encoder
        try:
            both = model.dual_states(seq, length, True), model.dual_states(changed, length, True)
        finally:
            model.causal = True
    assert not torch.allclose(both[0][:, :3], both[1][:, :3])


def test_the_residual_cross_attention_adds_to_the_inputs(sasrec):
    """``llmesr_cross_residual: True``: each view's input plus its cross-attention over the other,
    with the same layers as the original's replacement."""
    model, batch = sasrec
    _, residual, _ = build_model("LLMESR_SASRec", {**TINY, "llmesr_cross_residual": True})
    residual.load_state_dict(model.state_dict())
    model.eval(), residual.eval()
    seq = batch["item_id_list"]
    with torch.no_grad():
        replaced = model._inputs(seq)
        added = residual._inputs(seq)
        model.id_from_llm = model.llm_from_id = None  # the inputs before the cross-attention
        try:
            inputs = model._inputs(seq)
        finally:
            model.id_from_llm, model.llm_from_id = residual.id_from_llm, residual.llm_from_id
    for plain, new, total in zip(inputs, replaced, added):
        torch.testing.assert_close(total, plain + new)


def test_settings_of_an_absent_cross_attention_are_warned_about(cache, caplog):
    """Given while ``llmesr_cross_attention`` is False, the cross-attention's settings have no
    effect on LLM-ESR: one warning each. LLM-CFSR's later fusion layers still use the head count."""
    off = {**TINY, "state": "INFO", "llmesr_cross_attention": False, "llmesr_heads": 4,
           "llmesr_cross_residual": True}
    with caplog.at_level("WARNING"):
        build_model("LLMESR_SASRec", off)
    text = caplog.text
    assert "LLMESR_SASRec: llmesr_heads 4 has no effect: llmesr_cross_attention is False" in text
    assert "llmesr_cross_residual True has no effect" in text
    assert "llmesr_attention_dropout" not in text  # not given
    caplog.clear()
    with caplog.at_level("WARNING"):
        build_model("LLMCFSR_SASRec", off)
    assert "llmesr_heads" not in caplog.text and "llmesr_cross_residual True has no effect" in caplog.text
    # LLM-CFSR has no distillation by default: the neighbours' settings have no effect there
    assert ("LLMCFSR_SASRec: llmesr_neighbours 3 has no effect: llmesr_distill_weight is 0"
            in caplog.text)
    caplog.clear()
    with caplog.at_level("WARNING"):  # no fusion layer at all: no attention weights, heads unused
        _, bare, _ = build_model("LLMCFSR_SASRec", {**off, "llmcfsr_sequence_fusion": False,
                                                    "llmcfsr_prediction_fusion": False})
    assert "LLMCFSR_SASRec: llmesr_heads 4 has no effect" in caplog.text
    assert not any(part in name for name, _ in bare.named_parameters()
                   for part in ("from_", "_over_", "view_tokens", "view_type"))
    caplog.clear()
    with caplog.at_level("WARNING"):
        build_model("LLMESR_SASRec", {**TINY, "llmesr_heads": 4})
    assert "has no effect" not in caplog.text


def test_on_gru4rec_the_views_enter_as_they_are_as_in_the_original(cache, caplog):
    """The original's GRU4Rec feeds the ID and LLM views to its GRU without the sqrt(d) scaling,
    position embedding and dropout of its SASRec (props/model/LLMESR_GRU4Rec.yaml, read by LLM-CFSR
    too); ``llmesr_view_inputs: positions`` gives GRU4Rec the SASRec inputs; a dropout given for raw
    inputs is warned about."""
    gru = {k: v for k, v in TINY.items() if k not in ("n_layers", "n_heads", "inner_size")}
    with caplog.at_level("WARNING"):
        config, model, train = build_model("LLMESR_GRU4Rec", {**gru, "llmesr_cross_attention": False,
                                                              "llmesr_input_dropout": 0.2,
                                                              "state": "INFO"})
    assert config["llmesr_view_inputs"] == "raw"
    assert model.view_position is None and model.input_dropout is None
    assert "llmesr_input_dropout 0.2 has no effect: llmesr_view_inputs is raw" in caplog.text
    seq = next(iter(train))["item_id_list"]
    model.train()  # no dropout of LLM-ESR's own: the inputs are exactly the two tables' rows
    with torch.no_grad():
        x_id, x_llm = model._inputs(seq)
    torch.testing.assert_close(x_id, model.item_embedding.weight[seq])
    torch.testing.assert_close(x_llm, model.adapter(model.llm_table[seq]))
    config, cfsr, _ = build_model("LLMCFSR_GRU4Rec", gru)
    assert config["llmesr_view_inputs"] == "raw" and cfsr.view_position is None
    config, sasrec_inputs, _ = build_model("LLMESR_GRU4Rec", {**gru, "llmesr_view_inputs": "positions"})
    assert sasrec_inputs.view_position is not None and sasrec_inputs.input_dropout.p == 0.5
    config, sasrec, _ = build_model("LLMESR_SASRec", TINY)
    assert config["llmesr_view_inputs"] == "positions" and sasrec.view_position is not None
