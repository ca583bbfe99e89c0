"""Time per training epoch and peak memory of a model through ``run_recbole_faerec.py``.

Runs the entry point in a fresh process per setting (so peak RSS is that run's own), with all
compat fixes and, with ``--compare_compat``, again with the fixes that can be left out while the
run still finishes (``anomaly_mode``: the others turn a crash into a run, so there is nothing to
time without them). Prints a Markdown table.

    python benchmarks/bench_epoch.py --model SASRec --dataset ml-100k --epochs 2 --compare_compat
    python benchmarks/bench_epoch.py --model SASRec --dataset amazon-beauty --data_path dataset/ \
        --epochs 2 --compare_compat --MAX_ITEM_LIST_LENGTH=20
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EPOCH_RE = re.compile(r"epoch (\d+) training \[time: ([\d.]+)s")
EVAL_RE = re.compile(r"epoch (\d+) evaluating \[time: ([\d.]+)s")
SKIPPABLE = "anomaly_mode"


def run_once(model, dataset, data_path, epochs, overrides, skip=""):
    """One run in a child process; returns (train s/epoch list, eval s list, peak RSS MB, wall s)."""
    args = [sys.executable, str(REPO / "run_recbole_faerec.py"), f"--model={model}",
            f"--dataset={dataset}", f"--epochs={epochs}", "--show_progress=False", *overrides]
    if data_path:
        args.append(f"--data_path={os.path.abspath(data_path)}")
    env = {**os.environ, "RECBOLE_FAEREC_COMPAT_SKIP": skip}
    start = time.time()
    with tempfile.TemporaryDirectory() as cwd:
        # Measure the child alone: a grandchild-free process whose ru_maxrss we read via wait4.
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"run failed ({' '.join(args)}):\n{output[-3000:]}")
    train = [float(t) for _, t in EPOCH_RE.findall(output)]
    evals = [float(t) for _, t in EVAL_RE.findall(output)]
    return train, evals, usage.ru_maxrss / 1024, wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="SASRec")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--compare_compat", action="store_true",
                        help=f"also run with {SKIPPABLE} switched off")
    args, overrides = parser.parse_known_args(argv)

    settings = [("all fixes", "")]
    if args.compare_compat:
        settings.append((f"without {SKIPPABLE}", SKIPPABLE))
    print(f"{args.model} on {args.dataset}, {args.epochs} epochs, overrides: "
          f"{' '.join(overrides) or 'none'}; {os.cpu_count()} CPUs, torch threads default")
    print("| setting | train s/epoch (mean) | per epoch | eval s | peak RSS MB | wall s |")
    print("|---|---:|---|---:|---:|---:|")
    for label, skip in settings:
        train, evals, rss, wall = run_once(args.model, args.dataset, args.data_path, args.epochs,
                                           overrides, skip)
        print(f"| {label} | {statistics.mean(train):.1f} | {', '.join(f'{t:.1f}' for t in train)} "
              f"| {statistics.mean(evals):.1f} | {rss:.0f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
