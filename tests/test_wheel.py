"""A real (non-editable) wheel: it ships the plugin's YAML defaults and runs a model when installed
into a fresh venv, away from the source checkout."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, TINY_SASREC

PARENT_SITE_PACKAGES = sysconfig.get_paths()["purelib"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the source tree (no build/ or egg-info in the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("recbole_faerec", "props"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                           "--no-build-isolation", "-w", str(root / "dist"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (built,) = (root / "dist").glob("recbole_faerec-*.whl")
    return built


def test_wheel_ships_the_yaml_defaults(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    props = sorted(p.relative_to(REPO / "props").as_posix() for p in (REPO / "props").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    assert "overall.yaml" in props and "model/FAERec.yaml" in props
    missing = [p for p in props if f"recbole_faerec/props/{p}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert not any(n.startswith("props/") for n in names)  # only inside the package


def test_installed_wheel_runs_a_model_with_its_props(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies (recbole, torch, ...) from this venv, as a plain path line: the .pth files
    # there (the editable install's finder of the checkout) are not run.
    Path(site, "parent_site_packages.pth").write_text(PARENT_SITE_PACKAGES + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                           "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr

    work = tmp_path / "elsewhere"
    work.mkdir()
    script = (
        "import json, recbole_faerec\n"
        "from recbole_faerec.utils.utils import PROPS_DIR\n"
        "from recbole_faerec.quick_start import run_recbole_faerec\n"
        f"r = run_recbole_faerec(model='SASRec', dataset='ml-100k', config_dict={TINY_SASREC!r})\n"
        "print(json.dumps({'file': recbole_faerec.__file__, 'props': PROPS_DIR, "
        "'test': r['test_result']}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(python), "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(venv), out["file"]
    assert Path(out["props"]) == Path(out["file"]).parent / "props"
    # props/overall.yaml's metrics (tail/head/coverage @10 and @20) come from the wheel
    for metric in ("hit@10", "ndcg@20", "tailhit@10", "headndcg@10", "coverage@10"):
        assert 0.0 <= out["test"][metric] <= 1.0, (metric, out["test"])
    assert (work / "log" / "SASRec").is_dir()  # RecBole wrote where it ran, not in the checkout
