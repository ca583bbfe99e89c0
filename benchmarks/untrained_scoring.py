"""Validation metrics of an untrained, PCA-initialised FAERec model under each scoring and history
protocol: what the item table alone gives before any training (reference notes §6: the authors'
code scores validation NDCG@20 0.037 on amazon-beauty at this point).

The model is built once (PCA of the cached LLM table into the ID table, the projector and gate at
their initialisation) and evaluated on the validation split by RecBole's trainer for every
``inference_fusion`` and every history protocol (ranked, RecBole's; scored 0, the authors'; out of
the ranking). Prints a Markdown table.

    python benchmarks/untrained_scoring.py --dataset amazon-beauty --data_path dataset/ \
        --config_files presets/reference.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HISTORY = [("ranked", False, None), ("scored 0", True, 0.0), ("excluded", True, float("-inf"))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="FAERec_SASRec")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--config_files", default=None, help="space-separated YAML files")
    parser.add_argument("--fusions", default="mean,layernorm,gate,id")
    parser.add_argument("--k", type=int, default=20)
    args, overrides = parser.parse_known_args(argv)

    import recbole_faerec  # noqa: F401  (compat fixes, metrics, history exclusion)
    from recbole.utils import init_seed

    from recbole_faerec.quick_start import build_config, load_dataset
    from recbole_faerec.quick_start.cli import recbole_args
    from recbole_faerec.utils import get_model, get_trainer

    sys.argv = sys.argv[:1] + recbole_args(overrides)
    config_dict = {"state": "WARNING", "show_progress": False}
    if args.data_path:
        config_dict["data_path"] = os.path.abspath(args.data_path)
    files = args.config_files.split() if args.config_files else None
    os.chdir(tempfile.mkdtemp())  # RecBole's log/ and saved/
    config = build_config(args.model, args.dataset, files, config_dict)
    init_seed(config["seed"], config["reproducibility"])
    _, train, valid, _ = load_dataset(config)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train._dataset).to(config["device"]).eval()
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train)  # the popularity the tail metrics need
    k = args.k
    print(f"{args.model} on {args.dataset}, untrained (PCA-initialised), validation split; "
          f"settings: {' '.join(files or [])} {' '.join(overrides)}")
    print(f"| scoring | history | Hit@{k} | NDCG@{k} | TailNDCG@{k} | HeadNDCG@{k} |")
    print("|---|---|---:|---:|---:|---:|")
    for fusion in args.fusions.split(","):
        model.item_embedding.eval_fusion = fusion
        model.item_embedding.clear_cache()
        for label, exclude, score in HISTORY:
            config["eval_exclude_history"] = exclude
            if score is not None:
                config["eval_history_score"] = score
            result = trainer.evaluate(valid, load_best_model=False, show_progress=False)
            print(f"| {fusion} | {label} | {result[f'hit@{k}']:.4f} | {result[f'ndcg@{k}']:.4f} | "
                  f"{result[f'tailndcg@{k}']:.4f} | {result[f'headndcg@{k}']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
