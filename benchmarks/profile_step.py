"""Milliseconds per training step of backbones and their FAERec versions, and where the time goes.

    python benchmarks/profile_step.py --dataset amazon-beauty --data_path dataset/ --device cuda
    python benchmarks/profile_step.py --dataset amazon-scientific --data_path dataset/ \
        --models GRU4Rec,FAERec_GRU4Rec --device cpu

For each model: the mean time of a full training step (loss, backward, Adam) over ``--steps`` real
batches after 4 warm-up steps, and ``torch.profiler``'s count of kernel launches and host
synchronisations per step (CUDA) with its top operators by self CPU time. Settings: the benchmarks'
shared ones (sequence length 20, hidden 64, FFN 256), overridable as ``--key=value``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402

import recbole_faerec  # noqa: E402,F401
from recbole_faerec.quick_start import build_config, load_dataset  # noqa: E402
from turns import SETTINGS, build_model, medians_and_ratios  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--models", default="SASRec,FAERec_SASRec,GRU4Rec,FAERec_GRU4Rec")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1, help="timing rounds (median reported)")
    parser.add_argument("--no_profile", action="store_true")
    args, extra = parser.parse_known_args(argv)
    settings = {**SETTINGS, "data_path": os.path.abspath(args.data_path), "device": args.device}
    models = args.models.split(",")
    config = build_config(models[0], args.dataset, config_dict=settings)
    _, train, _, _ = load_dataset(config)
    batches = [b.to(args.device) for _, b in zip(range(args.steps + 4), train)]
    cuda = args.device.startswith("cuda")

    def make_step(name):
        _, model = build_model(name, args.dataset, train, settings)
        if hasattr(model, "set_epoch"):
            model.set_epoch(15)  # both alignment terms on (curriculum mid-period)
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)
        model.train()

        def step(batch):
            optimizer.zero_grad()
            out = model.calculate_loss(batch)
            losses = out if isinstance(out, tuple) else (out,)
            loss = sum(losses)
            [x.item() for x in losses]  # what RecBole's trainer does to log them
            loss.backward()
            optimizer.step()

        for batch in batches[:4]:
            step(batch)
        return step

    def timed(step):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in batches[4:]:
            step(batch)
        if cuda:
            torch.cuda.synchronize()
        return 1000 * (time.perf_counter() - start) / args.steps

    steps = {name: make_step(name) for name in models}
    # the models take turns, round after round, so that a noisy neighbour hits them alike
    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name in models:
            times[name].append(timed(steps[name]))
    medians, ratios = medians_and_ratios(times)
    for name in models:
        ratio = f", {ratios[name]:.2f}x {name[len('FAERec_'):]}" if name in ratios else ""
        spread = ", ".join(f"{t:.0f}" for t in times[name])
        print(f"{name}: {medians[name]:.1f} ms/step (median of {args.rounds} rounds: {spread}){ratio}",
              flush=True)
    if args.no_profile:
        return
    from torch.profiler import ProfilerActivity, profile

    for name, step in steps.items():

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for batch in batches[4:9]:
                step(batch)
            if cuda:
                torch.cuda.synchronize()
        table = prof.key_averages()
        if cuda:
            launches = sum(e.count for e in table if e.key in ("cudaLaunchKernel", "cudaLaunchKernelExC"))
            syncs = sum(e.count for e in table if "Synchronize" in e.key or e.key == "cudaMemcpyAsync")
            print(f"{name}: kernel launches per step {launches / 5:.0f}, "
                  f"synchronising calls per step {syncs / 5:.0f}")
        print(f"{name}, top operators over 5 steps:")
        print(table.table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
