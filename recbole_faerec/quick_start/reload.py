"""Reload a saved model, and recommend with it.

:func:`load_data_and_model` is :func:`recbole.quick_start.load_data_and_model` for checkpoints of
any model the plugin runs (its own and RecBole's): the checkpoint's config rebuilds the dataset and
its splits as in training (with the plugin's checks and item popularity), the model class is looked
up plugin-first, and the weights are loaded. RecBole's own function is routed here once
``recbole_faerec`` is imported (:mod:`recbole_faerec.compat`, fix ``load_data_and_model``).

The command line prints a user's top-K items with their titles::

    python -m recbole_faerec.quick_start.reload --model_file saved/FAERec_SASRec-....pth --user 196
"""

from __future__ import annotations

import argparse
import logging
import sys
from logging import getLogger
from typing import List, Optional, Sequence

import numpy as np


def load_checkpoint(model_file: str) -> dict:
    """A RecBole checkpoint (it pickles the whole ``Config``: a file a trainer wrote, not weights
    from elsewhere), mapped to the CPU first so a GPU-trained model loads anywhere."""
    import torch

    return torch.load(model_file, map_location="cpu", weights_only=False)


def load_data_and_model(model_file: str, logger_init: bool = True):
    """Load the dataset, its splits and the saved model of ``model_file``.

    Returns ``(config, model, dataset, train_data, valid_data, test_data)``, exactly what
    :func:`recbole.quick_start.load_data_and_model` returns, for plugin and RecBole models alike.
    The model is in eval mode on the config's device (the CPU when the checkpoint names a CUDA
    device this machine lacks).
    """
    import torch
    from recbole.utils import init_logger, init_seed

    from recbole_faerec.quick_start.quick_start import load_dataset
    from recbole_faerec.utils import get_model

    checkpoint = load_checkpoint(model_file)
    config = checkpoint["config"]
    if config["device"].type == "cuda" and not torch.cuda.is_available():
        getLogger().warning(f"{model_file} was trained on {config['device']}; loading it on the CPU")
        config["device"] = torch.device("cpu")
        config["use_gpu"] = False
    init_seed(config["seed"], config["reproducibility"])
    if logger_init:
        init_logger(config)
    logger = getLogger()
    logger.info(config)
    dataset, train_data, valid_data, test_data = load_dataset(config, logger)

    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    model.eval()
    return config, model, dataset, train_data, valid_data, test_data


def item_titles(dataset, item_ids: Sequence[int]) -> List[str]:
    """A readable name for each internal item id: the first text field of ``.item`` that the
    dataset loaded (``title``, ``movie_title``, ...), else the item token."""
    tokens = dataset.id2token(dataset.iid_field, np.asarray(item_ids))
    feat = dataset.item_feat
    for field in ("title", "movie_title", "name"):
        if feat is not None and field in feat:
            out = []
            for iid, token in zip(item_ids, tokens):
                words = feat[field][int(iid)]
                ids = [int(w) for w in np.atleast_1d(words.numpy()) if int(w) > 0]
                text = " ".join(dataset.id2token(field, ids)) if ids else ""
                out.append(text or str(token))
            return out
    return [str(t) for t in tokens]


def recommend(model_file: str, users: Sequence[str], k: int = 10):
    """Top-``k`` ``(item_token, title, score)`` per user token, with RecBole's ``full_sort_topk``.

    Sequential models score the position of each user's test item (the history is every earlier
    interaction), as RecBole's case study does; padding gets ``-inf``.
    """
    from recbole.utils.case_study import full_sort_topk

    config, model, dataset, _, _, test_data = load_data_and_model(model_file, logger_init=False)
    missing = [u for u in users if u not in dataset.field2token_id[dataset.uid_field]]
    if missing:
        raise KeyError(f"user(s) {', '.join(missing)} are not in dataset {config['dataset']} "
                       f"(tokens of its '{dataset.uid_field}' field)")
    uids = dataset.token2id(dataset.uid_field, list(users))
    scores, index = full_sort_topk(np.atleast_1d(uids), model, test_data, k=k, device=config["device"])
    out = {}
    for user, row_scores, row_items in zip(users, scores.cpu().numpy(), index.cpu().numpy()):
        tokens = dataset.id2token(dataset.iid_field, row_items)
        titles = item_titles(dataset, row_items)
        out[user] = list(zip([str(t) for t in tokens], titles, [float(s) for s in row_scores]))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Print a user's top-K items from a saved model.")
    parser.add_argument("--model_file", required=True, help="a checkpoint from saved/")
    parser.add_argument("--user", required=True, nargs="+", help="user id(s) as in the .inter file")
    parser.add_argument("--topk", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        result = recommend(args.model_file, args.user, args.topk)
    except (KeyError, FileNotFoundError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    for user, rows in result.items():
        print(f"user {user}: top {args.topk}")
        for rank, (token, title, score) in enumerate(rows, start=1):
            print(f"{rank:3d}. {token}\t{title}\t{score:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
