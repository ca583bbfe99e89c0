"""Contrastively fine-tune the local text encoder on attribute-level views of a dataset's item
prompts (LLM-CFSR's fine-grained semantic embeddings, after LLMEmb's SCFT), then embed with it:

    python dataset_scripts/finetune_encoder.py --dataset amazon-scientific --data_path dataset/ \\
        --output_dir dataset/amazon-scientific/encoder-scft
    python dataset_scripts/embed_items.py --dataset amazon-scientific --data_path dataset/ \\
        --model dataset/amazon-scientific/encoder-scft --suffix itememb-scft

See recbole_faerec/embeddings/finetune.py for what it does and where it departs from LLMEmb.
"""

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_faerec.data.atomic import AtomicFileError  # noqa: E402
from recbole_faerec.embeddings.cli import dataset_settings  # noqa: E402
from recbole_faerec.embeddings.finetune import finetune_encoder, view_agreement  # noqa: E402
from recbole_faerec.embeddings.loader import item_file  # noqa: E402
from recbole_faerec.embeddings.prompts import PromptSettings  # noqa: E402
from recbole_faerec.embeddings.providers import EmbeddingError  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--data_path", default=None)
    p.add_argument("--config_files", default=None, help="space-separated YAML files (prompt fields)")
    p.add_argument("--output_dir", required=True, help="where the fine-tuned model folder goes")
    p.add_argument("--model", default=None, help="the sentence-transformers folder to start from "
                                                 "(default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--tau", type=float, default=0.05)
    p.add_argument("--drop_ratio", type=float, default=0.4, help="share of attributes a view drops")
    p.add_argument("--max_length", type=int, default=128, help="tokens per prompt in training")
    p.add_argument("--max_items", type=int, default=None, help="train on a random subset")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--check_items", type=int, default=500,
                   help="items whose view retrieval is measured before and after (0: skip)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        config = dataset_settings(args.dataset, args.config_files.split() if args.config_files
                                  else None, args.data_path, {})
        item_path = item_file(config)
        if not os.path.isfile(item_path):
            raise AtomicFileError(f"{item_path} does not exist (prepare the dataset first)")
        settings = PromptSettings.from_config(config)
        iid = config.get("ITEM_ID_FIELD") or "item_id"
        check = dict(item_path=item_path, settings=settings, drop_ratio=args.drop_ratio,
                     seed=args.seed + 1, max_items=args.check_items, iid_field=iid)
        before = view_agreement(args.model, **check) if args.check_items else None
        manifest = finetune_encoder(item_path, settings, args.output_dir, args.model, iid,
                                    args.epochs, args.batch_size, args.lr, args.tau,
                                    args.drop_ratio, args.max_length, args.max_items, args.seed)
        after = view_agreement(args.output_dir, **check) if args.check_items else None
    except (AtomicFileError, EmbeddingError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.dataset}: fine-tuned {manifest['base_model']} on {manifest['items']} items, "
          f"{args.epochs} epoch(s), loss {' -> '.join(f'{x:.3f}' for x in manifest['epoch_losses'])}, "
          f"{manifest['seconds']} s -> {args.output_dir}")
    if before is not None:
        print(f"view retrieval top-1 over {args.check_items} items: {before:.3f} before, {after:.3f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
