"""Item-embedding throughput per provider, reuse on rerun, and load times. Prints Markdown.

    python benchmarks/bench_embeddings.py --data_path dataset/ [--local_limit 2000]

Needs amazon-beauty, amazon-scientific and beauty-large-ids prepared under ``--data_path``
(``dataset_scripts/prepare_dataset.py``). Measures:

1. items/s of each provider on each dataset's paper prompts: ``local`` (all-MiniLM-L6-v2 on the CPU,
   on the first ``--local_limit`` prompts), ``tfidf`` (all prompts), ``openai`` (the real client
   against the test suite's local OpenAI-compatible server: client and HTTP overhead only);
2. a full ``local`` run on amazon-beauty, then a rerun (must re-encode zero items);
3. the time to load 12k x 384 (amazon-beauty, the local run's vectors) and 57k x 1536
   (beauty-large-ids, random vectors made for the purpose): parsing the atomic file (cold, no
   sidecar) and through the sidecar (warm), each aligned to a RecBole dataset.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402

import recbole_faerec  # noqa: E402,F401
from recbole_faerec.embeddings import store  # noqa: E402
from recbole_faerec.embeddings.cli import dataset_settings  # noqa: E402
from recbole_faerec.embeddings.loader import align_to_dataset  # noqa: E402
from recbole_faerec.embeddings.prompts import PromptSettings, build_prompts  # noqa: E402
from recbole_faerec.embeddings.providers import LocalProvider, OpenAIProvider, TfidfProvider  # noqa: E402
from recbole_faerec.embeddings.runner import embed_items  # noqa: E402


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def recbole_dataset(name, data_path):
    from recbole.data import create_dataset

    from recbole_faerec.quick_start import build_config

    sys.argv = sys.argv[:1]
    config = build_config("SASRec", name, config_dict={"data_path": data_path, "state": "WARNING",
                                                       "load_col": {"inter": ["user_id", "item_id"]}})
    return create_dataset(config)


def throughput(data_path, limit):
    from openai_server import FakeOpenAI

    print("## Provider throughput (paper prompts)\n")
    print("| dataset | provider | items | seconds | items/s | mean prompt chars |")
    print("|---|---|---:|---:|---:|---:|")
    local = LocalProvider()
    for name in ["amazon-beauty", "amazon-scientific"]:
        settings = PromptSettings.from_config(dataset_settings(name, None, None, {}))
        _, prompts, _ = build_prompts(os.path.join(data_path, name, f"{name}.item"), settings)
        chars = np.mean([len(p) for p in prompts])
        sample = prompts[:limit]
        local.embed(sample[:8])  # load the model outside the timing
        _, t = timed(lambda: [local.embed(sample[i:i + 64]) for i in range(0, len(sample), 64)])
        print(f"| {name} | local (all-MiniLM-L6-v2, CPU) | {len(sample)} | {t:.1f} | {len(sample) / t:.1f} | {chars:.0f} |")
        _, t = timed(TfidfProvider(256).embed, prompts)
        print(f"| {name} | tfidf (256-d) | {len(prompts)} | {t:.1f} | {len(prompts) / t:.0f} | {chars:.0f} |")
        with FakeOpenAI(dim=1536) as server:
            os.environ["BENCH_KEY"] = "bench"
            provider = OpenAIProvider(base_url=server.base_url, api_key_env="BENCH_KEY")
            batches = provider.batches(prompts)
            _, t = timed(lambda: [provider.embed([prompts[i] for i in b]) for b in batches])
        print(f"| {name} | openai client, local server (1536-d) | {len(prompts)} | {t:.1f} | {len(prompts) / t:.0f} | {chars:.0f} |")
    print()


def full_local_run(data_path, out_dir):
    print("## Full local run on amazon-beauty, then a rerun\n")
    name = "amazon-beauty"
    settings = PromptSettings.from_config(dataset_settings(name, None, None, {}))
    paths = store.EmbeddingPaths(out_dir, name)
    item = os.path.join(data_path, name, f"{name}.item")
    first = embed_items(item, paths, LocalProvider(), settings, progress=False)
    print(f"- first run: {first.line()}")
    again = embed_items(item, paths, LocalProvider(), settings, progress=False)
    print(f"- rerun: {again.line()}\n")
    return paths


def load_times(data_path, beauty_paths, tmp):
    print("## Load times (aligned to RecBole's item ids)\n")
    print("| embeddings | atomic file MB | write s | cold: parse atomic file s | warm: sidecar s |")
    print("|---|---:|---:|---:|---:|")
    cases = [("amazon-beauty", beauty_paths, None)]
    large = recbole_dataset("beauty-large-ids", data_path)
    tokens = large.field2id_token["item_id"][1:].tolist()
    emb = np.random.default_rng(0).standard_normal((len(tokens), 1536)).astype(np.float32)
    large_paths = store.EmbeddingPaths(tmp, "beauty-large-ids")
    _, write_s = timed(store.save_embeddings, large_paths, tokens, emb, {"encoder": {"provider": "random"}})
    cases.append(("beauty-large-ids", large_paths, (large, write_s)))
    for name, paths, extra in cases:
        ds, write_s = extra if extra else (recbole_dataset(name, data_path), float("nan"))
        id2token = ds.field2id_token["item_id"]
        os.remove(paths.sidecar)  # cold: no sidecar, the atomic file is parsed (and a sidecar made)
        (tokens_, emb_, _), cold = timed(store.load_embeddings, paths)
        matrix, align_cold = timed(align_to_dataset, tokens_, emb_, id2token, paths.atomic)
        warm_times = []
        for _ in range(3):
            start = time.perf_counter()
            t_, e_, _ = store.load_embeddings(paths)
            align_to_dataset(t_, e_, id2token, paths.atomic)
            warm_times.append(time.perf_counter() - start)
        mb = os.path.getsize(paths.atomic) / 2**20
        print(f"| {name} {matrix.shape[0] - 1} x {matrix.shape[1]} | {mb:.0f} | {write_s:.1f} | "
              f"{cold + align_cold:.1f} | {min(warm_times):.2f} (best of 3) |")
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--local_limit", type=int, default=2000)
    args = parser.parse_args(argv)
    data_path = os.path.abspath(args.data_path)
    print(f"{os.cpu_count()} CPUs; torch threads default\n")
    tmp = tempfile.mkdtemp(prefix="bench-emb-")
    try:
        throughput(data_path, args.local_limit)
        beauty_paths = full_local_run(data_path, tmp)
        load_times(data_path, beauty_paths, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
