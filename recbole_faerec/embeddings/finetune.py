"""Contrastive fine-tuning of the local text encoder on attribute-level views of the item prompts.

LLM-CFSR's "fine-grained semantic embeddings" (its abstract: "attribute-level data augmentation and
contrastive fine-tuning") read as LLMEmb's supervised contrastive fine-tuning (SCFT; its reference
[22], code liuqidong07/LLMEmb: ``llm/data_processor/llama.py``, ``llm/llama.py``). There, each item
gets two views of its prompt, each a random subset of its attributes (the last
``int(n * 0.4)`` of a shuffled list dropped), and LLaMA-7B with LoRA is trained so that an item's
two views are nearer each other than the other items' views in the batch (symmetric InfoNCE).

Here the same idea runs on a sentence-transformers encoder on the CPU (by default the packaged
all-MiniLM-L6-v2), and the result is a model folder the ``local`` provider loads, so the item table
it makes is an ordinary cache (``embed_items.py --model <folder> --suffix itememb-scft``). Choices
that differ from LLMEmb, all because the encoder and its prompt differ:

* **views**: the item's prompt in the dataset's template (the paper's), with a random
  ``drop_ratio`` share of its non-empty attribute slots (name, brand, price, features,
  description) blanked as "unknown", the same template the final table is embedded with (LLMEmb
  shuffles the attributes of its own "key is value; ..." list); views are drawn again every epoch
  (LLMEmb draws them once);
* **loss**: symmetric InfoNCE over cosine similarities with hard targets and a fixed temperature
  ``tau`` (0.05; LLMEmb: unnormalised LLaMA states, a learnable temperature from 3, soft targets
  from the views' own similarities);
* **model**: every weight of the small encoder is trained (LLMEmb: LoRA r 8 on LLaMA-7B), lr 2e-5,
  AdamW; 4,000 steps of 256 in LLMEmb, ``epochs`` passes over the items here.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from recbole_faerec.embeddings.prompts import SLOTS, PromptSettings, paper_prompt, read_item_texts

logger = logging.getLogger(__name__)
MANIFEST = "scft.json"


def present_slots(values: Dict[str, str], settings: PromptSettings) -> List[str]:
    """The attribute slots this item has text for."""
    return [s for s in SLOTS if settings.fields.get(s) and (values.get(settings.fields[s]) or "").strip()]


def contrastable_items(item_path: str, values: List[Dict[str, str]], settings: PromptSettings,
                       drop_ratio: float) -> List[Dict[str, str]]:
    """The items with enough non-empty attribute slots for a view to drop ``int(n * drop_ratio)``
    of them; an error naming the file and its slots when fewer than two items have (a title-only
    catalog such as amazon-beauty's has nothing to drop)."""
    if not 0 < drop_ratio < 1:
        raise ValueError(f"drop_ratio must be between 0 and 1, got {drop_ratio}")
    items = [v for v in values if len(present_slots(v, settings)) * drop_ratio >= 1]
    if len(items) < 2:
        fields = set(values[0]) if values else set()
        mapped = [f"{s}={settings.fields[s]}" for s in SLOTS if settings.fields.get(s) in fields]
        need = int(np.ceil(1 / drop_ratio - 1e-9))
        raise ValueError(
            f"{item_path}: {len(items)} item(s) have the {need} non-empty attribute slots a view "
            f"needs to drop {drop_ratio:.0%} of them (the file's slots: {', '.join(mapped) or 'none'}); "
            "attribute-level views need a catalog with several attributes per item")
    return items


def attribute_view(values: Dict[str, str], settings: PromptSettings, drop_ratio: float,
                   rng: random.Random) -> str:
    """The item's paper prompt with ``int(n * drop_ratio)`` of its ``n`` non-empty attribute slots,
    drawn at random, blanked ("unknown")."""
    slots = present_slots(values, settings)
    dropped = set(rng.sample(slots, int(len(slots) * drop_ratio)))
    kept = dict(settings.fields)
    for slot in dropped:
        kept[slot] = None
    return paper_prompt(values, PromptSettings(settings.template, settings.category, kept))


def view_contrastive_loss(x: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE: row ``i`` of ``x`` should be nearest row ``i`` of ``y`` among all rows of
    ``y`` (cosine / ``tau``), and the other way round."""
    logits = F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T / tau
    target = torch.arange(len(x), device=x.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def finetune_encoder(item_path: str, settings: PromptSettings, output_dir: str,
                     base_model: Optional[str] = None, iid_field: str = "item_id", epochs: int = 1,
                     batch_size: int = 32, lr: float = 2e-5, tau: float = 0.05,
                     drop_ratio: float = 0.4, max_length: int = 128, max_items: Optional[int] = None,
                     seed: int = 2020, progress: bool = True) -> Dict:
    """Fine-tune ``base_model`` (a sentence-transformers folder; default the packaged MiniLM) on
    two attribute views of each item of ``item_path`` and save it to ``output_dir`` with a manifest
    (``scft.json``: the settings and each epoch's mean loss). Returns the manifest."""
    from recbole_faerec.embeddings.providers import LocalProvider

    if settings.template != "paper":
        raise ValueError("attribute views need the paper's template (its attribute slots); "
                         f"llm_prompt_template is '{settings.template}'")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    tokens, values, _ = read_item_texts(item_path, iid_field)
    items = contrastable_items(item_path, values, settings, drop_ratio)
    if max_items is not None:
        items = rng.sample(items, min(max_items, len(items)))
    provider = LocalProvider(base_model)
    model = provider._load()
    model.max_seq_length = max_length
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    losses: List[float] = []
    start = time.time()
    for epoch in range(epochs):
        order = list(range(len(items)))
        rng.shuffle(order)
        total, steps = 0.0, 0
        for begin in range(0, len(order) - 1, batch_size):
            batch = [items[i] for i in order[begin:begin + batch_size]]
            if len(batch) < 2:
                continue
            views = [attribute_view(v, settings, drop_ratio, rng) for v in batch] + \
                    [attribute_view(v, settings, drop_ratio, rng) for v in batch]
            features = model.tokenize(views)
            embedded = model(features)["sentence_embedding"]
            loss = view_contrastive_loss(embedded[: len(batch)], embedded[len(batch):], tau)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
        if progress:
            logger.info(f"fine-tuning epoch {epoch}: loss {losses[-1]:.4f} ({steps} steps, "
                        f"{time.time() - start:.0f} s)")
    model.eval()
    os.makedirs(output_dir, exist_ok=True)
    model.save(output_dir)
    manifest = {"base_model": provider.model_name, "item_file": os.path.abspath(item_path),
                "items": len(items), "epochs": epochs, "batch_size": batch_size, "lr": lr,
                "tau": tau, "drop_ratio": drop_ratio, "max_length": max_length, "seed": seed,
                "prompt": settings.signature(), "epoch_losses": losses,
                "seconds": round(time.time() - start, 1)}
    with open(os.path.join(output_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def view_agreement(model_path: Optional[str], item_path: str, settings: PromptSettings,
                   drop_ratio: float, seed: int, max_items: int, iid_field: str = "item_id") -> float:
    """How often an item's view is nearest its own other view among ``max_items`` items (top-1
    accuracy of the view retrieval): the quantity the fine-tuning raises."""
    from recbole_faerec.embeddings.providers import LocalProvider

    rng = random.Random(seed)
    _, values, _ = read_item_texts(item_path, iid_field)
    items = contrastable_items(item_path, values, settings, drop_ratio)
    items = rng.sample(items, min(max_items, len(items)))
    provider = LocalProvider(model_path)
    a = provider.embed([attribute_view(v, settings, drop_ratio, rng) for v in items])
    b = provider.embed([attribute_view(v, settings, drop_ratio, rng) for v in items])
    sims = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    return float(np.mean(sims.argmax(axis=1) == np.arange(len(items))))


__all__ = ["attribute_view", "contrastable_items", "finetune_encoder", "present_slots", "view_agreement",
           "view_contrastive_loss"]
