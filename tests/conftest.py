"""Shared fixtures: real datasets from ../shared/datasets, converted once per test session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
PYTHON = sys.executable

# setup.cfg runs the suite on two pytest-xdist workers, one per core of the 2-core machine (most
# tests spend their time in single-threaded Python: RecBole's data preparation and evaluation
# loops). Each worker's torch, and every process a test starts, then uses one thread, so the two
# workers do not compete for the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

# Tiny settings for real but short runs (CPU, 2 cores): see README "Tests".
TINY_SASREC = {
    "MAX_ITEM_LIST_LENGTH": 5,
    "hidden_size": 8,
    "inner_size": 16,
    "n_layers": 1,
    "n_heads": 1,
    "epochs": 1,
    "show_progress": False,
}


def build_model(model_name, settings, dataset="ml-100k"):
    """``(config, model, train_data)``: the model built on the dataset's real training split with
    the plugin's Config and loaders, seeded as RecBole's quick start does."""
    from recbole.utils import init_seed

    from recbole_faerec.quick_start import build_config, load_dataset
    from recbole_faerec.utils import get_model

    config = build_config(model_name, dataset, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    _, train, _, _ = load_dataset(config)
    init_seed(config["seed"], config["reproducibility"])
    return config, get_model(model_name)(config, train._dataset), train


def run_py(args, cwd=None, env=None, timeout=600):
    """Run ``python ARGS`` and return the CompletedProcess (stdout and stderr as text)."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONPATH", str(REPO))
    return subprocess.run([PYTHON, *map(str, args)], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (expected ../shared/datasets beside the repo)")
    return path


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A RecBole data_path that tests fill with converted real datasets."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def amazon_beauty(data_root) -> Path:
    """amazon-beauty converted by dataset_scripts/prepare_dataset.py; returns the data_path."""
    source = _require(SHARED_DATASETS / "amazon-beauty")
    if not (data_root / "amazon-beauty" / "amazon-beauty.inter").exists():
        proc = run_py([REPO / "dataset_scripts" / "prepare_dataset.py", "--dataset", "amazon-beauty",
                       "--source", source, "--data_path", data_root])
        assert proc.returncode == 0, proc.stderr
    return data_root


def _cache_in(path: Path):
    """``$RECBOLE_FAEREC_CACHE`` set to ``path`` while the fixture lives, then put back."""
    old = os.environ.get("RECBOLE_FAEREC_CACHE")
    os.environ["RECBOLE_FAEREC_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("RECBOLE_FAEREC_CACHE")
    else:
        os.environ["RECBOLE_FAEREC_CACHE"] = old


@pytest.fixture(autouse=True)
def own_working_directory(tmp_path, monkeypatch):
    """Every test runs in a directory of its own. RecBole writes log/, log_tensorboard/ and saved/
    into the working directory and names a checkpoint by the second it was saved, so two tests
    sharing one (two xdist workers in the checkout) could load each other's checkpoints."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Tests never read or write the user's own embedding cache (~/.cache/recbole_faerec): one
    fresh cache for the session, which the per-module ``cache`` fixture overrides."""
    yield from _cache_in(tmp_path_factory.mktemp("session-emb-cache"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh item-embedding cache for ml-100k (``$RECBOLE_FAEREC_CACHE``) per test module."""
    yield from _cache_in(tmp_path_factory.mktemp("emb-cache"))


# ml-100k's training split counted by hand (tests of train-only popularity compare with it)
def hand_train_popularity(dataset):
    """Per internal item id, the interactions of the training part ``s[:-2]`` of each user's
    history, counted straight from RecBole's copy of ml-100k.inter: each user's interactions in
    time order, the last two dropped. RecBole min-max normalises float fields (``normalize_all``)
    and holds them as float32, about 1 s of resolution here, and sorts stably: interactions whose
    normalised float32 times tie keep the file's order."""
    import numpy as np
    import pandas as pd
    import recbole

    raw = pd.read_csv(f"{recbole.__path__[0]}/dataset_example/ml-100k/ml-100k.inter", sep="\t",
                      dtype={"user_id:token": str, "item_id:token": str})
    time = raw["timestamp:float"]
    raw["time"] = ((time - time.min()) / (time.max() - time.min())).astype(np.float32)
    raw = raw.sort_values("time", kind="stable")
    from_end = raw.groupby("user_id:token", sort=False).cumcount(ascending=False)
    per_token = raw.loc[from_end >= 2, "item_id:token"].value_counts()
    tokens = dataset.field2id_token["item_id"]
    return np.array([0] + [int(per_token.get(t, 0)) for t in tokens[1:]], dtype=np.int64)
