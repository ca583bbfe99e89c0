"""The item-embedding cache obeys the configuration: the encoder is checked on every run, changed
prompts (and only they) are embedded again, staleness is decided by content, two runs take turns,
and the embedding script reads the same YAML as training."""

import json
import logging
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, TINY_SASREC, run_py
from openai_server import FakeOpenAI

from recbole_faerec.embeddings import store
from recbole_faerec.embeddings.loader import embedding_paths, sync_item_embeddings
from recbole_faerec.embeddings.providers import EmbeddingError
from recbole_faerec.embeddings.runner import EncoderMismatchError, _Progress

EMBED = REPO / "dataset_scripts" / "embed_items.py"
RUN = REPO / "run_recbole_faerec.py"


@pytest.fixture
def beauty60(amazon_beauty, tmp_path):
    """The first 60 real amazon-beauty items as dataset 'beauty60' (only its .item file)."""
    src = amazon_beauty / "amazon-beauty" / "amazon-beauty.item"
    lines = src.read_text(encoding="utf-8").splitlines()[:61]
    folder = tmp_path / "data" / "beauty60"
    folder.mkdir(parents=True)
    (folder / "beauty60.item").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def server():
    with FakeOpenAI() as s:
        yield s


def settings(folder, server=None, **kw):
    """What a training run's config holds for the embeddings (sync needs nothing else)."""
    out = {"dataset": "beauty60", "data_path": str(folder), "ITEM_ID_FIELD": "item_id",
           "show_progress": False, "llm_prompt_category": "beauty"}
    if server is not None:
        out.update(llm_emb_provider="openai", llm_emb_base_url=server.base_url)
    out.update(kw)
    return out


def sha(path):
    return store.fingerprint(str(path))["sha256"]


def test_every_run_checks_the_encoder_it_was_asked_for(beauty60, server, monkeypatch):
    first = sync_item_embeddings(settings(beauty60, server))
    assert (first["embedded"], first["provider"], first["dimension"]) == (60, "openai", 16)
    atomic = beauty60 / "beauty60.itememb"
    before = sha(atomic)
    requests = len(server.requests)

    # the same encoder again: nothing embedded, nothing written
    again = sync_item_embeddings(settings(beauty60, server))
    assert (again["embedded"], again["reused"], len(server.requests)) == (0, 60, requests)

    # another encoder or dimension: an error naming both, the cache untouched
    with pytest.raises(EncoderMismatchError, match=r"made with openai text-embedding-ada-002.*16-d, "
                       r"60 items.*asks for tfidf tfidf-svd.*llm_emb_suffix"):
        sync_item_embeddings(settings(beauty60, llm_emb_provider="tfidf"))
    with pytest.raises(EncoderMismatchError, match="dimensions 8"):
        sync_item_embeddings(settings(beauty60, server, llm_emb_dimensions=8))
    # an encoder that cannot run is an error although a cache exists
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EmbeddingError, match="OPENAI_API_KEY"):
        sync_item_embeddings(settings(beauty60, llm_emb_provider="openai"))
    with pytest.raises(EmbeddingError, match="unknown embedding provider 'foo'"):
        sync_item_embeddings(settings(beauty60, llm_emb_provider="foo"))
    with pytest.raises(EmbeddingError, match="'/nonexistent/path' is not a folder"):
        sync_item_embeddings(settings(beauty60, llm_emb_provider="local",
                                      llm_emb_model="/nonexistent/path"))
    assert sha(atomic) == before and len(server.requests) == requests

    # another encoder in its own file, beside the first; the first still used as it is
    other = sync_item_embeddings(settings(beauty60, llm_emb_provider="tfidf", llm_emb_dimensions=8,
                                          llm_emb_suffix="itememb-tfidf"))
    assert (other["embedded"], other["dimension"]) == (60, 8)
    as_is = sync_item_embeddings(settings(beauty60, llm_emb_provider="precomputed"))
    assert (as_is["provider"], as_is["dimension"], as_is["embedded"]) == ("openai", 16, 0)
    assert sha(atomic) == before


def test_changed_prompts_and_only_they_are_embedded_again(beauty60, server):
    sync_item_embeddings(settings(beauty60, server))
    item = beauty60 / "beauty60.item"
    lines = item.read_text(encoding="utf-8").splitlines()
    edited = []
    for row in (3, 17):
        token, title = lines[row].split("\t", 1)
        lines[row] = f"{token}\tEdited {title}"
        edited.append(f"Edited {title}")
    item.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seen = len(server.inputs())

    summary = sync_item_embeddings(settings(beauty60, server))
    assert (summary["embedded"], summary["reused"]) == (2, 58)
    sent = server.inputs()[seen:]
    assert len(sent) == 2 and all(any(t in p for p in sent) for t in edited)
    manifest = json.loads((beauty60 / "beauty60.itememb.json").read_text())
    assert len(manifest["items"]) == 60

    # a changed prompt setting changes every prompt: all embedded again
    summary = sync_item_embeddings(settings(beauty60, server, llm_prompt_category="cosmetics"))
    assert summary["embedded"] == 60


