"""Command line of ``run_recbole_faerec.py`` (RecBole's ``run_recbole.py`` arguments)."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from recbole_faerec.data.atomic import AtomicFileError
from recbole_faerec.embeddings.providers import EmbeddingError
from recbole_faerec.quick_start.quick_start import run
from recbole_faerec.utils.utils import ModelNotFoundError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train and evaluate a RecBole or recbole_faerec model. Any RecBole parameter "
        "can be given as --key=value (e.g. --epochs=10 --MAX_ITEM_LIST_LENGTH=20).",
    )
    parser.add_argument("--model", "-m", default="SASRec", help="model name (default SASRec)")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (default ml-100k)")
    parser.add_argument("--config_files", default=None,
                        help="space-separated YAML config files, applied in order")
    parser.add_argument("--nproc", type=int, default=1, help="DDP worker processes (default 1)")
    parser.add_argument("--world_size", type=int, default=-1, help="total processes over all nodes")
    parser.add_argument("--ip", default="localhost", help="address of the rank-0 node")
    parser.add_argument("--port", default="5678", help="port of the rank-0 node")
    parser.add_argument("--group_offset", type=int, default=0, help="rank offset of this node")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; return the exit status (2 for bad input, with a one-line reason)."""
    args, _ = build_parser().parse_known_args(argv)
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    try:
        run(model=args.model, dataset=args.dataset, config_file_list=config_file_list,
            nproc=args.nproc, world_size=args.world_size, ip=args.ip, port=args.port,
            group_offset=args.group_offset)
    except (ModelNotFoundError, AtomicFileError, EmbeddingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
