"""Each backbone against its FAERec version, pairs run in parallel, merged into one comparison.

    python benchmarks/compare_pairs.py --dataset amazon-beauty --data_path dataset/ \
        --backbones SASRec,GRU4Rec,NARM,LightSANs --parallel 4 --out docs/results/amazon-beauty \
        --epochs=50 --MAX_ITEM_LIST_LENGTH=20 --hidden_size=64 --embedding_size=64

Each pair is ``run_recbole_faerec.py --model=<B>,FAERec_<B>`` (the comparison runner) in its own
process and folder ``<out>/parts/<B>``; the parts are then merged
(:func:`recbole_faerec.quick_start.compare.merge_comparisons`) into ``<out>/results.md``,
``results.csv``, ``results.json``, ``groups.png`` and ``tsne.png``. Running pairs side by side suits a
machine with many cores or a GPU; the per-epoch times of parallel runs share that machine.
Anything after the known options is passed to every run as ``--key=value``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--backbones", default=None, help="comma-separated RecBole/plugin backbones")
    parser.add_argument("--models", default=None,
                        help="instead of backbone pairs: comma-separated groups of models joined by '+', "
                        "e.g. SASRec+FAERec_SASRec,FMLPRec+FAERec_FMLPRec")
    parser.add_argument("--parallel", type=int, default=1, help="pairs run at once (default 1)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--tsne_items", type=int, default=400)
    args, extra = parser.parse_known_args(argv)
    if not (args.backbones or args.models):
        parser.error("give --backbones or --models")
    groups = ([g.split("+") for g in args.models.split(",")] if args.models else
              [[b, f"FAERec_{b}"] for b in args.backbones.split(",")])
    parts = []
    pending = list(groups)
    running = []
    start = time.time()
    while pending or running:
        while pending and len(running) < args.parallel:
            group = pending.pop(0)
            part = os.path.join(args.out, "parts", group[0])
            os.makedirs(part, exist_ok=True)
            cmd = [sys.executable, str(REPO / "run_recbole_faerec.py"), f"--model={','.join(group)}",
                   f"--dataset={args.dataset}", f"--out_dir={os.path.abspath(part)}",
                   f"--tsne_items={args.tsne_items}", "--show_progress=False", *extra]
            if args.data_path:
                cmd.append(f"--data_path={os.path.abspath(args.data_path)}")
            log = open(os.path.join(part, "run.log"), "w")
            proc = subprocess.Popen(cmd, cwd=part, stdout=log, stderr=subprocess.STDOUT)
            running.append((group, part, proc, log))
            parts.append(part)
            print(f"[{time.time() - start:6.0f}s] started {'+'.join(group)}", flush=True)
        time.sleep(2)
        for item in list(running):
            group, part, proc, log = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode}, see {part}/run.log)"
                print(f"[{time.time() - start:6.0f}s] {'+'.join(group)} {status}", flush=True)
    done = [p for p in parts if os.path.exists(os.path.join(p, "results.json"))]
    if not done:
        raise SystemExit("no comparison finished")
    from recbole_faerec.quick_start.compare import merge_comparisons

    merge_comparisons(done, args.out)
    print(open(os.path.join(args.out, "results.md")).read())


if __name__ == "__main__":
    main()
