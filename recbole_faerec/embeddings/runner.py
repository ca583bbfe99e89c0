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
    #: the cache's content after the run (token order of ``.item``), so a caller need not reread it
    tokens: Optional[List[str]] = None
    emb: Optional[np.ndarray] = None

    def line(self) -> str:
        rate = self.embedded / self.seconds if self.seconds and self.embedded else 0.0
        return (f"{self.total} items: {self.embedded} embedded, {self.reused} reused, "
                f"{self.failed} failed; dimension {self.dimension}; {self.seconds:.1f} s"
                + (f" ({rate:.1f} items/s)" if rate else ""))


class EncoderMismatchError(store.EmbeddingFileError):
    """The cache on disk was made by another encoder than the one asked for."""


def encoder_text(encoder: Optional[Dict]) -> str:
    """``local all-MiniLM-L6-v2`` / ``openai text-embedding-3-small (dimensions 256, base_url ...)``."""
    if not encoder:
        return "an unknown encoder"
    extra = ", ".join(f"{k} {v}" for k, v in encoder.items()
                      if k not in ("provider", "model") and v not in (None, False))
    return f"{encoder.get('provider')} {encoder.get('model')}" + (f" ({extra})" if extra else "")


def _signature(provider: Provider, corpus: Optional[str]) -> Dict:
    """What a vector depends on besides its own prompt: the encoder (and, for corpus-dependent
    encoders, every prompt). The prompt settings are not part of it: each item's prompt hash is."""
    sig = {"encoder": provider.describe()}
    if corpus is not None:
        sig["corpus"] = corpus
    return sig


def _previous(paths: store.EmbeddingPaths, signature: Dict, overwrite: bool):
    """``(vectors, manifest)`` of the last complete run: token -> (prompt hash, vector).

    A cache made by another encoder is an :class:`EncoderMismatchError` (unless ``overwrite``),
    never silently replaced: it may have cost money to make.
    """
    if not os.path.isfile(paths.atomic):
        return {}, None
    manifest = store.read_json(paths.manifest)
    if manifest is None:
        if overwrite:
            return {}, None
        raise store.EmbeddingFileError(
            f"{paths.atomic} has no manifest ({os.path.basename(paths.manifest)}): it was not made "
            f"by embed_items.py, so nothing records which encoder and text made it. Use it as it is "
            f"with llm_emb_provider: precomputed, or replace it (embed_items.py --overwrite)")
    if manifest.get("encoder") != signature["encoder"]:
        if overwrite:
            return {}, None
        raise EncoderMismatchError(
            f"{paths.atomic} holds embeddings made with {encoder_text(manifest.get('encoder'))} "
            f"({manifest.get('dimension')}-d, {manifest.get('n_items')} items), but this run asks "
            f"for {encoder_text(signature['encoder'])}. Keep both by choosing another file for the "
            f"new encoder (llm_emb_suffix, e.g. --llm_emb_suffix={paths.suffix}-"
            f"{signature['encoder'].get('provider')}; embed_items.py --suffix), use the existing "
            f"one with the encoder settings it was made with, or replace it "
            f"(dataset_scripts/embed_items.py --overwrite)")
    if manifest.get("corpus") != signature.get("corpus"):
        return {}, manifest  # corpus-dependent encoder, and the corpus changed: all vectors change
    try:
        tokens, emb, manifest = store.load_embeddings(paths)
    except store.EmbeddingFileError as err:
        logger.warning(f"ignoring the existing embeddings: {err}")
        return {}, None
    hashes = manifest.get("items", {})
    return {t: (hashes[t], emb[i]) for i, t in enumerate(tokens) if t in hashes}, manifest


class _Progress:
    """A tqdm bar (items/s, ETA) when asked for; otherwise a log line with the ETA every ``every``
    seconds, so a run without bars (logs, ``show_progress: False``) is never silent for minutes."""

    def __init__(self, total: int, name: str, bar: bool, every: float = 30.0):
        self.total, self.done, self.every = total, 0, every
        self.start = self.last = time.time()
        self.bar = None
        if bar and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="item", desc=f"embedding ({name})")

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        now = time.time()
        if self.bar is None and now - self.last >= self.every and self.done < self.total:
            self.last = now
            rate = self.done / (now - self.start)
            logger.info(f"embedding: {self.done}/{self.total} items, {rate:.1f} items/s, "
                        f"ETA {(self.total - self.done) / rate:.0f} s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def embed_items(
    item_path: str,
    paths: store.EmbeddingPaths,
    provider: Provider,
    settings: PromptSettings,
    iid_field: str = "item_id",
    progress: bool = True,
    dry_run: bool = False,
    overwrite: bool = False,
) -> EmbedSummary:
    """Embed the prompt of every item in ``item_path`` into ``paths`` (see :mod:`.store`).

    Every item whose prompt is unchanged (same hash) and was embedded by the same encoder is
    reused; only new and changed items are sent to the encoder, and nothing is written when
    nothing changed. A cache made by another encoder raises :class:`EncoderMismatchError` unless
    ``overwrite``. Two runs on one cache take turns (``paths.lock``): the second reuses the first's
    vectors. Raises :class:`EmbeddingError` when a batch fails; every other finished batch is kept
    in ``paths.partial`` and reused by the next run.
    """
    tokens, prompts, empty = build_prompts(item_path, settings, iid_field)
    if empty:
        shown = ", ".join(empty[:10]) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
        logger.warning(f"{item_path}: {len(empty)} item(s) have no text in the prompt fields; they "
                       f"are embedded with 'unknown' attributes: {shown}")
    if dry_run:
        os.makedirs(paths.directory, exist_ok=True)
        write_prompts(paths.prompts, tokens, prompts)
        return EmbedSummary(total=len(tokens), paths=paths, empty_items=empty)
    summary = embed_texts(tokens, prompts, paths, provider, settings.signature(),
                          {"item_file": os.path.abspath(item_path)}, progress, overwrite, "items")
    summary.empty_items = empty
    return summary


