"""Training-epoch time of FAERec_<Backbone> over its backbone's, measured epoch by epoch in turns.

Both models are built in one process on the same RecBole training data, each with its own RecBole
trainer, and then train whole epochs in turns (``X``, ``FAERec_X``, ``X``, ...) through the
trainer's own ``_train_epoch`` (what RecBole times as "epoch N training [time: ...]"). Taking turns
matters on a shared machine: a slow spell then hits both models, not one, and the ratio of the
medians is stable where separate runs drift by 20-40 %.

    python benchmarks/epoch_ratio.py --dataset amazon-scientific --data_path dataset/ \
        --backbones GRU4Rec,SASRec --rounds 5

Prints, per backbone, the seconds of every epoch, their medians and the ratio of the medians
(the issue's target: at most 1.3), and the ratio of each model's fastest epoch (the epochs a
noisy neighbour slowed least). The alignment terms are both on (epochs start at
``--first_epoch`` 1: at epoch 0 the curriculum gives the feature term weight 0). Settings: the
benchmarks' shared ones (sequence length 20, hidden 64, FFN 256), overridable as ``--key=value``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402

from recbole_faerec.quick_start import build_config, load_dataset  # noqa: E402
from recbole_faerec.utils import get_trainer  # noqa: E402
from turns import SETTINGS, build_model, medians_and_ratios  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--backbones", default="SASRec,GRU4Rec")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--first_epoch", type=int, default=1)
    parser.add_argument("--block", type=int, default=2,
                        help="epochs per turn; the first of each turn is not timed (warm-up after "
                             "the other model: allocator and caches)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args, _ = parser.parse_known_args(argv)  # --key=value settings reach RecBole's Config itself
    settings = {**SETTINGS, "data_path": os.path.abspath(args.data_path), "device": args.device}
    backbones = args.backbones.split(",")
    cuda = args.device.startswith("cuda")

    config = build_config(f"FAERec_{backbones[0]}", args.dataset, config_dict=settings)
    _, train, _, _ = load_dataset(config)
    print(f"{args.dataset}: {len(train.dataset)} training rows, batch {config['train_batch_size']}; "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} threads, device {args.device}", flush=True)

    for backbone in backbones:
        trainers = {}
        for name in (backbone, f"FAERec_{backbone}"):
            config, model = build_model(name, args.dataset, train, settings)
            trainers[name] = get_trainer(config["MODEL_TYPE"], name)(config, model)
        times = {name: [] for name in trainers}
        for r in range(args.rounds):
            for name, trainer in trainers.items():
                for b in range(args.block):
                    if cuda:
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    trainer._train_epoch(train, args.first_epoch + r * args.block + b, show_progress=False)
                    if cuda:
                        torch.cuda.synchronize()
                    if b > 0 or args.block == 1:
                        times[name].append(time.perf_counter() - start)
        medians, ratios = medians_and_ratios(times)
        for name, t in times.items():
            print(f"  {name}: median {medians[name]:.2f} s/epoch ({', '.join(f'{x:.2f}' for x in t)})")
        paired = [f / b for b, f in zip(*times.values())]  # epochs timed in the same turn
        fastest = min(times[f"FAERec_{backbone}"]) / min(times[backbone])
        print(f"{backbone}: FAERec_{backbone} / {backbone} = {ratios[f'FAERec_{backbone}']:.2f}"
              f" (ratio of medians; of the fastest epochs {fastest:.2f}; per round "
              f"{', '.join(f'{x:.2f}' for x in paired)})", flush=True)


if __name__ == "__main__":
    main()
