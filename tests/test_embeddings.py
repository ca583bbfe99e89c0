"""Item text -> cached embeddings: prompts, the real openai client, resume, the local model, loader."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, run_py
from openai_server import FakeOpenAI, vector_for

from recbole_faerec.embeddings import store
from recbole_faerec.embeddings.prompts import PromptSettings, build_prompts, paper_prompt
from recbole_faerec.embeddings.providers import EmbeddingError, OpenAIProvider, TfidfProvider
from recbole_faerec.embeddings.runner import embed_items

EMBED = REPO / "dataset_scripts" / "embed_items.py"
SECRET = "sk-test-DO-NOT-LEAK-1234567890"


@pytest.fixture
def beauty_items(amazon_beauty, tmp_path):
    """The first 60 real amazon-beauty items, as dataset 'beauty60' in tmp_path/data."""

    def make(n=60, name="beauty60"):
        src = amazon_beauty / "amazon-beauty" / "amazon-beauty.item"
        lines = src.read_text(encoding="utf-8").splitlines()[: n + 1]
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.item").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return folder / f"{name}.item"

    return make


def paths_for(tmp_path, name="beauty60", suffix="itememb"):
    return store.EmbeddingPaths(str(tmp_path / "out"), name, suffix)


def openai_provider(server, **kw):
    os.environ["OPENAI_API_KEY_TEST"] = SECRET
    kw.setdefault("max_retries", 2)
    kw.setdefault("timeout", 10)
    return OpenAIProvider(model="text-embedding-ada-002", base_url=server.base_url,
                          api_key_env="OPENAI_API_KEY_TEST", **kw)


# ---- prompts --------------------------------------------------------------------------------
def test_paper_prompt_slots_unknown_dropped_features_and_caps():
    s = PromptSettings(category="beauty")
    full = paper_prompt({"title": "Rose Oil", "brand": "Acme", "price": "9.5",
                         "categories": "Skin; Oils", "description": "Cold pressed."}, s)
    assert full == ("The beauty item has following attributes: \n name is Rose Oil; brand is Acme; "
                    "price is 9.5. \nThe item has following features: Skin; Oils. \n"
                    "The item has following descriptions: Cold pressed.. \n")
    bare = paper_prompt({"title": "Rose Oil"}, s)
    assert "brand is unknown; price is unknown" in bare
    assert "features" not in bare and "descriptions: unknown." in bare
    long = paper_prompt({"title": "x", "categories": "c" * 5000, "description": "d" * 9000}, s)
    assert len(long) == 4095
    # the features segment (with its ". \n") is cut at 2,048 characters, as the authors' code does
    start = long.index("The item has following features")
    assert long.index("The item has following descriptions") - start == 2048


def test_dry_run_writes_the_exact_prompts(beauty_items, tmp_path):
    item = beauty_items()
    proc = run_py([EMBED, "--dataset", "beauty60", "--data_path", tmp_path / "data", "--dry-run",
                   "--category", "beauty", "--output_dir", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in open(tmp_path / "out" / "beauty60.itememb.prompts.jsonl")]
    first_item = item.read_text().splitlines()[1].split("\t")
    assert len(rows) == 60 and rows[0]["item_id"] == first_item[0]
    assert rows[0]["prompt"].startswith(
        f"The beauty item has following attributes: \n name is {first_item[1]}; brand is unknown")
    assert not (tmp_path / "out" / "beauty60.itememb").exists()


def test_custom_template_and_missing_field_error(beauty_items):
    item = beauty_items()
    tokens, prompts, _ = build_prompts(str(item), PromptSettings(template="Product: {title}"))
    assert prompts[0] == "Product: " + item.read_text().splitlines()[1].split("\t")[1]
    with pytest.raises(Exception, match=r"uses \['brand'\], which the file does not have"):
        build_prompts(str(item), PromptSettings(template="{title} by {brand}"))


# ---- the real openai client against a local server ------------------------------------------
@pytest.mark.parametrize("encoding", ["base64", "float"])
def test_openai_encodings_batches_and_key_hygiene(beauty_items, tmp_path, encoding):
    item = beauty_items()
    with FakeOpenAI(dim=16) as server:
        provider = openai_provider(server, max_inputs=7, encoding_format=encoding, concurrency=3)
        summary = embed_items(str(item), paths_for(tmp_path), provider, PromptSettings(), progress=False)
    assert (summary.embedded, summary.reused, summary.failed, summary.dimension) == (60, 0, 0, 16)
    sizes = [len(r["payload"]["input"]) for r in server.requests]
    assert max(sizes) <= 7 and sum(sizes) == 60 and len(sizes) == 9
    assert all(r["payload"]["encoding_format"] == encoding for r in server.requests)
    assert all(r["auth"] == f"Bearer {SECRET}" for r in server.requests)
    tokens, emb, manifest = store.load_embeddings(paths_for(tmp_path))
    _, prompts, _ = build_prompts(str(item), PromptSettings())
    expected = np.stack([vector_for(p, 16) for p in prompts])
    np.testing.assert_array_equal(emb, expected)  # order restored from the shuffled response
    for path in (tmp_path / "out").iterdir():
        assert SECRET not in path.read_bytes().decode("latin-1")
    assert manifest["encoder"] == {"provider": "openai", "model": "text-embedding-ada-002",
                                   "base_url": server.base_url}


def test_openai_token_budget_and_dimensions(beauty_items, tmp_path):
    item = beauty_items()
    _, prompts, _ = build_prompts(str(item), PromptSettings())
    budget = 3 * max(len(p.encode()) for p in prompts)
    with FakeOpenAI() as server:
        provider = openai_provider(server, max_tokens_per_request=budget, dimensions=8)
        embed_items(str(item), paths_for(tmp_path), provider, PromptSettings(), progress=False)
    assert all(sum(len(t.encode()) for t in r["payload"]["input"]) <= budget for r in server.requests)
    assert all(r["payload"]["dimensions"] == 8 for r in server.requests)
    assert store.load_embeddings(paths_for(tmp_path))[1].shape == (60, 8)


def test_openai_retries_429_and_500_then_succeeds(beauty_items, tmp_path):
    item = beauty_items(10)
    with FakeOpenAI() as server:
        server.fail = {1: (429, {"Retry-After": "0"}), 2: (500, {"Retry-After": "0"})}
        provider = openai_provider(server, max_retries=2)
        summary = embed_items(str(item), paths_for(tmp_path), provider, PromptSettings(), progress=False)
    assert summary.embedded == 10 and len(server.requests) == 3


def test_openai_400_is_not_retried_and_keeps_finished_batches(beauty_items, tmp_path):
    item = beauty_items(30)
    lines = item.read_text().splitlines()
    bad_token = lines[25].split("\t")[0]
    lines[25] = lines[25] + " REJECTME"
    item.write_text("\n".join(lines) + "\n")
    with FakeOpenAI() as server:
        server.reject = "REJECTME"
        provider = openai_provider(server, max_inputs=10, concurrency=1)
        with pytest.raises(EmbeddingError) as err:
            embed_items(str(item), paths_for(tmp_path), provider, PromptSettings(), progress=False)
        assert len(server.requests) == 3  # batches 1 and 2 fine, batch 3 rejected once
        message = str(err.value)
        assert "HTTP 400" in message and bad_token in message and "Kept 20 of 30" in message
        assert SECRET not in message
        # The fix: the item text is corrected; only the failed batch is sent again.
        item.write_text("\n".join(lines).replace(" REJECTME", "") + "\n")
        before = len(server.inputs())
        summary = embed_items(str(item), paths_for(tmp_path), provider, PromptSettings(), progress=False)
        assert (summary.embedded, summary.reused) == (10, 20)
        assert len(server.inputs()) - before == 10
    assert not os.path.exists(paths_for(tmp_path).partial)


def test_openai_timeout(beauty_items, tmp_path):
    item = beauty_items(5)
    with FakeOpenAI() as server:
        server.delay = {1: 3.0}
        provider = openai_provider(server, max_retries=0, timeout=0.5)
        with pytest.raises(EmbeddingError, match="APITimeoutError"):
            embed_items(str(item), paths_for(tmp_path), provider, PromptSettings(), progress=False)


def test_missing_api_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(EmbeddingError, match="NO_SUCH_KEY_VAR"):
        OpenAIProvider(api_key_env="NO_SUCH_KEY_VAR")


def test_resume_after_a_killed_run_embeds_exactly_the_rest(beauty_items, tmp_path):
    beauty_items(50)
    args = [sys.executable, str(EMBED), "--dataset", "beauty60", "--data_path", str(tmp_path / "data"),
            "--provider", "openai", "--max_inputs", "10", "--concurrency", "1", "--api_key_env",
            "OPENAI_API_KEY_TEST", "--output_dir", str(tmp_path / "out"), "--no-progress"]
    env = {**os.environ, "OPENAI_API_KEY_TEST": SECRET, "PYTHONPATH": str(REPO)}
    with FakeOpenAI() as server:
        args += ["--base_url", server.base_url]
        server.hold_from = 4  # requests 1-3 answered, the 4th hangs: then the process is killed
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while len(server.requests) < 4 and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert len(server.requests) == 4
        partial = paths_for(tmp_path).partial
        assert len([f for f in os.listdir(partial) if f.startswith("batch-")]) == 3
        assert not os.path.exists(paths_for(tmp_path).atomic)
        server.hold_from = None
        first_run = set(server.inputs()[:30])
        before = len(server.requests)
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "50 items: 20 embedded, 30 reused, 0 failed" in done.stdout
        second_run = server.inputs()[before * 10:]
        assert len(second_run) == 20 and not first_run & set(second_run)
        # And a rerun embeds nothing.
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert "0 embedded, 50 reused" in again.stdout


# ---- tfidf and the local model ---------------------------------------------------------------
def test_tfidf_reuse_and_corpus_change(beauty_items, tmp_path):
    item = beauty_items()
    provider = TfidfProvider(dimensions=16)
    first = embed_items(str(item), paths_for(tmp_path), provider, PromptSettings(), progress=False)
    again = embed_items(str(item), paths_for(tmp_path), provider, PromptSettings(), progress=False)
    assert (first.embedded, again.embedded, again.reused) == (60, 0, 60)
    item.write_text(item.read_text().replace("\t", "\tNew ", 2).replace("\tNew ", "\t", 1))
    changed = embed_items(str(item), paths_for(tmp_path), provider, PromptSettings(), progress=False)
    assert changed.embedded == 60  # TF-IDF depends on the whole corpus: all re-embedded


def test_local_model_on_real_titles(amazon_beauty):
    from recbole_faerec.embeddings.providers import LocalProvider

    tokens, prompts, _ = build_prompts(str(amazon_beauty / "amazon-beauty" / "amazon-beauty.item"),
                                       PromptSettings(template="{title}"))
    def find(word, n):
        return [p for p in prompts if word.lower() in p.lower()][:n]

    nails = find("nail lacquer", 2)
    shampoo = find("shampoo", 2)
    emb = LocalProvider().embed(nails + shampoo)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    assert emb.shape == (4, 384)
    assert sim[0, 1] > max(sim[0, 2], sim[0, 3]) and sim[2, 3] > max(sim[2, 0], sim[2, 1])


def test_local_provider_refuses_hub_names():
    from recbole_faerec.embeddings.providers import LocalProvider

    with pytest.raises(EmbeddingError, match="not a folder"):
        LocalProvider(model="sentence-transformers/all-mpnet-base-v2")


# ---- the loader --------------------------------------------------------------------------------
@pytest.fixture
def ml100k_tfidf(tmp_path, monkeypatch):
    """ml-100k's real items embedded by tfidf into a temporary user cache; (dataset, config)."""
    from recbole.data import create_dataset

    from recbole_faerec.embeddings import ensure_item_embeddings
    from recbole_faerec.quick_start import build_config

    monkeypatch.setenv("RECBOLE_FAEREC_CACHE", str(tmp_path / "cache"))
    config = build_config("SASRec", "ml-100k", config_dict={
        "llm_emb_provider": "tfidf", "llm_emb_dimensions": 12, "state": "WARNING"})
    dataset = create_dataset(config)
    matrix = ensure_item_embeddings(dataset, config)
    return dataset, config, matrix


