"""Cached item embeddings for a RecBole dataset: where they live, and the aligned matrix.

:func:`load_item_embeddings` returns a float32 matrix whose row ``i`` is the item with RecBole's
internal id ``i`` (row 0, the padding id, is zeros). :func:`ensure_item_embeddings` first makes the
cache obey the config (:func:`sync_item_embeddings`): it embeds the items that are missing or whose
prompt changed with the configured provider (by default the offline local one), and refuses a cache
made by another encoder, so a FAERec model runs in one step and never on embeddings it was not
asked for.

Settings (RecBole config keys, defaults in ``props/overall.yaml``):

``llm_emb_suffix`` (``itememb``), ``llm_emb_dir`` (the dataset's folder; the user cache
``$RECBOLE_FAEREC_CACHE`` or ``~/.cache/recbole_faerec/<dataset>`` for ml-100k, whose folder is
inside the RecBole wheel, and for read-only folders), ``llm_emb_provider`` (``local``, ``openai``,
``tfidf``, or ``precomputed``: the cached file as it is, unchecked),
``llm_emb_model``, ``llm_emb_base_url``, ``llm_emb_dimensions``, ``llm_emb_batch_size``,
``llm_emb_concurrency``, and the prompt settings ``llm_prompt_template``, ``llm_prompt_category``,
``llm_prompt_fields``.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, Mapping, Optional

import numpy as np
import pandas as pd

from recbole_faerec.embeddings import store
from recbole_faerec.embeddings.prompts import PromptSettings
from recbole_faerec.embeddings.providers import PRECOMPUTED, EmbeddingError, Provider, make_provider
from recbole_faerec.embeddings.runner import embed_items
from recbole_faerec.settings import setting as _get

MAX_LISTED = 10


def cache_root() -> str:
    return os.environ.get("RECBOLE_FAEREC_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "recbole_faerec")


def embedding_paths(config: Mapping) -> store.EmbeddingPaths:
    """Where ``config``'s dataset keeps its cached item embeddings."""
    dataset = config["dataset"]
    suffix = _get(config, "llm_emb_suffix")
    directory = _get(config, "llm_emb_dir")
    if not directory:
        data_dir = config["data_path"]
        if dataset == "ml-100k" or not os.access(data_dir, os.W_OK):
            directory = os.path.join(cache_root(), dataset)
        else:
            directory = data_dir
    return store.EmbeddingPaths(os.path.abspath(directory), dataset, suffix)


def provider_from_config(config: Mapping, **extra) -> Provider:
    """The configured encoder (``llm_emb_provider`` and its options; ``extra`` adds options).

    Building it checks that it can run (a known name, an existing model folder, an API key)
    without loading a model or calling a server.
    """
    name = _get(config, "llm_emb_provider")
    options = {"model": _get(config, "llm_emb_model")}
    if name == "local":
        options["batch_size"] = _get(config, "llm_emb_batch_size")
    elif name == "openai":
        options.update(base_url=_get(config, "llm_emb_base_url"),
                       dimensions=_get(config, "llm_emb_dimensions"),
                       concurrency=_get(config, "llm_emb_concurrency"))
    elif name == "tfidf":
        options = {"dimensions": _get(config, "llm_emb_dimensions")}
    elif name == PRECOMPUTED:
        raise EmbeddingError(f"llm_emb_provider '{PRECOMPUTED}' uses a cached file as it is and "
                             "cannot embed; choose local, openai or tfidf to make embeddings")
    return make_provider(name, **{**options, **extra})


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


def item_file(config: Mapping) -> str:
    return os.path.join(config["data_path"], f"{config['dataset']}.item")


def sync_item_embeddings(config: Mapping, logger: Optional[logging.Logger] = None,
                         progress: Optional[bool] = None) -> Dict:
    """Make the cache obey ``config``: embed what is missing or whose prompt changed.

    Checks, before any use of the cache: the configured encoder can run (an unknown provider, a
    missing model folder or a missing API key is an error even when some cache exists); the cache
    was made by that encoder (otherwise :class:`~.runner.EncoderMismatchError`, naming both and how
    to keep or replace the cache); each item's prompt, built from the ``.item`` file now, has the
    hash the cache recorded (otherwise exactly those items are embedded again). With
    ``llm_emb_provider: precomputed`` the file is used as it is. Needs only the config, so a
    distributed launch runs it once before starting the workers.

    Returns what the model uses: ``{"file", "provider", "model", "dimension", "items",
    "embedded", "reused"}``, and the cache's ``tokens`` and ``emb`` once checked (None for
    ``precomputed``, which is read by :func:`load_item_embeddings`).
    """
    logger = logger or logging.getLogger(__name__)
    paths = embedding_paths(config)
    name = _get(config, "llm_emb_provider")
    if name == PRECOMPUTED:
        if not os.path.isfile(paths.atomic):
            raise store.EmbeddingFileError(
                f"llm_emb_provider '{PRECOMPUTED}' uses {paths.atomic} as it is, but there is no "
                f"such file (make it with dataset_scripts/embed_items.py, or set llm_emb_dir / "
                f"llm_emb_suffix to where yours is)")
        manifest = store.read_json(paths.manifest) or {}
        encoder = manifest.get("encoder") or {"provider": "unknown (no manifest)", "model": "unknown"}
        return {"file": paths.atomic, "provider": encoder.get("provider"), "model": encoder.get("model"),
                "dimension": manifest.get("dimension"), "items": manifest.get("n_items"),
                "embedded": 0, "reused": manifest.get("n_items"), "tokens": None, "emb": None}
    provider = provider_from_config(config)
    item_path = item_file(config)
    if not os.path.isfile(item_path):
        raise store.EmbeddingFileError(
            f"there is no {item_path}: the item embeddings are made (and checked) from the .item "
            f"file's text. To use an existing {os.path.basename(paths.atomic)} as it is, set "
            f"llm_emb_provider: {PRECOMPUTED}")
    if progress is None:
        progress = bool(_get(config, "show_progress"))
    summary = embed_items(item_path, paths, provider, PromptSettings.from_config(config),
                          iid_field=config["ITEM_ID_FIELD"], progress=progress)
    if summary.embedded:
        logger.info(f"Item embeddings: {summary.line()}")
    encoder = provider.describe()
    return {"file": paths.atomic, "provider": encoder["provider"], "model": encoder.get("model"),
            "dimension": summary.dimension, "items": summary.total,
            "embedded": summary.embedded, "reused": summary.reused,
            "tokens": summary.tokens, "emb": summary.emb}


