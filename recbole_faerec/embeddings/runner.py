"""Embed every item of a dataset, resumably: :func:`embed_items`.

A rerun embeds only the items that are missing or whose prompt changed; a killed run keeps every
finished batch; a failed request stops the run with the items of that batch named, keeping all
work done so far.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from recbole_faerec.embeddings import store
from recbole_faerec.embeddings.prompts import PromptSettings, build_prompts, text_hash, write_prompts
from recbole_faerec.embeddings.providers import EmbeddingError, Provider

logger = logging.getLogger(__name__)


@dataclass
class EmbedSummary:
    total: int
    embedded: int = 0
    reused: int = 0
    failed: int = 0
    dimension: Optional[int] = None
    seconds: float = 0.0
    paths: Optional[store.EmbeddingPaths] = None
    empty_items: List[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.embedded / self.seconds if self.seconds and self.embedded else 0.0
        return (f"{self.total} items: {self.embedded} embedded, {self.reused} reused, "
                f"{self.failed} failed; dimension {self.dimension}; {self.seconds:.1f} s"
                + (f" ({rate:.1f} items/s)" if rate else ""))


def _signature(provider: Provider, settings: PromptSettings, corpus: Optional[str]) -> Dict:
    sig = {"encoder": provider.describe(), "prompt": settings.signature()}
    if corpus is not None:
        sig["corpus"] = corpus
    return sig


def _previous(paths: store.EmbeddingPaths, signature: Dict) -> Dict[str, tuple]:
    """Vectors of the last complete run, if made with the same encoder and prompt settings."""
    manifest = store.read_json(paths.manifest)
    if not manifest or not os.path.isfile(paths.atomic):
        return {}
    if {k: manifest.get(k) for k in signature} != signature:
        return {}
    try:
        tokens, emb, manifest = store.load_embeddings(paths)
    except store.EmbeddingFileError as err:
        logger.warning(f"ignoring the existing embeddings: {err}")
        return {}
    hashes = manifest.get("items", {})
    return {t: (hashes[t], emb[i]) for i, t in enumerate(tokens) if t in hashes}


def embed_items(
    item_path: str,
    paths: store.EmbeddingPaths,
    provider: Provider,
    settings: PromptSettings,
    iid_field: str = "item_id",
    progress: bool = True,
    dry_run: bool = False,
) -> EmbedSummary:
    """Embed the prompt of every item in ``item_path`` into ``paths`` (see :mod:`.store`).

    Raises :class:`EmbeddingError` when a batch fails; every other finished batch is kept in
    ``paths.partial`` and reused by the next run.
    """
    start = time.time()
    tokens, prompts, empty = build_prompts(item_path, settings, iid_field)
    summary = EmbedSummary(total=len(tokens), paths=paths, empty_items=empty)
    if empty:
        shown = ", ".join(empty[:10]) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
        logger.warning(f"{item_path}: {len(empty)} item(s) have no text in the prompt fields; they "
                       f"are embedded with 'unknown' attributes: {shown}")
    if dry_run:
        os.makedirs(paths.directory, exist_ok=True)
        write_prompts(paths.prompts, tokens, prompts)
        return summary

    hashes = [text_hash(p) for p in prompts]
    corpus = (text_hash("\n".join(f"{t}\t{h}" for t, h in zip(tokens, hashes)))
              if provider.corpus_dependent else None)
    signature = _signature(provider, settings, corpus)

    previous = _previous(paths, signature)
    known = dict(previous)
    known.update(store.open_partial(paths, signature))
    vectors: Dict[str, np.ndarray] = {}
    todo = []
    for i, (token, h) in enumerate(zip(tokens, hashes)):
        hit = known.get(token)
        if hit is not None and hit[0] == h:
            vectors[token] = hit[1]
        else:
            todo.append(i)
    summary.reused = len(tokens) - len(todo)
    dims = {v.shape[0] for v in vectors.values()}

    batches = [[todo[j] for j in batch] for batch in provider.batches([prompts[i] for i in todo])]
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="item", desc=f"embedding ({provider.name})")

    def run(batch: List[int]):
        emb = provider.embed([prompts[i] for i in batch])
        bad = [tokens[batch[k]] for k in np.flatnonzero(~np.isfinite(emb).all(axis=1))]
        if emb.ndim != 2 or emb.shape[0] != len(batch):
            raise EmbeddingError(f"the encoder returned shape {emb.shape} for {len(batch)} items")
        if bad:
            raise EmbeddingError(f"the encoder returned NaN/inf for item(s) {', '.join(bad[:10])}")
        return emb

    failure = None
    failed_batch: List[int] = []
    with ThreadPoolExecutor(max_workers=provider.concurrency) as pool:
        pending = {}
        queue = list(batches)
        while queue or pending:
            while queue and len(pending) < provider.concurrency and failure is None:
                batch = queue.pop(0)
                pending[pool.submit(run, batch)] = batch
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                batch = pending.pop(future)
                try:
                    emb = future.result()
                except Exception as err:  # noqa: BLE001 - reported with the batch's items
                    if failure is None:
                        failure, failed_batch = err, batch
                    continue
                dims.add(emb.shape[1])
                if len(dims) > 1:
                    failure = EmbeddingError(f"dimensions differ between batches: {sorted(dims)}")
                    failed_batch = batch
                    continue
                batch_tokens = [tokens[i] for i in batch]
                store.save_batch(paths, batch_tokens, [hashes[i] for i in batch], emb)
                for token, vec in zip(batch_tokens, emb):
                    vectors[token] = vec
                summary.embedded += len(batch)
                if bar is not None:
                    bar.update(len(batch))
            if failure is not None:
                queue.clear()
    if bar is not None:
        bar.close()
    summary.seconds = time.time() - start

    if failure is not None:
        summary.failed = len(tokens) - len(vectors)
        failed_tokens = [tokens[i] for i in failed_batch]
        shown = ", ".join(failed_tokens[:20]) + (
            f" and {len(failed_tokens) - 20} more" if len(failed_tokens) > 20 else "")
        raise EmbeddingError(
            f"embedding stopped: {failure}. Failed batch ({len(failed_tokens)} items): {shown}. "
            f"Kept {len(vectors)} of {len(tokens)} items ({summary.embedded} embedded in this run, "
            f"{summary.reused} reused) in {paths.partial}; rerun to embed only the rest."
        ) from None

    emb = np.stack([vectors[t] for t in tokens]).astype(np.float32)
    summary.dimension = int(emb.shape[1])
    if summary.embedded == 0 and len(previous) == len(tokens) and all(
            previous.get(t, ("",))[0] == h for t, h in zip(tokens, hashes)):
        store.close_partial(paths)  # nothing changed: the files on disk are already these
        summary.seconds = time.time() - start
        return summary
    manifest = {
        **signature,
        "items": dict(zip(tokens, hashes)),
        "n_items": len(tokens),
        "item_file": os.path.abspath(item_path),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    store.save_embeddings(paths, tokens, emb, manifest)
    store.close_partial(paths)
    summary.seconds = time.time() - start
    return summary