def test_copied_touched_or_hand_edited_caches_keep_their_hashes(beauty60, server, tmp_path):
    sync_item_embeddings(settings(beauty60, server))
    requests = len(server.requests)

    # copied (new modification times) and touched: reused in full, by the real script too
    copy = tmp_path / "copy"
    shutil.copytree(beauty60, copy, copy_function=shutil.copy)
    later = time.time() + 3600
    os.utime(copy / "beauty60.itememb", (later, later))
    env = {"OPENAI_API_KEY": "sk-test"}
    proc = run_py([EMBED, "--dataset", "beauty60", "--data_path", tmp_path / "data", "--provider",
                   "openai", "--base_url", server.base_url, "--category", "beauty", "--output_dir", copy,
                   "--no-progress"],
                  env=env)
    assert proc.returncode == 0, proc.stderr
    assert "60 items: 0 embedded, 60 reused" in proc.stdout
    assert len(server.requests) == requests
    paths = store.EmbeddingPaths(str(copy), "beauty60")
    store.load_embeddings(paths)  # what a training run does first
    assert len(json.loads(open(paths.manifest).read())["items"]) == 60

    # one vector edited by hand: exactly that item is embedded again
    atomic = beauty60 / "beauty60.itememb"
    lines = atomic.read_text().splitlines()
    token = lines[5].split("\t")[0]
    lines[5] = token + "\t" + " ".join(["0.5"] * 16)
    atomic.write_text("\n".join(lines) + "\n")
    summary = sync_item_embeddings(settings(beauty60, server))
    assert (summary["embedded"], summary["reused"]) == (1, 59)
    tokens, emb, _ = store.load_embeddings(store.EmbeddingPaths(str(beauty60), "beauty60"))
    assert not np.allclose(emb[tokens.index(token)], 0.5)


def test_a_file_without_manifest_is_not_taken_for_the_configured_encoder(beauty60, server):
    sync_item_embeddings(settings(beauty60, server))
    os.remove(beauty60 / "beauty60.itememb.json")
    with pytest.raises(store.EmbeddingFileError, match="has no manifest.*precomputed"):
        sync_item_embeddings(settings(beauty60, server))
    assert sync_item_embeddings(settings(beauty60, llm_emb_provider="precomputed"))["embedded"] == 0


def test_two_runs_on_one_cache_embed_each_item_once(beauty60, server, tmp_path):
    server.delay = {n: 0.4 for n in range(1, 7)}  # 6 batches of 10: the first run takes > 2 s
    args = [sys.executable, str(EMBED), "--dataset", "beauty60", "--data_path", str(tmp_path / "data"),
            "--provider", "openai", "--base_url", server.base_url, "--max_inputs", "10",
            "--concurrency", "1", "--no-progress"]
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    lines = sorted(o[0].strip() for o in outs)
    assert "60 items: 0 embedded, 60 reused" in lines[0]
    assert "60 items: 60 embedded, 0 reused" in lines[1]
    assert len(server.inputs()) == 60
    assert any("waiting for it" in o[1] for o in outs)


def test_embed_script_reads_the_training_yaml(beauty60, tmp_path):
    yaml_file = tmp_path / "beauty60.yaml"
    yaml_file.write_text(f"data_path: {tmp_path / 'data'}\nllm_prompt_template: '{{title}} (yaml)'\n")
    proc = run_py([EMBED, "--dataset", "beauty60", "--config_files", yaml_file, "--dry-run"])
    assert proc.returncode == 0, proc.stderr
    lines = (beauty60 / "beauty60.itememb.prompts.jsonl").read_text().splitlines()
    first_title = (beauty60 / "beauty60.item").read_text().splitlines()[1].split("\t", 1)[1]
    assert len(lines) == 60 and json.loads(lines[0])["prompt"] == f"{first_title} (yaml)"


def test_progress_logs_an_eta(caplog):
    caplog.set_level(logging.INFO, logger="recbole_faerec.embeddings.runner")
    progress = _Progress(total=100, name="local", bar=False, every=0.0)
    time.sleep(0.01)
    progress.update(25)
    progress.close()
    assert any("embedding: 25/100 items" in r.message and "ETA" in r.message for r in caplog.records)


# ---- through a training run ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def ml100k_tfidf_cache(tmp_path_factory):
    """ml-100k's items embedded by tfidf (16-d) into a fresh cache, by the real script."""
    cache = tmp_path_factory.mktemp("cache")
    proc = run_py([EMBED, "--dataset", "ml-100k", "--provider", "tfidf", "--dimensions", "16",
                   "--no-progress"], env={"RECBOLE_FAEREC_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr
    return cache


@pytest.mark.parametrize("flags, message", [
    (["--llm_emb_provider=openai"], "set the API key in the environment variable OPENAI_API_KEY"),
    (["--llm_emb_provider=tfidf", "--llm_emb_dimensions=8"], "made with tfidf tfidf-svd (dimensions 16"),
    (["--llm_emb_model=/nonexistent/path"], "'/nonexistent/path' is not a folder"),
])
def test_a_warm_cache_never_overrides_the_command_line(ml100k_tfidf_cache, tmp_path, flags, message):
    args = [f"--{k}={v}" for k, v in TINY_SASREC.items()]
    env = {"RECBOLE_FAEREC_CACHE": str(ml100k_tfidf_cache), "OPENAI_API_KEY": ""}
    proc = run_py([RUN, "--model=FAERec_SASRec", "--dataset=ml-100k", *args, *flags],
                  cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last


def test_the_log_names_the_embedding_source(ml100k_tfidf_cache, monkeypatch, caplog):
    from recbole_faerec.quick_start import build_config, load_dataset
    from recbole_faerec.utils import get_model

    monkeypatch.setenv("RECBOLE_FAEREC_CACHE", str(ml100k_tfidf_cache))
    config = build_config("FAERec_SASRec", "ml-100k", config_dict={
        **TINY_SASREC, "embedding_size": 8, "llm_emb_provider": "tfidf", "llm_emb_dimensions": 16})
    _, train, _, _ = load_dataset(config)
    caplog.set_level(logging.INFO)
    get_model("FAERec_SASRec")(config, train._dataset)
    path = embedding_paths(config).atomic
    assert any(f"Item LLM embeddings: {path} (tfidf tfidf-svd, 16-d, 1682 items in the file, "
               f"1682 in the dataset; 0 embedded in this run)" in r.getMessage() for r in caplog.records)