def test_loader_aligns_to_internal_ids(ml100k_tfidf, tmp_path):
    dataset, config, matrix = ml100k_tfidf
    paths = store.EmbeddingPaths(str(tmp_path / "cache" / "ml-100k"), "ml-100k")
    assert os.path.isfile(paths.atomic) and os.path.isfile(paths.sidecar)
    assert matrix.shape == (dataset.item_num, 12) and matrix.dtype == np.float32
    assert not matrix[0].any()
    tokens, emb = store.parse_atomic_embeddings(paths.atomic)
    for raw in ["302", "1", "1682"]:
        np.testing.assert_array_equal(matrix[dataset.token2id("item_id", raw)], emb[tokens.index(raw)])


def test_loader_errors(ml100k_tfidf, tmp_path):
    from recbole_faerec.embeddings import load_item_embeddings

    dataset, config, _ = ml100k_tfidf
    paths = store.EmbeddingPaths(str(tmp_path / "cache" / "ml-100k"), "ml-100k")
    original = open(paths.atomic).read()
    lines = original.splitlines()

    # an item without embedding
    gone = lines.pop(5).split("\t")[0]
    open(paths.atomic, "w").write("\n".join(lines) + "\n")
    with pytest.raises(store.EmbeddingFileError, match=rf"1 of the dataset's 1682 items have no embedding: {gone}\b"):
        load_item_embeddings(dataset, config)

    # NaN in a row
    lines = original.splitlines()
    token = lines[7].split("\t")[0]
    lines[7] = token + "\t" + " ".join(["nan"] * 12)
    open(paths.atomic, "w").write("\n".join(lines) + "\n")
    with pytest.raises(store.EmbeddingFileError, match=rf"contain NaN or inf: {token}\b"):
        load_item_embeddings(dataset, config)

    # a row of the wrong length
    lines = original.splitlines()
    lines[9] = lines[9].rsplit(" ", 1)[0]
    open(paths.atomic, "w").write("\n".join(lines) + "\n")
    with pytest.raises(store.EmbeddingFileError, match=r"line 10: item '.*' has 11 values, expected 12"):
        load_item_embeddings(dataset, config)

    # the wrong dimension for the model
    open(paths.atomic, "w").write(original)
    with pytest.raises(store.EmbeddingFileError, match="12 dimensions, the model expects 64"):
        load_item_embeddings(dataset, config, expected_dim=64)


def test_stale_sidecar_is_detected(ml100k_tfidf, tmp_path):
    from recbole_faerec.embeddings import load_item_embeddings

    dataset, config, matrix = ml100k_tfidf
    paths = store.EmbeddingPaths(str(tmp_path / "cache" / "ml-100k"), "ml-100k")
    lines = open(paths.atomic).read().splitlines()
    token = lines[1].split("\t")[0]
    lines[1] = token + "\t" + " ".join(["0.5"] * 12)
    open(paths.atomic, "w").write("\n".join(lines) + "\n")  # edited by hand; sidecar now stale
    fresh = load_item_embeddings(dataset, config)
    assert (fresh[dataset.token2id("item_id", token)] == 0.5).all()
    manifest = json.load(open(paths.manifest))
    assert manifest["atomic"] == store.fingerprint(paths.atomic)  # sidecar rewritten and recorded
    assert token not in manifest["items"]  # its prompt hash no longer vouches for the vector