def ensure_item_embeddings(dataset, config: Mapping, logger: Optional[logging.Logger] = None) -> np.ndarray:
    """:func:`sync_item_embeddings`, then the checked vectors aligned to the dataset's ids (as
    :func:`load_item_embeddings` returns them, without reading the cache twice); logs the source."""
    logger = logger or logging.getLogger(__name__)
    source = sync_item_embeddings(config, logger)
    if source["emb"] is None:
        matrix = load_item_embeddings(dataset, config)
    else:
        matrix = align_to_dataset(source["tokens"], source["emb"],
                                  dataset.field2id_token[dataset.iid_field], source["file"])
    logger.info(f"Item LLM embeddings: {source['file']} ({source['provider']} {source['model']}, "
                f"{matrix.shape[1]}-d, {source['items']} items in the file, {matrix.shape[0] - 1} in "
                f"the dataset; {source['embedded']} embedded in this run)")
    return matrix


# ---- users: the second kind of the cache ------------------------------------------------------
#: LLM-ESR's user prompt (its data/*/get_user_embedding.ipynb), over the user's training items
USER_PROMPT = "The user has visited following {category}s: {titles}."
USER_PROMPT_CAP = 2000  # characters of titles kept, the most recent items first to stay


def user_embedding_paths(config: Mapping) -> store.EmbeddingPaths:
    """Where ``config``'s dataset keeps its cached user embeddings: beside the item cache, under
    ``llm_user_emb_suffix``."""
    items = embedding_paths(config)
    return store.EmbeddingPaths(items.directory, items.dataset, _get(config, "llm_user_emb_suffix"))


def user_prompt(titles, category: str) -> str:
    """:data:`USER_PROMPT` over ``titles`` (oldest first); the oldest are left out when they
    would pass :data:`USER_PROMPT_CAP` characters, so the most recent items always count."""
    kept, size = [], 0
    for title in reversed(list(titles)):
        size += len(title) + 2
        if kept and size > USER_PROMPT_CAP:
            break
        kept.append(title)
    return USER_PROMPT.format(category=category, titles="; ".join(reversed(kept)))


def ensure_user_embeddings(dataset, config: Mapping, user_items: Dict[int, list],
                           logger: Optional[logging.Logger] = None) -> np.ndarray:
    """Embeddings of each user's prompt over their training items (``user_items``: internal user
    id -> internal item ids, oldest first) with the configured encoder, cached like the items'
    (:func:`user_embedding_paths`; only users whose prompt changed are embedded again). Row ``u``
    is internal user ``u``; users without items (and the padding row 0) are zeros."""
    logger = logger or logging.getLogger(__name__)
    if _get(config, "llm_emb_provider") == PRECOMPUTED:
        raise store.EmbeddingFileError(
            "user embeddings are made with the configured encoder, and llm_emb_provider is "
            f"'{PRECOMPUTED}' (no encoder); choose one, or user embeddings that need none")
    from recbole_faerec.embeddings.prompts import read_item_texts
    from recbole_faerec.embeddings.runner import embed_texts

    settings = PromptSettings.from_config(config)
    name_field = settings.fields.get("name")
    item_path = item_file(config)
    tokens, values, text_fields = read_item_texts(item_path, config["ITEM_ID_FIELD"])
    if not name_field or name_field not in text_fields:
        raise store.EmbeddingFileError(
            f"{item_path}: user prompts list the items' names, but the name field "
            f"'{name_field}' (llm_prompt_fields.name) is not in the file ({', '.join(text_fields)})")
    title_of = {t: (v.get(name_field) or "").strip() or "unknown" for t, v in zip(tokens, values)}
    item_tokens = dataset.field2id_token[dataset.iid_field]
    user_tokens = dataset.field2id_token[dataset.uid_field]
    users = sorted(u for u, items in user_items.items() if len(items))
    prompts = [user_prompt([title_of.get(str(item_tokens[i]), "unknown") for i in user_items[u]],
                           settings.category) for u in users]
    paths = user_embedding_paths(config)
    summary = embed_texts([str(user_tokens[u]) for u in users], prompts, paths,
                          provider_from_config(config),
                          {"template": USER_PROMPT, "cap": USER_PROMPT_CAP,
                           "category": settings.category, "name_field": name_field},
                          {"item_file": os.path.abspath(item_path)},
                          progress=bool(_get(config, "show_progress")), kind="users")
    matrix = np.zeros((len(user_tokens), summary.dimension), dtype=np.float32)
    matrix[users] = summary.emb
    logger.info(f"User LLM embeddings: {paths.atomic} ({len(users)} users, {summary.embedded} "
                f"embedded in this run, {summary.reused} reused)")
    return matrix
