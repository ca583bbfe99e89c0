"""Bad input ends in one clear error naming the file, line or item: never a deep traceback."""

import shutil

import pytest

from conftest import REPO, run_py

ENTRY = REPO / "run_recbole_faerec.py"


@pytest.fixture
def beauty_copy(amazon_beauty, tmp_path):
    """A copy of the converted real amazon-beauty files that a test may damage."""
    root = tmp_path / "data"
    (root / "amazon-beauty").mkdir(parents=True)
    for suffix in ("inter", "item"):
        shutil.copy(amazon_beauty / "amazon-beauty" / f"amazon-beauty.{suffix}", root / "amazon-beauty")
    return root


def check(data_root, dataset="amazon-beauty", **config):
    from recbole_faerec.data import check_atomic_files
    from recbole_faerec.quick_start import build_config

    check_atomic_files(build_config("SASRec", dataset, config_dict={"data_path": str(data_root),
                                                                    **config}))


def rewrite_line(path, lineno, edit):
    lines = path.read_text().splitlines()
    lines[lineno - 1] = edit(lines[lineno - 1])
    path.write_text("\n".join(lines) + "\n")


def test_cli_unknown_model(tmp_path):
    proc = run_py([ENTRY, "--model=SASRecc", "--dataset=ml-100k"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: Unknown model 'SASRecc'")
    assert "Close names: SASRec," in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_model_wrong_case_suggests_class_name():
    from recbole_faerec.utils import ModelNotFoundError, get_model

    with pytest.raises(ModelNotFoundError, match="did you mean 'SASRec'"):
        get_model("sasrec")


def test_cli_unknown_dataset(tmp_path):
    proc = run_py([ENTRY, "--model=SASRec", "--dataset=amazon-beuty", f"--data_path={tmp_path}"],
                  cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "Dataset 'amazon-beuty' not found" in last and str(tmp_path / "amazon-beuty") in last
    assert "prepare_dataset.py --dataset amazon-beuty" in last


def test_missing_inter_file(beauty_copy):
    (beauty_copy / "amazon-beauty" / "amazon-beauty.inter").unlink()
    with pytest.raises(Exception, match=r"amazon-beauty\.inter does not exist"):
        check(beauty_copy)


def test_missing_item_file_that_load_col_asks_for(beauty_copy):
    (beauty_copy / "amazon-beauty" / "amazon-beauty.item").unlink()
    with pytest.raises(Exception, match=r"amazon-beauty\.item does not exist, but 'load_col' asks"):
        check(beauty_copy)
    check(beauty_copy, load_col={"inter": ["user_id", "item_id", "timestamp"]})  # fine without


def test_malformed_line_names_file_and_line(beauty_copy, tmp_path):
    inter = beauty_copy / "amazon-beauty" / "amazon-beauty.inter"
    rewrite_line(inter, 57, lambda line: line + "\textra")
    with pytest.raises(Exception, match=r"amazon-beauty\.inter, line 57: 4 fields, but the header has 3"):
        check(beauty_copy)
    # Through the entry point: exit status 2 and the same one-line reason.
    proc = run_py([ENTRY, "--model=SASRec", "--dataset=amazon-beauty", f"--data_path={beauty_copy}"],
                  cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "amazon-beauty.inter, line 57" in proc.stderr


def test_non_numeric_float_field(beauty_copy):
    inter = beauty_copy / "amazon-beauty" / "amazon-beauty.inter"
    rewrite_line(inter, 3, lambda line: line.rsplit("\t", 1)[0] + "\tyesterday")
    with pytest.raises(Exception, match=r"line 3: field 'timestamp' is declared float but holds 'yesterday'"):
        check(beauty_copy)


def test_bad_header(beauty_copy):
    item = beauty_copy / "amazon-beauty" / "amazon-beauty.item"
    rewrite_line(item, 1, lambda line: line.replace("title:token_seq", "title:text"))
    with pytest.raises(Exception, match=r"amazon-beauty\.item, line 1 \(header\), column 2: 'title:text'"):
        check(beauty_copy)


def test_load_col_field_missing_from_header(beauty_copy):
    with pytest.raises(Exception, match=r"load_col asks for \['brand'\]"):
        check(beauty_copy, load_col={"inter": ["user_id", "item_id"], "item": ["item_id", "brand"]})


def test_item_without_item_row_is_named(beauty_copy):
    item = beauty_copy / "amazon-beauty" / "amazon-beauty.item"
    lines = item.read_text().splitlines()
    removed = [lines.pop(10).split("\t")[0], lines.pop(20).split("\t")[0]]
    item.write_text("\n".join(lines) + "\n")
    with pytest.raises(Exception) as err:
        check(beauty_copy)
    message = str(err.value)
    assert "2 item(s) have no row in amazon-beauty.item" in message
    assert all(asin in message for asin in removed)


def test_converted_real_data_passes(amazon_beauty):
    check(amazon_beauty)
