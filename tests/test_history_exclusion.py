"""``eval_exclude_history``: each evaluated user's input-sequence items out of the full ranking,
inside RecBole's evaluator, checked against ranks computed by hand on real ml-100k rows."""

import math

import numpy as np
import pytest
import torch
from conftest import TINY_SASREC

# NDCG@1000 sees nearly every rank change; @10 is what the tables report
SETTINGS = {**TINY_SASREC, "embedding_size": 8, "metrics": ["Hit", "NDCG"], "topk": [10, 1000],
            "state": "WARNING"}


@pytest.fixture(scope="module")
def sasrec():
    """An untrained (seeded) SASRec on ml-100k, its test data and RecBole's own Trainer."""
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    from recbole_faerec.quick_start import build_config, load_dataset
    from recbole_faerec.utils import get_model

    config = build_config("SASRec", "ml-100k", config_dict=SETTINGS)
    init_seed(config["seed"], config["reproducibility"])
    _, train, _, test = load_dataset(config)
    model = get_model("SASRec")(config, train._dataset)
    return config, model, test, Trainer(config, model)


def by_hand(model, test, fill):
    """Hit@10, NDCG@10, NDCG@1000 and every row's rank over the test rows, ranking every item but padding, with each row's
    input-sequence items scored ``fill`` (None: left as the model scored them)."""
    dataset = test._dataset
    rows = dataset.inter_feat
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(dataset[np.arange(len(rows))]).view(len(rows), -1).clone()
    scores[:, 0] = -math.inf
    hits, gains, gains1000, ranks = [], [], [], []
    for r, (seq, target) in enumerate(zip(rows["item_id_list"].tolist(), rows["item_id"].tolist())):
        row = scores[r]
        if fill is not None:
            for item in seq:
                if item > 0:
                    row[item] = fill
        rank = int((row > row[target]).sum()) if row[target] > -math.inf else len(row)
        ranks.append(rank)
        hits.append(rank < 10)
        gains.append(1 / math.log2(rank + 2) if rank < 10 else 0.0)
        gains1000.append(1 / math.log2(rank + 2) if rank < 1000 else 0.0)
    figures = tuple(round(float(np.mean(v)), 4) for v in (hits, gains, gains1000))
    return figures, ranks


@pytest.mark.parametrize("exclude, fill", [(False, None), (True, -math.inf), (True, 0.0)])
def test_recbole_evaluator_matches_hand_ranks(sasrec, exclude, fill):
    config, model, test, trainer = sasrec
    config["eval_exclude_history"] = exclude
    config["eval_history_score"] = -math.inf if fill is None else fill
    try:
        result = trainer.evaluate(test, load_best_model=False, show_progress=False)
    finally:
        config["eval_exclude_history"] = False
        config["eval_history_score"] = -math.inf
    figures, ranks = by_hand(model, test, fill)
    assert tuple(round(float(result[k]), 4) for k in ("hit@10", "ndcg@10", "ndcg@1000")) == figures
    if exclude:  # the masking moves real targets up (ml-100k has no repeated items)
        plain_figures, plain = by_hand(model, test, None)
        plain, ranks = np.array(plain), np.array(ranks)
        assert (ranks != plain).sum() > 100
        if fill == -math.inf:  # (scored 0, history items of an untrained model stay near the middle)
            assert (ranks <= plain).all() and plain_figures[2] != figures[2]


def test_a_target_in_the_history_is_a_miss_or_scored_zero():
    from recbole.data.interaction import Interaction

    from recbole_faerec.evaluator.history import exclude_history

    class Model:
        ITEM_SEQ = "item_id_list"

    interaction = Interaction({"item_id_list": torch.tensor([[0, 3, 5], [0, 0, 2]]),
                               "item_id": torch.tensor([5, 4])})
    scores = torch.arange(14, dtype=torch.float).view(2, 7)
    out = exclude_history(scores.clone(), interaction, Model(), {"eval_history_score": None})
    assert out[0, 5] == -math.inf and out[0, 3] == -math.inf and out[1, 2] == -math.inf
    assert out[0, 0] == 0 and out[1, 4] == 11  # padding id and other items untouched
    zero = exclude_history(scores.clone(), interaction, Model(), {"eval_history_score": 0})
    assert zero[0, 5] == 0 and zero[0, 6] == 6


def test_settings_that_cannot_take_effect_are_errors():
    from recbole_faerec.evaluator import EvaluationConfigError
    from recbole_faerec.quick_start import build_config

    with pytest.raises(EvaluationConfigError, match="eval_args.mode"):
        build_config("SASRec", "ml-100k", config_dict={
            "eval_exclude_history": True, "eval_args": {"split": {"LS": "valid_and_test"},
                                                        "order": "TO", "mode": "uni100"}})
    with pytest.raises(EvaluationConfigError, match="True or False"):
        build_config("SASRec", "ml-100k", config_dict={"eval_exclude_history": "yes"})
