"""A RecBole user's own pipeline with a plugin model, reload and top-K: the README's code, run as
written (only ``my.yaml`` holds tiny settings), then RecBole's own ``load_data_and_model`` and the
``recommend`` command line."""

import re

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_SASREC, run_py

RELOAD = ["-m", "recbole_faerec.quick_start.reload"]
MARKER = "<!-- tests/test_recbole_pipeline.py runs the two code blocks below exactly as written -->"


def readme_blocks():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text[text.index(MARKER):]
    return re.findall(r"```python\n(.*?)```", after, flags=re.S)[:2]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The README's two blocks, executed in a fresh folder with tiny settings in my.yaml."""
    import os

    work = tmp_path_factory.mktemp("pipeline")
    settings = {**TINY_SASREC, "epochs": 2, "embedding_size": 8, "llm_emb_provider": "tfidf",
                "llm_emb_dimensions": 16, "period": 2}
    (work / "my.yaml").write_text("".join(f"{k}: {v}\n" for k, v in settings.items()))
    cwd, cache = os.getcwd(), os.environ.get("RECBOLE_FAEREC_CACHE")
    os.chdir(work)
    os.environ["RECBOLE_FAEREC_CACHE"] = str(work / "cache")
    namespace = {}
    try:
        for block in readme_blocks():
            exec(compile(block, "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
        if cache is None:
            os.environ.pop("RECBOLE_FAEREC_CACHE")
        else:
            os.environ["RECBOLE_FAEREC_CACHE"] = cache
    namespace["work"] = work
    return namespace


def test_readme_pipeline_trains_with_recboles_trainer(pipeline):
    from recbole.trainer import Trainer

    assert len(readme_blocks()) == 2
    trainer = pipeline["trainer"]
    assert type(trainer) is Trainer  # RecBole's own
    assert trainer.model.current_epoch == 1  # the curriculum saw both epochs
    result = pipeline["test_result"]
    assert {"ndcg@10", "tailndcg@10", "coverage@10"} <= set(result)


def test_reloaded_model_ranks_as_trained_and_topk_matches(pipeline):
    from recbole.trainer import Trainer

    # the README's second block rebound these names to what load_data_and_model returned
    config, dataset = pipeline["config"], pipeline["dataset"]
    reloaded, test_data = pipeline["model"], pipeline["test_data"]
    assert type(reloaded).__name__ == "FAERec_SASRec" and not reloaded.training
    # the reloaded model evaluates to the run's own test result
    trainer = Trainer(config, reloaded)
    trainer.eval_collector.data_collect(pipeline["train_data"])
    again = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    assert {k: round(float(v), 4) for k, v in again.items()} == {
        k: round(float(v), 4) for k, v in pipeline["test_result"].items()}
    # full_sort_topk's items are the model's own best-scored items for those users
    items = pipeline["items"]
    assert items.shape == (2, 10)
    uids = pipeline["uids"]
    rows = [int(np.flatnonzero(test_data.dataset.inter_feat["user_id"].numpy() == u)[0]) for u in uids]
    with torch.no_grad():
        scores = reloaded.full_sort_predict(test_data.dataset[rows]).view(2, -1)
    scores[:, 0] = -np.inf
    np.testing.assert_array_equal(items.numpy(), torch.topk(scores, 10).indices.numpy())
    tokens = dataset.id2token(dataset.iid_field, items)
    assert all(t != "[PAD]" for t in tokens.ravel())


def test_recboles_own_load_data_and_model_and_recommend_cli(pipeline, monkeypatch):
    import recbole.quick_start

    # the checkpoint's config asks for the tfidf vectors it was trained with: the same cache
    monkeypatch.setenv("RECBOLE_FAEREC_CACHE", str(pipeline["work"] / "cache"))
    model_file = str(pipeline["work"] / pipeline["trainer"].saved_model_file)
    config, model, dataset, *_ = recbole.quick_start.load_data_and_model(model_file)
    assert type(model).__name__ == "FAERec_SASRec" and config["model"] == "FAERec_SASRec"
    state = pipeline["trainer"].model.state_dict()  # the best checkpoint, loaded for the test
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())

    env = {"RECBOLE_FAEREC_CACHE": str(pipeline["work"] / "cache")}
    proc = run_py([*RELOAD, "--model_file", model_file, "--user", "196"], cwd=pipeline["work"], env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "user 196: top 10" and len(lines) == 11
    top = pipeline["items"][0, 0].item()  # user 196 is the README's first user
    token = dataset.id2token(dataset.iid_field, [top])[0]
    title = " ".join(dataset.id2token("movie_title", [w for w in dataset.item_feat["movie_title"][top].tolist() if w]))
    assert lines[1].split("\t")[:2] == [f"  1. {token}", title]

    bad = run_py([*RELOAD, "--model_file", model_file, "--user", "no-such-user"], cwd=pipeline["work"], env=env)
    assert bad.returncode == 2 and "no-such-user" in bad.stderr.strip().splitlines()[-1]


def test_recboles_load_data_and_model_on_a_builtin_model(tmp_path, monkeypatch):
    import recbole.quick_start

    from recbole_faerec.quick_start import run_recbole_faerec

    monkeypatch.chdir(tmp_path)
    result = run_recbole_faerec("GRU4Rec", "ml-100k", config_dict={**TINY_SASREC, "embedding_size": 8})
    config, model, *_ = recbole.quick_start.load_data_and_model(result["model_file"])
    assert type(model).__name__ == "GRU4Rec"
