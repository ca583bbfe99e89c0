"""Several models under one shared RecBole protocol on one dataset: test metrics, time, memory.

Each model runs ``run_recbole_faerec.py`` in its own process with the same settings (so the peak
RSS is that model's own). Prints a Markdown table and writes it, with the raw numbers as JSON, to
``--out`` (default ``benchmarks/results/models-<dataset>.{md,json}``).

    python benchmarks/bench_models.py --dataset amazon-beauty --data_path dataset/ \
        --models SASRec,FAERec_SASRec,GRU4Rec,FAERec_GRU4Rec --epochs 20 \
        --MAX_ITEM_LIST_LENGTH=20 --hidden_size=64 --embedding_size=64 --inner_size=256

Anything after the known options is passed to every run as ``--key=value``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
EPOCH_RE = re.compile(r"epoch (\d+) training \[time: ([\d.]+)s")
VALID_RE = re.compile(r"epoch (\d+) evaluating \[time: [\d.]+s, valid_score: ([\d.]+)\]")
RESULT_RE = re.compile(r"(best valid |test result)\s*: (\{.*\})")


def run_model(model, dataset, data_path, args):
    cmd = [sys.executable, str(REPO / "run_recbole_faerec.py"), f"--model={model}",
           f"--dataset={dataset}", "--show_progress=False", *args]
    if data_path:
        cmd.append(f"--data_path={os.path.abspath(data_path)}")
    start = time.time()
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{model} failed:\n{output[-4000:]}")
    results = {label.strip(): json.loads(text.replace("'", '"')) for label, text in RESULT_RE.findall(output)}
    train = [float(t) for _, t in EPOCH_RE.findall(output)]
    valid = [float(v) for _, v in VALID_RE.findall(output)]
    valid_epochs = [int(e) for e, _ in VALID_RE.findall(output)]
    from recbole_faerec.quick_start.quick_start import tested_epoch  # lazy: torch, RecBole
    return {
        "model": model,
        "test": results["test result"],
        "valid": results["best valid"],
        "epochs": len(train),
        "best_epoch": tested_epoch(valid, valid_epochs),  # the checkpoint RecBole tested (the last tie)
        "train_s_per_epoch": statistics.mean(train) if train else None,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "wall_s": time.time() - start,
        "valid_curve": valid,
    }


def table(rows, metrics):
    head = "| model | " + " | ".join(metrics) + " | epochs (best) | train s/epoch | peak RSS MB |"
    lines = [head, "|---" * (len(metrics) + 4) + "|"]
    for r in rows:
        vals = " | ".join(f"{r['test'][m]:.4f}" for m in metrics)
        lines.append(f"| {r['model']} | {vals} | {r['epochs']} ({r['best_epoch']}) | "
                     f"{r['train_s_per_epoch']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--models", required=True, help="comma-separated model names")
    parser.add_argument("--out", default=None, help="output path without suffix")
    args, extra = parser.parse_known_args(argv)
    out = args.out or str(REPO / "benchmarks" / "results" / f"models-{args.dataset}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    rows = []
    header = (f"{args.dataset}; shared settings: {' '.join(extra) or 'defaults'}; "
              f"{os.cpu_count()} CPUs")
    print(header, flush=True)
    for model in args.models.split(","):
        rows.append(run_model(model, args.dataset, args.data_path, extra))
        r = rows[-1]
        print(f"{model}: test {r['test']}, {r['epochs']} epochs, {r['train_s_per_epoch']:.1f} s/epoch, "
              f"{r['peak_rss_mb']:.0f} MB", flush=True)
        metrics = list(rows[0]["test"])
        with open(out + ".md", "w") as f:
            f.write(header + "\n\n" + table(rows, metrics) + "\n")
        with open(out + ".json", "w") as f:
            json.dump({"dataset": args.dataset, "settings": extra, "runs": rows}, f, indent=1)
    print()
    print(table(rows, list(rows[0]["test"])))


if __name__ == "__main__":
    main()
