"""Tests for ``dataset_scripts/prepare_dataset.py``.

The three shared datasets (``../shared/datasets``) are converted once per module and checked
against the numbers in their README and against independent look-ups in the source files.  The
raw Amazon 2014/2018 formats are checked on small hand-written samples in the exact formats of
the public dumps (``tests/data/amazon2014``, ``tests/data/amazon2018``), run through the CLI.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_scripts import prepare_dataset as pd_mod

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "dataset_scripts" / "prepare_dataset.py"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
FIXTURES = Path(__file__).resolve().parent / "data"

AMAZON_ITEM_HEADER = [
    "item_id:token",
    "title:token_seq",
    "brand:token_seq",
    "categories:token_seq",
    "description:token_seq",
    "price:float",
]
INTER_HEADER = ["user_id:token", "item_id:token", "timestamp:float"]


def shared_dir(name: str) -> Path:
    """The shared dataset folder ``name``, or skip the test when it is not there."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"shared dataset {path} not found (expected at ../shared/datasets from the repo root)")
    return path


def read_atomic(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header fields and rows of an atomic file, split on tabs (no quoting logic)."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the script as a user would (fresh interpreter, repo root as working directory)."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def gzip_fixture(name: str, dest: Path) -> Path:
    """Gzip every file of ``tests/data/<name>`` into ``dest`` (the dumps come as ``.json.gz``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted((FIXTURES / name).iterdir()):
        with open(src, "rb") as fin, gzip.open(dest / (src.name + ".gz"), "wb") as fout:
            shutil.copyfileobj(fin, fout)
    return dest


def first_word(title: str) -> str | None:
    words = title.split()
    return words[0].lower() if words else None


# --------------------------------------------------------------------------- #
# Shared datasets
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def beauty(tmp_path_factory):
    source = shared_dir("amazon-beauty")
    out = tmp_path_factory.mktemp("beauty")
    stats = pd_mod.prepare("amazon-beauty", source, out)
    return source, out / "amazon-beauty", stats


def test_beauty_counts_and_headers(beauty):
    _, out, stats = beauty
    assert (stats["users"], stats["items"], stats["interactions"]) == (22363, 12101, 198502)
    assert stats["min_seq_len"] == 5 and stats["max_seq_len"] == 204
    assert stats["avg_seq_len"] == pytest.approx(198502 / 22363, abs=1e-4)
    assert stats["empty_count"] == {"title": 7}
    assert stats["non_empty_share"]["title"] == pytest.approx(1 - 7 / 12101, abs=1e-6)
    assert json.loads((out / "amazon-beauty.stats.json").read_text()) == stats

    inter_header, inter = read_atomic(out / "amazon-beauty.inter")
    item_header, items = read_atomic(out / "amazon-beauty.item")
    assert inter_header == INTER_HEADER
    assert item_header == ["item_id:token", "title:token_seq"]
    assert len(inter) == 198502 and len({r[0] for r in inter}) == 22363
    assert all(len(r) == 3 for r in inter) and all(len(r) == 2 for r in items)
    # every interacted item exactly once, in order of first appearance
    assert [r[0] for r in items] == list(dict.fromkeys(r[1] for r in inter))
    assert sum(1 for r in items if r[1] == "") == 7
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_beauty_order_matches_p5_file(beauty):
    source, out, _ = beauty
    id2item = json.loads((source / "p5_datamaps.json").read_text())["id2item"]
    expected = []
    for line in (source / "p5_sequential_data.txt").read_text().splitlines():
        if line.strip():
            uid, *ids = line.split()
            expected.extend([uid, id2item[i], str(pos)] for pos, i in enumerate(ids))
    _, inter = read_atomic(out / "amazon-beauty.inter")
    assert inter == expected


def test_beauty_titles_join_on_global_product_id(beauty):
    source, out, _ = beauty
    _, inter = read_atomic(out / "amazon-beauty.inter")
    _, items = read_atomic(out / "amazon-beauty.item")
    title = dict(items)

    # Known item, looked up by hand in the source files: p5 id 1 -> B004756YJA -> 9947.
    assert title["B004756YJA"] == "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce"

    # Independent look-up of another item (last item of the last user) straight from the files.
    id2item = json.loads((source / "p5_datamaps.json").read_text())["id2item"]
    asin_to_int = json.loads((source / "dh_item_id_to_int.json").read_text())
    last_line = (source / "p5_sequential_data.txt").read_text().split()[-1]
    asin = id2item[last_line]
    with open(source / "dh_products_lookup.csv", newline="", encoding="utf-8") as f:
        names = {int(r["global_product_id"]): r["name"] for r in csv.DictReader(f)}
    assert title[asin] == " ".join(names[asin_to_int[asin]].split())

    # README check: with the right join, consecutive items share a first title word ~11%
    # of the time (0.3% with the wrong, index-column join).
    pairs = [(a[1], b[1]) for a, b in zip(inter, inter[1:]) if a[0] == b[0]]
    same = sum(1 for a, b in pairs if first_word(title[a]) and first_word(title[a]) == first_word(title[b]))
    assert same / len(pairs) > 0.05


def test_scientific(tmp_path):
    source = shared_dir("amazon-scientific")
    stats = pd_mod.prepare("amazon-scientific", source, tmp_path)
    assert (stats["users"], stats["items"], stats["interactions"]) == (8317, 4344, 58492)
    assert stats["item_fields"] == ["title", "brand", "categories", "description"]
    assert stats["empty_count"]["description"] == 123
    assert stats["empty_count"]["title"] == 0

    out = tmp_path / "amazon-scientific"
    inter_header, inter = read_atomic(out / "amazon-scientific.inter")
    item_header, items = read_atomic(out / "amazon-scientific.item")
    assert inter_header == INTER_HEADER
    assert item_header == [
        "item_id:token", "title:token_seq", "brand:token_seq", "categories:token_seq", "description:token_seq"
    ]
    assert len(items) == 4344 and all(len(r) == 5 for r in items)
    assert sum(1 for r in items if r[4] == "") == 123

    # rows follow the JSON exactly: user index, item index, position
    seqs = json.loads((source / "Scientific.inter.json").read_text())
    expected = [[u, str(i), str(p)] for u, seq in seqs.items() for p, i in enumerate(seq)]
    assert inter == expected
    meta = json.loads((source / "Scientific.item.json").read_text())
    row = dict((r[0], r) for r in items)["0"]
    fields = ("title", "brand", "categories", "description")
    assert row[1:] == [" ".join(meta["0"][f].split()) for f in fields]


def test_beauty_large_ids(tmp_path, capsys):
    source = shared_dir("beauty-large-ids")
    out = tmp_path / "beauty-large-ids"
    out.mkdir()
    (out / "beauty-large-ids.item").write_text("item_id:token\tstale\n")  # from an earlier run
    stats = pd_mod.prepare("beauty-large-ids", source, tmp_path)
    assert (stats["users"], stats["items"], stats["interactions"]) == (52204, 57289, 394908)
    assert stats["item_fields"] == [] and stats["non_empty_share"] == {}
    printed = capsys.readouterr().out
    assert "no .item" in printed
    assert not (out / "beauty-large-ids.item").exists()
    header, rows = read_atomic(out / "beauty-large-ids.inter")
    assert header == INTER_HEADER and len(rows) == 394908
    first = (source / "Beauty.txt").read_text().split("\n", 1)[0].split()
    assert rows[: len(first) - 1] == [[first[0], i, str(p)] for p, i in enumerate(first[1:])]


# --------------------------------------------------------------------------- #
# Raw Amazon dumps (hand-written samples in the real formats)
# --------------------------------------------------------------------------- #

EXPECTED_2014_INTER = [
    # user A: earliest first; two reviews at the same second keep the file order (lines 1, 3)
    ["A2V5R832QCSOMX", "B00006L9LC", "1325203200"],
    ["A2V5R832QCSOMX", "B00004TMFE", "1391040000"],
    ["A2V5R832QCSOMX", "B0000530HU", "1391040000"],
    ["A3NHUQ33CFH3VM", "B00006L9LC", "1355097600"],
    ["A3NHUQ33CFH3VM", "B00004TMFE", "1360540800"],
    ["A1Z54EM24Y40LL", "B0000530HU", "1279238400"],
    ["A1Z54EM24Y40LL", "B00008MOQA", "1279238400"],
    ["A1Z54EM24Y40LL", "B0000ZKPDG", "1300000000"],
    ["AKJHHD5VEH7VG", "B0000ZKPDG", "1404604800"],
    ["AKJHHD5VEH7VG", "B00008MOQA", "1404691200"],
]
EXPECTED_2014_ITEM = [
    ["B00006L9LC", "", "", "", "", ""],  # reviewed, but no meta row
    [
        "B00004TMFE",
        "L'Oreal Paris Men's Expert Vita Lift SPF 15 Anti-Wrinkle & Firming Moisturizer, 1.6 Fluid Ounce",
        "L'Oreal Paris",
        "Beauty, Skin Care, Face, Creams & Moisturizers",  # first of two category paths
        "Fights wrinkles. Firms skin. Non-greasy formula with SPF 15.",
        "7.97",
    ],
    [  # no brand, no price in the meta row
        "B0000530HU",
        "Citre Shine Moisture Burst Shine Spray, 4 Ounce",
        "",
        "Beauty, Hair Care, Styling Products, Sprays",
        "Citre Shine Moisture Burst Shine Spray adds brilliant shine.",
        "",
    ],
    [  # a title that starts with a double quote is written CSV-quoted (see the pandas test)
        "B00008MOQA",
        '"""Flower Bomb"" by Viktor & Rolf Eau de Parfum Spray 1.7 oz"',
        "Viktor & Rolf",
        "Beauty, Fragrance, Women's, Eau de Parfum",
        "A floral explosion.",
        "98",
    ],
    [
        "B0000ZKPDG",
        "Revlon Nail Enamel, Cherries in the Snow 440, 0.5 Ounce",
        "Revlon",
        "Beauty, Makeup, Nails, Nail Polish",
        "",
        "4.5",
    ],
]
EXPECTED_2018_INTER = [
    ["A1Q6MUU0B2ZDQG", "B00006IGL2", "1200000000"],
    ["A1Q6MUU0B2ZDQG", "B00004U9V2", "1276560000"],  # tie: file line 1 ...
    ["A1Q6MUU0B2ZDQG", "B00005A77F", "1276560000"],  # ... before file line 3
    ["A3HO2SQDCZIE9S", "B00006IGL2", "1230000000"],
    ["A3HO2SQDCZIE9S", "B00004U9V2", "1262822400"],
    ["A2EM03F99X3RJZ", "B00005NDTD", "1453507200"],
    ["A2EM03F99X3RJZ", "B0000ALRK3", "1453507200"],
    ["A3Z74TDRGD0HU", "B00005A77F", "1499000000"],
    ["A3Z74TDRGD0HU", "B0000ALRK3", "1500000000"],
]
EXPECTED_2018_ITEM = [
    ["B00006IGL2", "", "", "", "", ""],  # reviewed, but no meta row
    [
        "B00004U9V2",
        "Crabtree &amp; Evelyn - Gardener's Ultra-Moisturising Hand Therapy Pump - 250g/8.8 OZ",
        "Crabtree &amp; Evelyn",
        "Beauty & Personal Care, Skin Care, Hands & Nails, Hand Creams & Lotions",
        "After a long day of handling thorny situations, our new hand therapy pump is just the help "
        "you need. Scented with rose and geranium.",
        "12.99",  # "$12.99"; the later duplicated row ("$99.99") is ignored
    ],
    ["B00005A77F", "OPI Nail Lacquer, Big Apple Red", "OPI", "", "", ""],  # price range -> empty
    ["B00005NDTD", "Mystery Serum", "", "Beauty & Personal Care, Skin Care", "Serum.", ""],
    [
        "B0000ALRK3",
        'Conair 8" Ceramic Round Brush',
        "Conair",
        "Beauty & Personal Care, Hair Care, Styling Tools",
        "A brush.",
        "1299",  # "$1,299.00"
    ],
]


