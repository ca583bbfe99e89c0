"""Runs one RecBole operation in a fresh process, for tests/test_compat.py.

Usage: python tests/compat_probe.py CHECK [ARGS]; the fixes named in $RECBOLE_FAEREC_COMPAT_SKIP are
left out. Prints 'OK <detail>' on success; a failure ends in RecBole's own exception.
"""

import os
import sys
import tempfile

import recbole_faerec  # noqa: F401  (applies the compat fixes)

TINY = {
    "MAX_ITEM_LIST_LENGTH": 5,
    "hidden_size": 8,
    "inner_size": 16,
    "n_layers": 1,
    "n_heads": 1,
    "epochs": 1,
    "show_progress": False,
    "state": "ERROR",
}


def config(dataset="ml-100k", **extra):
    from recbole.config import Config

    return Config(model="SASRec", dataset=dataset,
                  config_dict={**TINY, "train_neg_sample_args": None, **extra})


def main(check, *args):
    if check == "config":
        cfg = config()
        print("OK", cfg["model"])
    elif check == "ray":
        import recbole.quick_start  # noqa: F401

        print("OK ray")
    elif check == "anomaly":
        import torch
        from recbole.utils import get_model

        get_model("SASRec")
        print("OK" if not torch.is_anomaly_enabled() else "ANOMALY_ON")
    elif check == "item_text":
        from recbole.data import create_dataset

        ds = create_dataset(config(load_col={"inter": ["user_id", "item_id"],
                                             "item": ["item_id", "movie_title", "class"]}))
        internal = ds.token2id("item_id", "302")
        feat = ds.item_feat
        row = feat[feat["item_id"] == internal].iloc[0]
        title = " ".join(ds.field2id_token["movie_title"][t] for t in list(row["movie_title"]) if t)
        genres = " ".join(ds.field2id_token["class"][t] for t in list(row["class"]) if t)
        print("OK", title, "|", genres)
    elif check == "fill_nan":
        from recbole.data import create_dataset

        data_path, dataset = args
        ds = create_dataset(config(dataset=dataset, data_path=data_path, normalize_all=False,
                                   load_col={"inter": ["user_id", "item_id", "rating", "timestamp"]}))
        n_nan = int(ds.inter_feat["rating"].isna().sum())
        print("OK" if n_nan == 0 else f"NAN_LEFT {n_nan}")
    elif check == "train":
        from recbole.data import create_dataset, data_preparation
        from recbole.trainer import Trainer
        from recbole.utils import get_model, init_seed

        os.chdir(tempfile.mkdtemp())
        cfg = config(metrics=["Hit", "ItemCoverage", "GiniIndex", "AveragePopularity", "TailPercentage"],
                     topk=[10], valid_metric="Hit@10")
        init_seed(cfg["seed"], cfg["reproducibility"])
        train, valid, test = data_preparation(cfg, create_dataset(cfg))
        model = get_model("SASRec")(cfg, train._dataset)
        trainer = Trainer(cfg, model)
        trainer.fit(train, valid, saved=True, show_progress=False)
        result = trainer.evaluate(test, load_best_model=True, show_progress=False)
        print("OK", dict(result))
    elif check == "bce":
        from recbole.data import create_dataset, data_preparation
        from recbole.utils import get_model

        from recbole_faerec.config import Config as PluginConfig  # knows loss_type BCE's input type

        cfg = PluginConfig(model="SASRec", dataset="ml-100k", config_dict={**TINY, "loss_type": "BCE"})
        train, _, _ = data_preparation(cfg, create_dataset(cfg))
        model = get_model("SASRec")(cfg, train._dataset)
        print("OK", type(model.loss_fct).__name__, float(model.calculate_loss(next(iter(train)))))
    else:
        raise SystemExit(f"unknown check {check}")


if __name__ == "__main__":
    argv, sys.argv = sys.argv[1:], sys.argv[:1]  # RecBole's Config reads --key=value from sys.argv
    main(*argv)
