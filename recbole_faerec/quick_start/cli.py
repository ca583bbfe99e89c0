"""Command line of ``run_recbole_faerec.py`` (RecBole's ``run_recbole.py`` arguments)."""

from __future__ import annotations

import argparse
import re
import sys
from typing import List, Optional

from recbole_faerec.config.configurator import ConfigFileError, DatasetNameError
from recbole_faerec.data.atomic import AtomicFileError
from recbole_faerec.embeddings.providers import EmbeddingError
from recbole_faerec.evaluator import EvaluationConfigError
from recbole_faerec.model.llm_item import MethodBackboneError
from recbole_faerec.quick_start.quick_start import run
from recbole_faerec.settings import SettingError
from recbole_faerec.trainer.resume import ResumeError
from recbole_faerec.utils.utils import ModelNotFoundError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train and evaluate a RecBole or recbole_faerec model. Any RecBole parameter "
        "can be given as --key=value or --key value (e.g. --epochs=10 --MAX_ITEM_LIST_LENGTH 20).",
        # a RecBole parameter that begins like a runner option (--seed, --seeds) stays RecBole's
        allow_abbrev=False,
    )
    parser.add_argument("--model", "-m", default=None,
                        help="model name (default SASRec); several, comma-separated, run the "
                        "comparison (recbole_faerec.quick_start.compare), where "
                        "Model[key=value;key=value] is a variant of Model with its own settings "
                        "(e.g. an ablation: FAERec_SASRec[item_align=False])")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (default ml-100k)")
    parser.add_argument("--config_files", default=None,
                        help="space-separated YAML config files, applied in order; a path that "
                        "is not a file here is looked up in the plugin's props/ folder, e.g. "
                        "presets/paper.yaml or presets/reference.yaml")
    parser.add_argument("--nproc", type=int, default=1, help="DDP worker processes (default 1)")
    parser.add_argument("--world_size", type=int, default=-1, help="total processes over all nodes")
    parser.add_argument("--ip", default="localhost", help="address of the rank-0 node")
    parser.add_argument("--port", default="5678", help="port of the rank-0 node")
    parser.add_argument("--group_offset", type=int, default=0, help="rank offset of this node")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="PATH",
                        help="continue an interrupted run from its last-epoch checkpoint "
                        "<checkpoint_dir>/<model>-<dataset>-last.pth, or from PATH "
                        "(--resume=PATH); a run that is done is only evaluated. A comparison "
                        "(--out_dir, --seeds, several models) keeps the runs its --out_dir holds "
                        "and continues the interrupted one")
    parser.add_argument("--out_dir", default=None,
                        help="comparison: where results.md/.csv/.json and the plots go "
                        "(default saved/comparison-<dataset>); with one model, it runs as a "
                        "comparison of one")
    parser.add_argument("--tsne_items", type=int, default=400,
                        help="comparison: items sampled for the t-SNE plot (default 400)")
    parser.add_argument("--seeds", default=None,
                        help="comparison: comma-separated seeds, e.g. 2020,2021,2022: every model "
                        "runs once per seed; the table shows mean ± std over them (default: once, "
                        "with the configured seed); with one model, a comparison of one")
    parser.add_argument("--pairs", default=None, metavar="BASE:MODEL,...",
                        help="comparison or merge: paired tests to add to the automatic ones "
                        "(each model against its backbone, each variant against its model), "
                        "e.g. LLMInit_SASRec:FAERec_SASRec for a method against the strongest "
                        "other method")
    parser.add_argument("--merge", default=None, metavar="DIR,DIR,...",
                        help="instead of running: merge the result folders of earlier comparisons "
                        "(same dataset and settings; e.g. one seed each) into one table in "
                        "--out_dir; with --model, only those rows, in that order; with --seeds, "
                        "only those seeds' runs")
    return parser


class CommandLineError(ValueError):
    """A command-line parameter RecBole's Config could not read."""


class SeedsError(ValueError):
    """A ``--seeds`` value the comparison cannot use."""


def _seeds(text: Optional[str]) -> Optional[List[int]]:
    """``--seeds=2020,2021`` as ints (``None`` without it); a ``--seed`` beside it, a value that is
    not an integer, or a seed given twice is a :class:`SeedsError`."""
    if text is None:
        return None
    if any(arg.startswith("--seed=") for arg in sys.argv[1:]):
        raise SeedsError("give either --seeds (the comparison's seeds) or --seed, not both")
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise SeedsError(f"--seeds={text}: give comma-separated integers, e.g. "
                         "--seeds=2020,2021,2022") from None
    if not seeds:
        raise SeedsError("--seeds is empty: give comma-separated integers, e.g. --seeds=2020,2021")
    if len(set(seeds)) != len(seeds):
        raise SeedsError(f"--seeds={text}: a seed is listed twice")
    return seeds


# a negative number is a value, not an option: -1, -0.5, -.5, -1e-3, -inf
_NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|-inf", re.IGNORECASE)