def embed_texts(
    tokens: List[str],
    prompts: List[str],
    paths: store.EmbeddingPaths,
    provider: Provider,
    prompt_signature: Dict,
    source: Dict,
    progress: bool = True,
    overwrite: bool = False,
    kind: str = "items",
) -> EmbedSummary:
    """Embed ``prompts`` (one per token: items, or users) into the cache ``paths``, reusing every
    vector whose prompt hash and encoder are unchanged (:func:`embed_items` for the rules).
    ``prompt_signature`` records how the prompts were made (a change re-writes the manifest);
    ``source`` is added to the manifest as it is; ``kind`` names what the tokens are."""
    start = time.time()
    summary = EmbedSummary(total=len(tokens), paths=paths)
    hashes = [text_hash(p) for p in prompts]
    corpus = (text_hash("\n".join(f"{t}\t{h}" for t, h in zip(tokens, hashes)))
              if provider.corpus_dependent else None)
    signature = _signature(provider, corpus)

    def waiting():
        logger.info(f"another process is embedding into {paths.atomic}: waiting for it "
                    f"(lock {paths.lock}), then reusing its vectors")

    with store.cache_lock(paths, on_wait=waiting):
        previous, manifest = _previous(paths, signature, overwrite)
        vectors: Dict[str, np.ndarray] = {}
        todo = []
        for i, (token, h) in enumerate(zip(tokens, hashes)):
            hit = previous.get(token)
            if hit is not None and hit[0] == h:
                vectors[token] = hit[1]
            else:
                todo.append(i)
        if not todo and manifest is not None and manifest.get("items") == dict(zip(tokens, hashes)) \
                and manifest.get("prompt") == prompt_signature:
            # nothing changed: the files on disk are already these
            summary.reused = len(tokens)
            summary.tokens, summary.emb = tokens, np.stack([vectors[t] for t in tokens])
            summary.dimension = int(summary.emb.shape[1])
            summary.seconds = time.time() - start
            return summary
        if todo and provider.corpus_dependent:
            # one item's vector depends on every text: a partial re-embedding would be inconsistent
            todo = list(range(len(tokens)))
            vectors.clear()
        elif todo:
            partial = store.open_partial(paths, signature)
            for i in list(todo):
                hit = partial.get(tokens[i])
                if hit is not None and hit[0] == hashes[i]:
                    vectors[tokens[i]] = hit[1]
            todo = [i for i in todo if tokens[i] not in vectors]
        summary.reused = len(tokens) - len(todo)
        if todo:
            logger.info(f"embedding {len(todo)} of {len(tokens)} {kind} with "
                        f"{encoder_text(signature['encoder'])} into {paths.atomic} "
                        f"({summary.reused} reused)")
        _embed_todo(provider, tokens, prompts, hashes, todo, vectors, paths, summary, progress)
        summary.seconds = time.time() - start

        emb = np.stack([vectors[t] for t in tokens]).astype(np.float32)
        summary.tokens, summary.emb = tokens, emb
        summary.dimension = int(emb.shape[1])
        manifest = {
            **signature,
            "prompt": prompt_signature,
            "kind": kind,
            "items": dict(zip(tokens, hashes)),
            "n_items": len(tokens),
            **source,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        store.save_embeddings(paths, tokens, emb, manifest)
        store.close_partial(paths)
    summary.seconds = time.time() - start
    return summary


def _embed_todo(provider, tokens, prompts, hashes, todo, vectors, paths, summary, progress) -> None:
    """Embed the items ``todo`` (indices) into ``vectors``, keeping each finished batch on disk."""
    if not todo:
        return
    dims = {v.shape[0] for v in vectors.values()}
    batches = [[todo[j] for j in batch] for batch in provider.batches([prompts[i] for i in todo])]
    bar = _Progress(len(todo), provider.name, progress)

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
                bar.update(len(batch))
            if failure is not None:
                queue.clear()
    bar.close()

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
