"""Each fix in recbole_faerec.compat: RecBole fails without it and works with it.

Every case runs tests/compat_probe.py twice in fresh processes: once with all fixes, once with the
one fix switched off through $RECBOLE_FAEREC_COMPAT_SKIP.
"""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, run_py

PROBE = REPO / "tests" / "compat_probe.py"


def probe(check, *args, skip="", cwd=None):
    return run_py([PROBE, check, *args], cwd=cwd, env={"RECBOLE_FAEREC_COMPAT_SKIP": skip})


def last_line(proc):
    """The probe's verdict (stdout) when it finished, else the exception line (stderr)."""
    text = proc.stdout if proc.returncode == 0 else proc.stderr
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def assert_fixed(check, fix, failure, *args, tmp_path=None):
    ok = probe(check, *args, cwd=tmp_path)
    assert ok.returncode == 0 and last_line(ok).startswith("OK"), ok.stdout + ok.stderr
    broken = probe(check, *args, skip=fix, cwd=tmp_path)
    assert failure in last_line(broken), (broken.stdout + broken.stderr)[-3000:]
    return last_line(ok)


def test_numpy_aliases(tmp_path):
    assert_fixed("config", "numpy_aliases", "np.float_` was removed", tmp_path=tmp_path)


def test_ray_pkg_resources(tmp_path):
    if importlib.util.find_spec("pkg_resources") is not None:
        pytest.skip("this setuptools still ships pkg_resources; nothing to fix")
    assert_fixed("ray", "pkg_resources", "No module named 'pkg_resources'", tmp_path=tmp_path)


def test_pkg_resources_shim_is_only_for_ray():
    proc = run_py(["-c", "import recbole_faerec, importlib.util as u; "
                         "print(u.find_spec('pkg_resources') is None or "
                         "__import__('pkg_resources').__file__ is not None)"])
    assert proc.stdout.strip().endswith("True"), proc.stderr


def test_anomaly_mode_is_off_after_loading_models(tmp_path):
    assert_fixed("anomaly", "anomaly_mode", "ANOMALY_ON", tmp_path=tmp_path)


@pytest.mark.skipif(int(pd.__version__.split(".")[0]) < 3, reason="pandas < 3 needs no fix")
def test_pandas3_token_seq_item_text(tmp_path):
    out = assert_fixed("item_text", "pandas_seq_agg", "Length of values", tmp_path=tmp_path)
    # ml-100k raw item 302, read back from RecBole's token_seq fields.
    assert out == "OK L.A. Confidential | Crime Film-Noir Mystery Thriller"


@pytest.mark.skipif(int(pd.__version__.split(".")[0]) < 3, reason="pandas < 3 has no copy-on-write")
def test_pandas3_copy_on_write_fill_nan(tmp_path):
    # Real ml-100k interactions with the rating of every 100th line left out.
    import recbole

    src = Path(recbole.__file__).parent / "dataset_example" / "ml-100k" / "ml-100k.inter"
    dst = tmp_path / "ml100k-gaps"
    dst.mkdir()
    lines = src.read_text().splitlines()
    out = [lines[0]]
    for i, line in enumerate(lines[1:]):
        user, item, rating, ts = line.split("\t")
        out.append("\t".join([user, item, "" if i % 100 == 0 else rating, ts]))
    (dst / "ml100k-gaps.inter").write_text("\n".join(out) + "\n")
    assert_fixed("fill_nan", "pandas_cow_fillna", "NAN_LEFT", str(tmp_path), "ml100k-gaps",
                 tmp_path=tmp_path)


def test_checkpoint_reload_and_collector_metrics(tmp_path):
    out = assert_fixed("train", "checkpoint_load", "weights_only", tmp_path=tmp_path)
    for metric in ["itemcoverage@10", "giniindex@10", "averagepopularity@10", "tailpercentage@10"]:
        assert metric in out
    broken = probe("train", skip="collector_cpu", cwd=tmp_path)
    assert "object has no attribute 'cpu'" in last_line(broken)


def test_unknown_fix_name_is_an_error():
    proc = run_py(["-c", "import recbole_faerec"], env={"RECBOLE_FAEREC_COMPAT_SKIP": "nope"})
    assert proc.returncode != 0 and "unknown fixes ['nope']" in proc.stderr


def test_bce_loss_for_recbole_sequential_models(tmp_path):
    out = assert_fixed("bce", "bce_loss", "Make sure 'loss_type' in ['BPR', 'CE']", tmp_path=tmp_path)
    assert out.startswith("OK BCEOneNegativeLoss")
