"""RecBole's DDP launch through the entry point: 2 gloo workers on the CPU."""

import re

from conftest import REPO, TINY_SASREC, run_py


def test_two_process_gloo_run_of_faerec(tmp_path):
    settings = {**TINY_SASREC, "llm_emb_provider": "tfidf", "llm_emb_dimensions": 16,
                "ddp_backend": "gloo", "train_batch_size": 1024}
    args = [REPO / "run_recbole_faerec.py", "--model=FAERec_SASRec", "--dataset=ml-100k", "--nproc=2",
            "--port=29613", *[f"--{k}={v}" for k, v in settings.items()]]
    proc = run_py(args, cwd=tmp_path, env={"RECBOLE_FAEREC_CACHE": str(tmp_path / "cache")}, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # embeddings made once, by the launcher, before the workers
    assert out.count("embedding 1682 of 1682 items with tfidf tfidf-svd") == 1
    assert "1682 in the dataset; 0 embedded in this run" in out  # the workers only used them
    assert re.search(r"epoch 0 training \[time: [\d.]+s, train loss: [\d.]+ \(rec: [\d.]+, align: [\d.]+\)\]", out)
    # rank 0 saved the best model, both ranks reloaded it for the test (no EOFError race)
    assert len(list((tmp_path / "saved").glob("FAERec_SASRec-*.pth"))) == 1
    assert "test result" in out