@pytest.mark.parametrize(
    ("fmt", "fixture", "category", "expected_inter", "expected_item", "asins"),
    [
        ("amazon2014", "amazon2014", "Beauty", EXPECTED_2014_INTER, EXPECTED_2014_ITEM,
         ("B00006L9LC", "B00012BWDY", "B00004TMFE")),
        ("amazon2018", "amazon2018", "Luxury_Beauty", EXPECTED_2018_INTER, EXPECTED_2018_ITEM,
         ("B00006IGL2", "B0000Y3KS6", "B00004U9V2")),
    ],
)
def test_amazon_raw_cli(tmp_path, fmt, fixture, category, expected_inter, expected_item, asins):
    source = gzip_fixture(fixture, tmp_path / "src")
    result = run_cli(
        "--dataset", "sample", "--source", str(source), "--data_path", str(tmp_path / "out"),
        "--format", fmt, "--category", category,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out" / "sample"
    inter_header, inter = read_atomic(out / "sample.inter")
    item_header, items = read_atomic(out / "sample.item")
    assert inter_header == INTER_HEADER and inter == expected_inter
    assert item_header == AMAZON_ITEM_HEADER and items == expected_item

    no_meta, unreviewed, duplicated = asins
    assert f"1 of 5 item(s) have no metadata in meta_{category}.json.gz" in result.stdout
    assert no_meta in result.stdout
    assert "1 metadata row(s)" in result.stdout and "without interactions; skipped" in result.stdout
    assert f"1 duplicated metadata row(s) in meta_{category}.json.gz" in result.stdout
    assert duplicated in result.stdout
    assert unreviewed not in (out / "sample.item").read_text()

    stats = json.loads((out / "sample.stats.json").read_text())
    assert (stats["users"], stats["items"], stats["interactions"]) == (4, 5, len(expected_inter))
    assert stats["empty_count"]["title"] == 1

    # Same result from the plain (non-gzipped) files, with the category inferred.
    result = run_cli("--dataset", "plain", "--source", str(FIXTURES / fixture),
                     "--data_path", str(tmp_path / "out"), "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert read_atomic(tmp_path / "out" / "plain" / "plain.inter")[1] == expected_inter
    assert read_atomic(tmp_path / "out" / "plain" / "plain.item")[1] == expected_item


def test_item_file_reads_back_exactly_as_recbole_reads_it(tmp_path):
    """RecBole loads atomic files with ``pd.read_csv(sep='\\t', engine='python')``."""
    pandas = pytest.importorskip("pandas")
    pd_mod.prepare("sample", FIXTURES / "amazon2014", tmp_path, fmt="amazon2014")
    df = pandas.read_csv(tmp_path / "sample" / "sample.item", delimiter="\t", dtype=str, engine="python")
    titles = dict(zip(df["item_id:token"], df["title:token_seq"].fillna("")))
    assert titles["B00008MOQA"] == '"Flower Bomb" by Viktor & Rolf Eau de Parfum Spray 1.7 oz'
    assert len(df) == 5


def test_kcore_filter_renumbers_positions():
    rows = [pd_mod.Interaction(u, i, float(p)) for u, seq in
            [("u1", "abc"), ("u2", "ab"), ("u3", "ad")] for p, i in enumerate(seq)]
    data = pd_mod.ConvertedDataset(rows, ordinal_timestamps=True)
    kept = pd_mod.kcore_filter(data, min_user_inter=2, min_item_inter=2).interactions
    # c and d occur once; dropping them leaves u3 with one item, so u3 goes too.
    assert [tuple(r) for r in kept] == [
        ("u1", "a", 0.0), ("u1", "b", 1.0), ("u2", "a", 0.0), ("u2", "b", 1.0)
    ]


def test_write_atomic_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "x.inter"
    target.write_text("old\n")

    def lines():
        yield "new\n"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        pd_mod.write_atomic(target, lines())
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.inter"]


def test_parse_price_and_clean_text():
    assert pd_mod.parse_price("$12.99") == 12.99
    assert pd_mod.parse_price("$1,299.00") == 1299.0
    assert pd_mod.parse_price("$10.99 - $15.99") is None
    assert pd_mod.parse_price("") is None
    assert pd_mod.parse_price(7.5) == 7.5
    assert pd_mod.clean_text(" a\tb\r\nc   d ") == "a b c d"
    assert pd_mod.clean_text(["x\ny", "", "z"], ", ") == "x y, z"


# --------------------------------------------------------------------------- #
# Bad input
# --------------------------------------------------------------------------- #


def test_missing_source_dir(tmp_path):
    with pytest.raises(SystemExit) as exc:
        pd_mod.main(["--dataset", "x", "--source", str(tmp_path / "nope"), "--data_path",
                     str(tmp_path), "--format", "ids"])
    assert str(tmp_path / "nope") in str(exc.value) and "--source" in str(exc.value)


def test_missing_source_file(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(FIXTURES / "amazon2018" / "Luxury_Beauty_5.json", source)
    with pytest.raises(SystemExit) as exc:
        pd_mod.main(["--dataset", "x", "--source", str(source), "--data_path", str(tmp_path / "out"),
                     "--format", "amazon2018", "--category", "Luxury_Beauty"])
    assert "meta_Luxury_Beauty.json.gz" in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_unknown_dataset_needs_format(tmp_path):
    result = run_cli("--dataset", "my-data", "--source", str(tmp_path), "--data_path", str(tmp_path))
    assert result.returncode != 0
    assert "my-data" in result.stderr and "--format" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_json_line_names_file_and_line(tmp_path):
    source = gzip_fixture("amazon2018", tmp_path / "src")
    lines = (FIXTURES / "amazon2018" / "Luxury_Beauty_5.json").read_text().splitlines(keepends=True)
    lines[2] = lines[2][:40] + "\n"  # truncated JSON object on line 3
    with gzip.open(source / "Luxury_Beauty_5.json.gz", "wt", encoding="utf-8") as f:
        f.writelines(lines)
    result = run_cli("--dataset", "x", "--source", str(source), "--data_path", str(tmp_path / "out"),
                     "--format", "amazon2018", "--category", "Luxury_Beauty")
    assert result.returncode != 0
    assert "Luxury_Beauty_5.json.gz, line 3" in result.stderr and "malformed JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "x" / "x.inter").exists()


def test_malformed_2014_meta_line(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(FIXTURES / "amazon2014", source)
    meta = source / "meta_Beauty.json"
    lines = meta.read_text().splitlines(keepends=True)
    lines[1] = "{'asin': 'B0000530HU', 'title': 'unterminated}\n"
    meta.write_text("".join(lines))
    with pytest.raises(pd_mod.PrepareError, match=r"meta_Beauty\.json, line 2"):
        pd_mod.prepare("x", source, tmp_path / "out", fmt="amazon2014")
