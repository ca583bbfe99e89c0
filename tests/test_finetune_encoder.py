"""LLM-CFSR's fine-grained semantic embeddings: attribute views of the item prompt, the symmetric
InfoNCE, and a real (tiny) fine-tuning of the packaged MiniLM that the local provider loads."""

import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recbole_faerec.embeddings.finetune import (MANIFEST, attribute_view, finetune_encoder,
                                                present_slots, view_contrastive_loss)
from recbole_faerec.embeddings.prompts import PromptSettings, paper_prompt, read_item_texts


@pytest.fixture(scope="module")
def ml100k_items():
    import os

    import recbole

    path = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k", "ml-100k.item")
    settings = PromptSettings(category="movie", fields={"name": "movie_title", "features": "class"})
    _, values, _ = read_item_texts(path)
    return path, settings, values


def test_a_view_blanks_a_share_of_the_present_attributes(ml100k_items):
    _, settings, values = ml100k_items
    item = values[0]  # Toy Story: a title and genres, no brand, price or description
    assert present_slots(item, settings) == ["name", "features"]
    full = paper_prompt(item, settings)
    rng = random.Random(0)
    views = {attribute_view(item, settings, 0.5, rng) for _ in range(20)}
    no_name = paper_prompt(item, PromptSettings("paper", "movie", {"name": None, "features": "class"}))
    no_features = paper_prompt(item, PromptSettings("paper", "movie", {"name": "movie_title",
                                                                       "features": None}))
    assert views == {no_name, no_features}  # one of the two dropped, never both, never none
    assert full not in views and "name is unknown" in no_name


def test_view_loss_by_hand():
    torch.manual_seed(0)
    x, y = torch.randn(5, 8), torch.randn(5, 8)
    cos = F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T / 0.1
    by_hand = np.mean([-(cos[i, i] - torch.logsumexp(cos[i], 0)).item() for i in range(5)]
                      + [-(cos[i, i] - torch.logsumexp(cos[:, i], 0)).item() for i in range(5)])
    assert view_contrastive_loss(x, y, 0.1).item() == pytest.approx(by_hand, rel=1e-5)


def test_fine_tuned_encoder_is_a_folder_the_local_provider_loads(ml100k_items, tmp_path):
    from recbole_faerec.embeddings.providers import LocalProvider

    path, settings, values = ml100k_items
    out = tmp_path / "encoder"
    manifest = finetune_encoder(path, settings, str(out), epochs=1, batch_size=8, lr=1e-4,
                                drop_ratio=0.5, max_length=24, max_items=16, progress=False)
    assert json.loads((out / MANIFEST).read_text()) == manifest
    assert manifest["items"] == 16 and np.isfinite(manifest["epoch_losses"][0])
    prompts = [paper_prompt(v, settings) for v in values[:4]]
    tuned = LocalProvider(str(out)).embed(prompts)
    base = LocalProvider().embed(prompts)
    assert tuned.shape == base.shape == (4, 384)
    assert not np.allclose(tuned, base, atol=1e-4)  # the weights moved
    with pytest.raises(ValueError, match="drop_ratio"):
        finetune_encoder(path, settings, str(tmp_path / "bad"), drop_ratio=1.0)


def test_a_title_only_catalog_is_one_clear_line(amazon_beauty):
    """amazon-beauty has titles only: no view can drop an attribute, so the script stops with exit
    status 2 and one line naming the file and the one slot it has, before loading any model."""
    from conftest import REPO, run_py

    proc = run_py([REPO / "dataset_scripts" / "finetune_encoder.py", "--dataset", "amazon-beauty",
                   "--data_path", str(amazon_beauty), "--output_dir", str(amazon_beauty / "never")])
    assert proc.returncode == 2, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "amazon-beauty.item: 0 item(s)" in error[0]
    assert "slots: name=title)" in error[0] and "3 non-empty attribute slots" in error[0]
    assert not (amazon_beauty / "never").exists()