def recbole_args(extra: List[str]) -> List[str]:
    """The arguments the runner's own parser left (RecBole parameters), in the one form RecBole's
    Config reads from ``sys.argv``: ``--key value`` becomes ``--key=value``.

    A value is the next argument unless it starts with ``-`` and is not a number (``--epochs 1``,
    ``--weight_decay -1e-4``); ``--key`` without a value is a :class:`CommandLineError`.
    Other arguments pass unchanged (RecBole warns that it does not use them).
    """
    out: List[str] = []
    i = 0
    while i < len(extra):
        arg = extra[i]
        if arg.startswith("--") and len(arg) > 2 and "=" not in arg:
            value = extra[i + 1] if i + 1 < len(extra) else None
            if value is None or (value.startswith("-") and not _NEGATIVE_NUMBER.fullmatch(value)):
                raise CommandLineError(
                    f"{arg} has no value: write {arg}=VALUE or {arg} VALUE (a value that starts "
                    f"with '-' and is not a number needs {arg}=VALUE)")
            out.append(f"{arg}={value}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; return the exit status (2 for bad input, with a one-line reason).

    The runner's own options (``--model``, ``--dataset``, ...) are taken here, in either form;
    RecBole's Config, which reads ``sys.argv`` itself, sees only the other parameters, as
    ``--key=value``, while the run lasts.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = build_parser().parse_known_args(argv)
    original_argv = sys.argv
    try:
        sys.argv = original_argv[:1] + recbole_args(extra)
        return _run(args)
    except CommandLineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        sys.argv = original_argv


def _run(args: argparse.Namespace) -> int:
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    from recbole_faerec.quick_start.compare import ModelSpecError, split_models

    if args.merge is not None:
        return _merge(args)
    models = split_models(args.model or "SASRec")
    try:
        # one model with --out_dir or --seeds is a comparison of one: its folder (tables,
        # per-user outcomes for later paired tests and merges) is written, not silently skipped
        if (len(models) > 1 or any("[" in m for m in models) or args.out_dir is not None
                or args.seeds is not None or args.pairs is not None):
            if args.nproc > 1 or args.world_size > 0:
                print("error: a comparison (several models, --out_dir or --seeds) runs in one "
                      "process; drop --nproc/--world_size", file=sys.stderr)
                return 2
            if args.resume not in (None, True):
                print("error: a comparison (several models, --out_dir or --seeds) resumes from its "
                      "--out_dir and each run's last-epoch checkpoint: give --resume without a "
                      "path", file=sys.stderr)
                return 2
            twice = sorted({m for m in models if models.count(m) > 1})
            if twice:
                print(f"error: --model lists {', '.join(twice)} twice; for repeated runs of a "
                      "model give --seeds", file=sys.stderr)
                return 2
            seeds = _seeds(args.seeds)
            from recbole_faerec.quick_start.compare import run_comparison

            run_comparison(models, args.dataset, config_file_list=config_file_list,
                           out_dir=args.out_dir, tsne_items=args.tsne_items, seeds=seeds,
                           pairs=args.pairs, resume=bool(args.resume))
            return 0
        run(model=models[0], dataset=args.dataset, config_file_list=config_file_list,
            nproc=args.nproc, world_size=args.world_size, ip=args.ip, port=args.port,
            group_offset=args.group_offset, resume=args.resume)
    except (ModelNotFoundError, AtomicFileError, EmbeddingError, EvaluationConfigError,
            ResumeError, DatasetNameError, ConfigFileError, SeedsError, ModelSpecError,
            SettingError, MethodBackboneError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _merge(args: argparse.Namespace) -> int:
    """``--merge``: earlier comparisons' folders into one table (compare.merge_comparisons)."""
    import os

    from recbole_faerec.quick_start.compare import merge_comparisons, split_models

    dirs = [d.strip() for d in args.merge.split(",") if d.strip()]
    if not dirs or not args.out_dir:
        print("error: --merge needs the folders to merge (--merge=DIR,DIR) and --out_dir",
              file=sys.stderr)
        return 2
    if args.resume:
        print("error: --merge trains nothing, so --resume cannot take effect; to finish a part, "
              "run its own command with --resume, then merge", file=sys.stderr)
        return 2
    missing = [d for d in dirs if not os.path.isfile(os.path.join(d, "results.json"))]
    if missing:
        print(f"error: --merge: no results.json in {', '.join(missing)}", file=sys.stderr)
        return 2
    models = split_models(args.model) if args.model else None
    try:
        seeds = _seeds(args.seeds)
        merge_comparisons(dirs, args.out_dir, models=models, pairs=args.pairs, seeds=seeds)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if sys.argv[1:]:  # RecBole parameters: a merge trains nothing, they cannot take effect
        print(f"warning: --merge only reads the parts' results; not used: {' '.join(sys.argv[1:])}",
              file=sys.stderr)
    print(f"merged {len(dirs)} comparisons into {args.out_dir}")
    return 0
