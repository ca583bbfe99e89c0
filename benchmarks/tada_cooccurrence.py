"""Time and memory of TADA's co-occurrence model (SLIS + top-k lists + candidate sets) on a dataset's
real training sequences: what the first TADA_<Backbone> run on it computes before it caches.

    python benchmarks/tada_cooccurrence.py --dataset amazon-beauty --data_path dataset/
    python benchmarks/tada_cooccurrence.py --dataset beauty-large-ids --data_path dataset/ --tada_slis_max_items=0

Prints the training sequences, the items seen in training, the items SLIS keeps (at most
``tada_slis_max_items``, read from ``props/model/TADA.yaml`` unless given; 0 keeps them all) and the
size of its dense m x m matrices, the seconds, and the process's peak resident memory (ru_maxrss)
before and after.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--th", type=float, default=0.3)
    parser.add_argument("--top_k", type=int, default=10)
    parser.add_argument("--tada_slis_max_items", type=int, default=None,
                        help="items SLIS keeps (default: TADA.yaml's); 0 keeps every item seen")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]
    import numpy as np

    from recbole_faerec.data.cooccurrence import candidate_sets, training_sequences
    from recbole_faerec.quick_start import build_config, load_dataset

    settings = {"MAX_ITEM_LIST_LENGTH": 50, "state": "WARNING"}
    if args.data_path:
        settings["data_path"] = args.data_path
    if args.tada_slis_max_items is not None:
        settings["tada_slis_max_items"] = args.tada_slis_max_items or None
    config = build_config("TADA_SASRec", args.dataset, config_dict=settings)
    max_items = config["tada_slis_max_items"]
    _, train, _, _ = load_dataset(config)
    sequences = training_sequences(train._dataset, "item_id_list", "item_length", "item_id", "user_id")
    n_items = train._dataset.num("item_id")
    seen = len(np.unique(np.concatenate([s[-50:] for s in sequences])))
    before = peak_gb()
    start = time.perf_counter()
    sets = candidate_sets(sequences, n_items, 0.2, args.th, args.top_k, max_items=max_items)
    seconds = time.perf_counter() - start
    sizes = [len(v) for v in sets.head.values()] + [len(v) for v in sets.tail.values()]
    m = seen if not max_items else min(seen, max_items)
    print(f"{args.dataset}: {len(sequences)} training sequences, {n_items - 1} item ids, {seen} seen "
          f"in training, {m} in SLIS (tada_slis_max_items {max_items}; dense {m} x {m} float32: "
          f"{m * m * 4 / 2 ** 30:.2f} GiB a matrix)")
    print(f"candidate sets: {int((sets.label == 1).sum())} head, {int((sets.label == 0).sum())} tail "
          f"items; {np.mean(sizes):.1f} candidates on average; {seconds:.1f} s")
    print(f"peak resident memory: {before:.2f} GiB before, {peak_gb():.2f} GiB after")


if __name__ == "__main__":
    main()
