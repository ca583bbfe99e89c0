"""Cached item embeddings for a RecBole dataset: where they live, and the aligned matrix.

:func:`load_item_embeddings` returns a float32 matrix whose row ``i`` is the item with RecBole's
internal id ``i`` (row 0, the padding id, is zeros). :func:`ensure_item_embeddings` first creates
the embeddings with the configured provider (by default the offline local one) when there are none
yet, so a FAERec model runs in one step.

Settings (RecBole config keys, defaults in ``props/overall.yaml``):

``llm_emb_suffix`` (``itememb``), ``llm_emb_dir`` (the dataset's folder; the user cache
``$RECBOLE_FAEREC_CACHE`` or ``~/.cache/recbole_faerec/<dataset>`` for ml-100k, whose folder is
inside the RecBole wheel, and for read-only folders), ``llm_emb_provider`` (``local``),
``llm_emb_model``, ``llm_emb_base_url``, ``llm_emb_dimensions``, ``llm_emb_batch_size``,
``llm_emb_concurrency``, and the prompt settings ``llm_prompt_template``, ``llm_prompt_category``,
``llm_prompt_fields``.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from recbole_faerec.embeddings import store
from recbole_faerec.embeddings.prompts import PromptSettings
from recbole_faerec.embeddings.providers import Provider, make_provider
from recbole_faerec.embeddings.runner import embed_items
from recbole_faerec.utils.utils import config_get as _get

MAX_LISTED = 10


def cache_root() -> str:
    return os.environ.get("RECBOLE_FAEREC_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "recbole_faerec")


def embedding_paths(config: Mapping) -> store.EmbeddingPaths:
    """Where ``config``'s dataset keeps its cached item embeddings."""
    dataset = config["dataset"]
    suffix = _get(config, "llm_emb_suffix", store.DEFAULT_SUFFIX)
    directory = _get(config, "llm_emb_dir")
    if not directory:
        data_dir = config["data_path"]
        if dataset == "ml-100k" or not os.access(data_dir, os.W_OK):
            directory = os.path.join(cache_root(), dataset)
        else:
            directory = data_dir
    return store.EmbeddingPaths(os.path.abspath(directory), dataset, suffix)


def provider_from_config(config: Mapping) -> Provider:
    name = _get(config, "llm_emb_provider", "local")
    options = {"model": _get(config, "llm_emb_model")}
    if name == "local":
        options["batch_size"] = _get(config, "llm_emb_batch_size")
    elif name == "openai":
        options.update(base_url=_get(config, "llm_emb_base_url"),
                       dimensions=_get(config, "llm_emb_dimensions"),
                       concurrency=_get(config, "llm_emb_concurrency"))
    elif name == "tfidf":
        options = {"dimensions": _get(config, "llm_emb_dimensions")}
    return make_provider(name, **options)


def align_to_dataset(tokens, emb: np.ndarray, id2token, source: str) -> np.ndarray:
    """Rows of ``emb`` (one per token) reordered to RecBole's internal ids; row 0 = zeros."""
    id2token = np.asarray(id2token)
    wanted = id2token[1:]
    index = pd.Index(tokens).get_indexer(wanted)
    missing = wanted[index < 0].tolist()
    if missing:
        shown = ", ".join(missing[:MAX_LISTED]) + (
            f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else "")
        raise store.EmbeddingFileError(
            f"{source}: {len(missing)} of the dataset's {len(wanted)} items have no embedding: "
            f"{shown}. Run dataset_scripts/embed_items.py again to embed them."
        )
    out = np.zeros((len(id2token), emb.shape[1]), dtype=np.float32)
    out[1:] = emb[index]
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if len(bad):
        names = id2token[bad].tolist()
        raise store.EmbeddingFileError(
            f"{source}: the embeddings of {len(bad)} item(s) contain NaN or inf: "
            f"{', '.join(names[:MAX_LISTED])}. Delete those lines and rerun embed_items.py."
        )
    return out


def load_item_embeddings(dataset, config: Mapping, expected_dim: Optional[int] = None) -> np.ndarray:
    """The cached LLM embeddings of ``dataset``'s items, aligned to its internal item ids."""
    paths = embedding_paths(config)
    tokens, emb, manifest = store.load_embeddings(paths)
    if expected_dim is not None and emb.shape[1] != expected_dim:
        raise store.EmbeddingFileError(
            f"{paths.atomic}: vectors have {emb.shape[1]} dimensions, the model expects {expected_dim}"
        )
    return align_to_dataset(tokens, emb, dataset.field2id_token[dataset.iid_field], paths.atomic)


def create_item_embeddings_if_missing(config: Mapping, logger: Optional[logging.Logger] = None) -> bool:
    """Embed the dataset's items with the configured provider unless cached embeddings exist.

    Returns True when it created them. Needs only the config (not the RecBole dataset), so a
    distributed launch runs it once, before starting the workers.
    """
    logger = logger or logging.getLogger(__name__)
    paths = embedding_paths(config)
    if os.path.isfile(paths.atomic):
        return False
    item_path = os.path.join(config["data_path"], f"{config['dataset']}.item")
    if not os.path.isfile(item_path):
        raise store.EmbeddingFileError(
            f"{paths.atomic} does not exist and there is no {item_path} to make it from: "
            "item embeddings need item text"
        )
    provider = provider_from_config(config)
    logger.info(f"No cached item embeddings at {paths.atomic}: creating them with the "
                f"'{provider.name}' provider ({provider.describe().get('model')}).")
    summary = embed_items(item_path, paths, provider, PromptSettings.from_config(config),
                          iid_field=config["ITEM_ID_FIELD"], progress=False)
    logger.info(f"Item embeddings: {summary.line()}")
    return True


def ensure_item_embeddings(dataset, config: Mapping, logger: Optional[logging.Logger] = None) -> np.ndarray:
    """:func:`load_item_embeddings`, creating the embeddings first if there are none."""
    create_item_embeddings_if_missing(config, logger)
    return load_item_embeddings(dataset, config)
