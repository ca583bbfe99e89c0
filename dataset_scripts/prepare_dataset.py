#!/usr/bin/env python3
"""Convert public sequential-recommendation data into RecBole atomic files.

Usage::

    python dataset_scripts/prepare_dataset.py --dataset NAME --source DIR \\
        --data_path DIR [--format FMT] [--category CAT]

The script writes ``DATA_PATH/NAME/NAME.inter`` (and, when the source has item
text, ``DATA_PATH/NAME/NAME.item``) in RecBole's atomic-file format, plus
``DATA_PATH/NAME/NAME.stats.json`` with the dataset statistics.  Every file is
written to a temporary file in the same directory first and then moved into
place with :func:`os.replace`, so a half-written file is never visible.

Supported source formats (``--format``):

``p5``
    The P5 / LLM-RecSys-ID Beauty split (``p5_sequential_data.txt`` +
    ``p5_datamaps.json``) joined to titles through the
    dh-r/LLM-Sequential-Recommendation files (``dh_item_id_to_int.json`` +
    ``dh_products_lookup.csv``).
``lcrec``
    LC-Rec style JSON (``<CAT>.inter.json`` + ``<CAT>.item.json``).
``ids``
    Plain id sequences, one user per line (``<CAT>.txt``); no item text.
``amazon2014``
    McAuley's 2014 Amazon dumps (``reviews_<CAT>_5.json.gz`` + ``meta_<CAT>.json.gz``).
``amazon2018``
    McAuley's 2018 Amazon dumps (``<CAT>_5.json.gz`` + ``meta_<CAT>.json.gz``).

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import json
import math
import os
import re
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

FORMATS: tuple[str, ...] = ("p5", "lcrec", "ids", "amazon2014", "amazon2018")
"""All accepted values of ``--format``."""

KNOWN_DATASETS: dict[str, str] = {
    "amazon-beauty": "p5",
    "amazon-scientific": "lcrec",
    "beauty-large-ids": "ids",
}
"""Dataset names whose format is inferred when ``--format`` is not given."""

INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float"

FieldValue = str | float | None
"""Value of one item field: text (``""`` when empty) or a number (``None`` when missing)."""

_MAX_EXAMPLES = 5


class PrepareError(Exception):
    """A problem with the input data or the arguments, reported without a traceback."""


class Interaction(NamedTuple):
    """One user-item interaction (one row of the ``.inter`` file)."""

    user: str
    item: str
    timestamp: float


class ItemField(NamedTuple):
    """One column of the ``.item`` file (besides ``item_id``)."""

    name: str
    type: str  # RecBole feature type: "token_seq" for text, "float" for numbers


@dataclass
class ConvertedDataset:
    """In-memory result of one converter, ready for :func:`write_atomic_files`.

    Attributes:
        interactions: rows grouped by user (users in order of first appearance),
            each user's rows in chronological order.
        item_fields: the columns of the ``.item`` file after ``item_id``.
        items: item token -> {field name -> value}; ``None`` when the source has
            no item side information (no ``.item`` file is written then).
        ordinal_timestamps: ``True`` when the timestamps are positions in the
            user's sequence (0, 1, 2, ...) rather than real times.
        notes: human-readable remarks about the conversion (printed by :func:`prepare`).
    """

    interactions: list[Interaction]
    item_fields: tuple[ItemField, ...] = ()
    items: dict[str, dict[str, FieldValue]] | None = None
    ordinal_timestamps: bool = False
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- #
# Small helpers
# --------------------------------------------------------------------------- #


def clean_text(value: Any, list_separator: str = " ") -> str:
    """Return ``value`` as one line of text.

    Tabs, carriage returns, newlines and every other run of whitespace become a
    single space and the result is stripped; nothing else is changed (no
    truncation, HTML entities are kept).  ``None`` gives ``""``; lists are
    flattened and their non-empty parts joined with ``list_separator``.
    """
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        parts = (clean_text(part, list_separator) for part in value)
        return list_separator.join(part for part in parts if part)
    return " ".join(str(value).split())


def parse_price(value: Any) -> float | None:
    """Parse a price: numbers are kept, ``"$1,299.99"`` gives 1299.99.

    Ranges (``"$10.99 - $15.99"``), empty strings and anything else that is not a
    single amount give ``None``.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        match = re.fullmatch(r"\$?\s*(\d[\d,]*(?:\.\d+)?)", value.strip())
        if match:
            return float(match.group(1).replace(",", ""))
    return None


def _format_number(value: float) -> str:
    """Format a float for an atomic file (integral values without ``.0``)."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _format_field(value: FieldValue) -> str:
    """Format one field of an atomic file.

    RecBole reads atomic files with ``pandas.read_csv`` (default quoting), which
    treats a field that *starts* with ``"`` as a quoted field.  Such a field is
    therefore written CSV-quoted (``"`` doubled) so that it reads back unchanged;
    every other value is written as is.
    """
    if value is None:
        return ""
    if isinstance(value, float):
        return _format_number(value)
    text = str(value)
    if text.startswith('"'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _examples(values: Iterable[str]) -> str:
    """Return up to a few values for a message, e.g. ``"A, B, C, ..."``."""
    values = list(values)
    shown = ", ".join(values[:_MAX_EXAMPLES])
    return shown + (", ..." if len(values) > _MAX_EXAMPLES else "")


def _check_token(value: Any, what: str, where: str) -> str:
    """Validate a user or item token (non-empty string without whitespace)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        raise PrepareError(
            f"{where}: {what} must be a non-empty string without whitespace, got {value!r}. "
            "Fix or remove that entry and run again."
        )
    return value


def require_dir(source: Path) -> Path:
    """Return ``source`` if it is a directory, else raise :class:`PrepareError`."""
    if not source.is_dir():
        raise PrepareError(
            f"source directory {source} does not exist (or is not a directory). "
            "Pass --source DIR pointing at the folder that holds the downloaded files."
        )
    return source


def require_file(source: Path, *names: str) -> Path:
    """Return the first of ``source/name`` that exists, else raise :class:`PrepareError`."""
    for name in names:
        path = source / name
        if path.is_file():
            return path
    tried = " or ".join(str(source / name) for name in names)
    raise PrepareError(
        f"missing source file: {tried}. Download it into {source} (or pass the right "
        "--source / --category / --format) and run again."
    )


CATEGORY_PATTERNS: dict[str, tuple[str, str]] = {
    "lcrec": (r"(.+)\.inter\.json", "<CAT>.inter.json"),
    "ids": (r"(.+)\.txt", "<CAT>.txt"),
    "amazon2014": (r"reviews_(.+)_5\.json(?:\.gz)?", "reviews_<CAT>_5.json.gz"),
    "amazon2018": (r"(?!reviews_)(.+)_5\.json(?:\.gz)?", "<CAT>_5.json.gz"),
}
"""Per format: file-name regex (group 1 is the category) and its readable form."""


def detect_category(source: Path, fmt: str) -> str:
    """Infer ``--category`` from the single matching file name in ``source``."""
    pattern, readable = CATEGORY_PATTERNS[fmt]
    found: dict[str, str] = {}
    for path in sorted(source.iterdir()):
        match = re.fullmatch(pattern, path.name)
        if match and path.is_file():
            found.setdefault(match.group(1), path.name)
    if len(found) == 1:
        return next(iter(found))
    if not found:
        raise PrepareError(
            f"no {readable} file in {source} for --format {fmt}. Check --source and --format, "
            "or pass --category CAT if the files are named differently."
        )
    raise PrepareError(
        f"several {readable} files in {source} ({_examples(found.values())}); "
        "pass --category CAT to pick one."
    )


def _open_text(path: Path) -> TextIO:
    """Open a UTF-8 text file, transparently decompressing ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for the non-blank lines of a (gzipped) text file.

    Line numbers are 1-based and count blank lines.  Decoding and decompression
    errors are turned into :class:`PrepareError` naming the file and line.
    """
    lineno = 0
    try:
        with _open_text(path) as handle:
            for lineno, line in enumerate(handle, start=1):
                if line.strip():
                    yield lineno, line
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise PrepareError(
            f"{path}, line {lineno + 1}: cannot read the file ({exc}). The file is "
            "probably truncated or corrupt: download it again."
        ) from exc


def load_json_file(path: Path) -> Any:
    """Load a JSON document, turning syntax errors into :class:`PrepareError`."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise PrepareError(
            f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg}). "
            "Fix the file or download it again."
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PrepareError(f"{path}: cannot read the file ({exc}).") from exc


def _parse_json_line(path: Path, lineno: int, line: str) -> dict[str, Any]:
    """Parse one strict-JSON line holding an object."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PrepareError(
            f"{path}, line {lineno}: malformed JSON at column {exc.colno} ({exc.msg}). "
            "Fix or remove that line (or download the file again) and run again."
        ) from exc
    if not isinstance(obj, dict):
        raise PrepareError(
            f"{path}, line {lineno}: expected a JSON object, got {type(obj).__name__}. "
            "Fix or remove that line and run again."
        )
    return obj


def _parse_python_dict_line(path: Path, lineno: int, line: str) -> dict[str, Any]:
    """Parse one line of the 2014 metadata: a Python dict literal (strict JSON accepted too)."""
    try:
        obj = ast.literal_eval(line.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise PrepareError(
                f"{path}, line {lineno}: malformed metadata line, neither a Python dict "
                f"literal nor JSON ({type(exc).__name__}: {exc}). Fix or remove that line "
                "(or download the file again) and run again."
            ) from exc
    if not isinstance(obj, dict):
        raise PrepareError(
            f"{path}, line {lineno}: expected a dict, got {type(obj).__name__}. "
            "Fix or remove that line and run again."
        )
    return obj


def _ordinal(user: str, items: Sequence[str]) -> list[Interaction]:
    """Interactions of one user with timestamps 0, 1, 2, ... (sequence positions)."""
    return [Interaction(user, item, float(pos)) for pos, item in enumerate(items)]


def _items_in_order(interactions: Iterable[Interaction]) -> list[str]:
    """Item tokens in order of first appearance."""
    return list(dict.fromkeys(inter.item for inter in interactions))


def attach_items(
    interactions: list[Interaction],
    meta: dict[str, dict[str, FieldValue]],
    item_fields: Sequence[ItemField],
    meta_label: str,
    notes: list[str],
) -> dict[str, dict[str, FieldValue]]:
    """Build the item table for every interacted item, in order of first appearance.

    Items without a ``meta`` entry are kept with empty values; meta entries for
    items without interactions are skipped.  Both counts are added to ``notes``.
    """
    empty: dict[str, FieldValue] = {
        f.name: (None if f.type == "float" else "") for f in item_fields
    }
    items: dict[str, dict[str, FieldValue]] = {}
    missing: list[str] = []
    for item in _items_in_order(interactions):
        row = meta.get(item)
        if row is None:
            missing.append(item)
            row = empty
        items[item] = {f.name: row.get(f.name, empty[f.name]) for f in item_fields}
    if missing:
        notes.append(
            f"{len(missing)} of {len(items)} item(s) have no metadata in {meta_label}; "
            f"kept with empty text (e.g. {_examples(missing)})"
        )
    unused = [key for key in meta if key not in items]
    if unused:
        notes.append(
            f"{len(unused)} metadata row(s) in {meta_label} describe items without "
            f"interactions; skipped (e.g. {_examples(unused)})"
        )
    return items


def read_id_sequences(path: Path) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Read ``uid iid iid ...`` lines (chronological) into ``[(uid, [iid, ...])]``.

    Returns the sequences in file order and notes (users with no items are
    skipped and counted).  A user id that occurs on two lines is an error.
    """
    sequences: list[tuple[str, list[str]]] = []
    first_line: dict[str, int] = {}
    empty_users: list[str] = []
    for lineno, line in iter_lines(path):
        user, *items = line.split()
        if user in first_line:
            raise PrepareError(
                f"{path}, line {lineno}: user {user!r} already appeared on line "
                f"{first_line[user]}; each user must have exactly one line. Merge the two lines."
            )
        first_line[user] = lineno
        if not items:
            empty_users.append(user)
            continue
        sequences.append((user, items))
    notes = []
    if empty_users:
        notes.append(
            f"{len(empty_users)} users in {path.name} have no items; skipped "
            f"(e.g. {_examples(empty_users)})"
        )
    return sequences, notes


# --------------------------------------------------------------------------- #
# Converters (one per format)
# --------------------------------------------------------------------------- #


def convert_p5(source: Path) -> ConvertedDataset:
    """Convert the P5 Beauty split, joining titles via the dh-r lookup files.

    Join: sequence item id -> ASIN (``p5_datamaps.json["id2item"]``) -> integer
    (``dh_item_id_to_int.json``) -> the row of ``dh_products_lookup.csv`` whose
    ``global_product_id`` equals it -> ``name``.  The unnamed first column of the
    CSV is a row index and is deliberately not used.  Tokens: user = P5 uid,
    item = ASIN; timestamps are sequence positions.
    """
    require_dir(source)
    seq_path = require_file(source, "p5_sequential_data.txt")
    maps_path = require_file(source, "p5_datamaps.json")
    int_path = require_file(source, "dh_item_id_to_int.json")
    lookup_path = require_file(source, "dh_products_lookup.csv")

    datamaps = load_json_file(maps_path)
    id2item = datamaps.get("id2item") if isinstance(datamaps, dict) else None
    if not isinstance(id2item, dict):
        raise PrepareError(f"{maps_path}: no 'id2item' mapping found; is this a P5 datamaps.json?")
    asin_to_int = load_json_file(int_path)
    if not isinstance(asin_to_int, dict):
        raise PrepareError(f"{int_path}: expected a JSON object mapping ASIN -> integer.")

    titles: dict[int, str] = {}
    duplicated_ids = 0
    try:
        with open(lookup_path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"global_product_id", "name"} <= set(reader.fieldnames):
                raise PrepareError(
                    f"{lookup_path}, line 1: header must contain 'global_product_id' and "
                    f"'name', got {reader.fieldnames}."
                )
            for row in reader:
                try:
                    product_id = int(row["global_product_id"])
                except (TypeError, ValueError) as exc:
                    raise PrepareError(
                        f"{lookup_path}, line {reader.line_num}: global_product_id "
                        f"{row['global_product_id']!r} is not an integer. Fix that line."
                    ) from exc
                if product_id in titles:
                    duplicated_ids += 1
                    continue
                titles[product_id] = clean_text(row["name"])
    except csv.Error as exc:
        raise PrepareError(f"{lookup_path}: malformed CSV ({exc}).") from exc

    notes: list[str] = []
    if duplicated_ids:
        notes.append(
            f"{duplicated_ids} duplicated global_product_id rows in {lookup_path.name}; "
            "the first one was kept"
        )

    sequences, seq_notes = read_id_sequences(seq_path)
    notes.extend(seq_notes)
    interactions: list[Interaction] = []
    for user, seq in sequences:
        asins = []
        for item_id in seq:
            asin = id2item.get(item_id)
            if not isinstance(asin, str):
                raise PrepareError(
                    f"{seq_path}: item id {item_id!r} of user {user!r} is not in "
                    f"{maps_path.name} id2item; the two files do not belong together."
                )
            asins.append(asin)
        interactions.extend(_ordinal(user, asins))

    item_fields = (ItemField("title", "token_seq"),)
    meta: dict[str, dict[str, FieldValue]] = {}
    for asin, product_id in asin_to_int.items():
        if isinstance(product_id, int) and product_id in titles:
            meta[asin] = {"title": titles[product_id]}
    items = attach_items(
        interactions, meta, item_fields, f"{int_path.name} + {lookup_path.name}", notes
    )
    return ConvertedDataset(interactions, item_fields, items, ordinal_timestamps=True, notes=notes)


def convert_lcrec(source: Path, category: str | None = None) -> ConvertedDataset:
    """Convert LC-Rec style JSON (``<CAT>.inter.json`` + ``<CAT>.item.json``).

    ``<CAT>.inter.json`` maps a user index to the chronological list of 0-based
    item indices; ``<CAT>.item.json`` maps an item index to
    ``{title, description, brand, categories}``.  Tokens are the indices as
    strings; timestamps are sequence positions.
    """
    require_dir(source)
    if category is None:
        category = detect_category(source, "lcrec")
    inter_path = require_file(source, f"{category}.inter.json")
    item_path = require_file(source, f"{category}.item.json")

    inter = load_json_file(inter_path)
    if not isinstance(inter, dict):
        raise PrepareError(f"{inter_path}: expected a JSON object (user index -> item list).")
    notes: list[str] = []
    interactions: list[Interaction] = []
    empty_users: list[str] = []
    for user_key, seq in inter.items():
        where = f"{inter_path}, user {user_key!r}"
        user = _check_token(user_key, "user index", where)
        if not isinstance(seq, list):
            raise PrepareError(f"{where}: expected a list of item indices, got {type(seq).__name__}.")
        if not seq:
            empty_users.append(user)
            continue
        items = [_check_token(i, "item index", where) for i in seq]
        interactions.extend(_ordinal(user, items))
    if empty_users:
        notes.append(f"{len(empty_users)} users have no items; skipped (e.g. {_examples(empty_users)})")

    raw_items = load_json_file(item_path)
    if not isinstance(raw_items, dict):
        raise PrepareError(f"{item_path}: expected a JSON object (item index -> fields).")
    item_fields = tuple(
        ItemField(name, "token_seq") for name in ("title", "brand", "categories", "description")
    )
    meta: dict[str, dict[str, FieldValue]] = {}
    for key, value in raw_items.items():
        if not isinstance(value, dict):
            raise PrepareError(f"{item_path}, item {key!r}: expected an object, got {type(value).__name__}.")
        meta[str(key)] = {
            f.name: clean_text(value.get(f.name), ", " if f.name == "categories" else " ")
            for f in item_fields
        }
    items = attach_items(interactions, meta, item_fields, item_path.name, notes)
    return ConvertedDataset(interactions, item_fields, items, ordinal_timestamps=True, notes=notes)


def convert_ids(source: Path, category: str | None = None) -> ConvertedDataset:
    """Convert plain id sequences (``<CAT>.txt``: ``uid iid iid ...``, chronological).

    The source has no item text, so no ``.item`` table is produced.  Tokens are
    the ids as given; timestamps are sequence positions.
    """
    require_dir(source)
    if category is None:
        category = detect_category(source, "ids")
    path = require_file(source, f"{category}.txt")
    sequences, notes = read_id_sequences(path)
    interactions = [inter for user, seq in sequences for inter in _ordinal(user, seq)]
    notes.append(f"{path.name} has no item text: only the .inter file is written (no .item)")
    return ConvertedDataset(interactions, (), None, ordinal_timestamps=True, notes=notes)


AMAZON_ITEM_FIELDS: tuple[ItemField, ...] = (
    ItemField("title", "token_seq"),
    ItemField("brand", "token_seq"),
    ItemField("categories", "token_seq"),
    ItemField("description", "token_seq"),
    ItemField("price", "float"),
)


def read_amazon_reviews(path: Path) -> tuple[list[Interaction], list[str]]:
    """Read McAuley review JSON lines into interactions grouped by user.

    Users are in order of first appearance; each user's reviews are sorted by
    ``unixReviewTime``, ties keeping the file order (stable sort).
    """
    by_user: dict[str, list[tuple[float, str]]] = {}
    for lineno, line in iter_lines(path):
        obj = _parse_json_line(path, lineno, line)
        where = f"{path}, line {lineno}"
        user = _check_token(obj.get("reviewerID"), "reviewerID", where)
        item = _check_token(obj.get("asin"), "asin", where)
        time = obj.get("unixReviewTime")
        if isinstance(time, bool) or not isinstance(time, (int, float)) or not math.isfinite(time):
            raise PrepareError(
                f"{where}: unixReviewTime must be a number, got {time!r}. "
                "Fix or remove that line and run again."
            )
        by_user.setdefault(user, []).append((float(time), item))
    interactions: list[Interaction] = []
    for user, rows in by_user.items():
        rows.sort(key=lambda row: row[0])
        interactions.extend(Interaction(user, item, time) for time, item in rows)
    notes = []
    pairs = Counter((inter.user, inter.item) for inter in interactions)
    repeated = sum(count - 1 for count in pairs.values() if count > 1)
    if repeated:
        notes.append(f"{repeated} reviews in {path.name} repeat an earlier (user, item) pair; kept")
    return interactions, notes


def read_amazon_meta(
    path: Path,
    parse_line: Callable[[Path, int, str], dict[str, Any]],
    extract: Callable[[dict[str, Any]], dict[str, FieldValue]],
    wanted: set[str],
    notes: list[str],
) -> dict[str, dict[str, FieldValue]]:
    """Read a metadata file, keeping the first row of each wanted ASIN.

    Every line is parsed (a malformed line is an error), but only rows for
    ``wanted`` items are extracted; the number of metadata rows for items
    without interactions and of duplicated rows are added to ``notes``.
    """
    meta: dict[str, dict[str, FieldValue]] = {}
    seen: set[str] = set()
    duplicates: list[str] = []
    unused = 0
    for lineno, line in iter_lines(path):
        obj = parse_line(path, lineno, line)
        asin = _check_token(obj.get("asin"), "asin", f"{path}, line {lineno}")
        if asin in seen:
            duplicates.append(asin)
            continue
        seen.add(asin)
        if asin in wanted:
            meta[asin] = extract(obj)
        else:
            unused += 1
    if duplicates:
        notes.append(
            f"{len(duplicates)} duplicated metadata row(s) in {path.name} (same asin); "
            f"the first one was kept (e.g. {_examples(duplicates)})"
        )
    if unused:
        notes.append(f"{unused} metadata row(s) in {path.name} describe items without interactions; skipped")
    return meta


def _extract_meta_2014(obj: dict[str, Any]) -> dict[str, FieldValue]:
    """Item fields from one 2014 metadata dict."""
    categories = obj.get("categories")
    if isinstance(categories, list) and categories and isinstance(categories[0], list):
        categories = categories[0]  # the first category path
    return {
        "title": clean_text(obj.get("title")),
        "brand": clean_text(obj.get("brand")),
        "categories": clean_text(categories, ", "),
        "description": clean_text(obj.get("description")),
        "price": parse_price(obj.get("price")),
    }


def _extract_meta_2018(obj: dict[str, Any]) -> dict[str, FieldValue]:
    """Item fields from one 2018 metadata object."""
    return {
        "title": clean_text(obj.get("title")),
        "brand": clean_text(obj.get("brand")),
        "categories": clean_text(obj.get("category"), ", "),
        "description": clean_text(obj.get("description"), " "),
        "price": parse_price(obj.get("price")),
    }


def _convert_amazon(
    source: Path,
    category: str | None,
    fmt: str,
    review_name: str,
    parse_meta_line: Callable[[Path, int, str], dict[str, Any]],
    extract: Callable[[dict[str, Any]], dict[str, FieldValue]],
) -> ConvertedDataset:
    """Shared body of :func:`convert_amazon2014` and :func:`convert_amazon2018`."""
    require_dir(source)
    if category is None:
        category = detect_category(source, fmt)
    review_file = review_name.format(cat=category)
    reviews_path = require_file(source, review_file + ".gz", review_file)
    meta_file = f"meta_{category}.json"
    meta_path = require_file(source, meta_file + ".gz", meta_file)
    interactions, notes = read_amazon_reviews(reviews_path)
    wanted = set(_items_in_order(interactions))
    meta = read_amazon_meta(meta_path, parse_meta_line, extract, wanted, notes)
    items = attach_items(interactions, meta, AMAZON_ITEM_FIELDS, meta_path.name, notes)
    return ConvertedDataset(interactions, AMAZON_ITEM_FIELDS, items, notes=notes)


def convert_amazon2014(source: Path, category: str | None = None) -> ConvertedDataset:
    """Convert the 2014 McAuley dumps ``reviews_<CAT>_5.json.gz`` + ``meta_<CAT>.json.gz``.

    Reviews are strict JSON lines; metadata lines are Python dict literals
    (parsed with :func:`ast.literal_eval`).  ``categories`` is the first
    category path joined with ``", "``; ``price`` is the float given.
    Plain (non-gzipped) files are accepted when the ``.gz`` is absent.
    """
    return _convert_amazon(
        source, category, "amazon2014", "reviews_{cat}_5.json", _parse_python_dict_line, _extract_meta_2014
    )


def convert_amazon2018(source: Path, category: str | None = None) -> ConvertedDataset:
    """Convert the 2018 McAuley dumps ``<CAT>_5.json.gz`` + ``meta_<CAT>.json.gz``.

    Both files are strict JSON lines.  ``categories`` is the ``category`` list
    joined with ``", "``, ``description`` the list joined with ``" "``, and
    ``price`` is parsed from ``"$12.99"`` (ranges and other strings: empty).
    Plain (non-gzipped) files are accepted when the ``.gz`` is absent.
    """
    return _convert_amazon(
        source, category, "amazon2018", "{cat}_5.json", _parse_json_line, _extract_meta_2018
    )


# --------------------------------------------------------------------------- #
# Filtering, statistics, writing
# --------------------------------------------------------------------------- #


def kcore_filter(
    data: ConvertedDataset, min_user_inter: int = 0, min_item_inter: int = 0
) -> ConvertedDataset:
    """Iteratively drop users/items with fewer interactions than the thresholds.

    The order of the remaining rows is kept; ordinal timestamps are renumbered
    so that they stay the positions 0, 1, 2, ... in each user's sequence.
    """
    if min_user_inter <= 1 and min_item_inter <= 1:
        return data
    rows = data.interactions
    while True:
        user_count = Counter(r.user for r in rows)
        item_count = Counter(r.item for r in rows)
        kept = [
            r for r in rows
            if user_count[r.user] >= min_user_inter and item_count[r.item] >= min_item_inter
        ]
        if len(kept) == len(rows):
            break
        rows = kept
    removed = len(data.interactions) - len(rows)
    if data.ordinal_timestamps:
        position: Counter[str] = Counter()
        renumbered = []
        for r in rows:
            renumbered.append(Interaction(r.user, r.item, float(position[r.user])))
            position[r.user] += 1
        rows = renumbered
    items = None
    if data.items is not None:
        items = {item: data.items[item] for item in _items_in_order(rows)}
    note = (
        f"k-core filter (users >= {min_user_inter}, items >= {min_item_inter}) removed "
        f"{removed} of {len(data.interactions)} interactions"
    )
    return ConvertedDataset(rows, data.item_fields, items, data.ordinal_timestamps, data.notes + [note])


def item_table(data: ConvertedDataset) -> list[tuple[str, dict[str, FieldValue]]]:
    """Rows of the ``.item`` file: every interacted item once, in order of first appearance."""
    if data.items is None:
        return []
    empty = {f.name: (None if f.type == "float" else "") for f in data.item_fields}
    return [(item, data.items.get(item, empty)) for item in _items_in_order(data.interactions)]


def compute_stats(data: ConvertedDataset, dataset: str = "", fmt: str = "") -> dict[str, Any]:
    """Statistics of a converted dataset (the content of ``NAME.stats.json``).

    Keys: ``dataset``, ``format``, ``users``, ``items``, ``interactions``,
    ``avg_seq_len``, ``min_seq_len``, ``max_seq_len``, ``density``,
    ``item_fields`` (the ``.item`` columns, empty without ``.item``),
    ``non_empty_share`` (field -> share of items with a non-empty value) and
    ``empty_count`` (field -> number of items with an empty value).
    """
    lengths = Counter(r.user for r in data.interactions)
    n_users = len(lengths)
    n_items = len(_items_in_order(data.interactions))
    n_inter = len(data.interactions)
    table = item_table(data)
    empty_count = {
        f.name: sum(1 for _, row in table if row.get(f.name) in (None, "")) for f in data.item_fields
    }
    return {
        "dataset": dataset,
        "format": fmt,
        "users": n_users,
        "items": n_items,
        "interactions": n_inter,
        "avg_seq_len": round(n_inter / n_users, 4) if n_users else 0.0,
        "min_seq_len": min(lengths.values()) if lengths else 0,
        "max_seq_len": max(lengths.values()) if lengths else 0,
        "density": round(n_inter / (n_users * n_items), 8) if n_users and n_items else 0.0,
        "item_fields": [f.name for f in data.item_fields] if data.items is not None else [],
        "non_empty_share": {
            name: round(1 - count / len(table), 6) if table else 0.0 for name, count in empty_count.items()
        } if data.items is not None else {},
        "empty_count": empty_count if data.items is not None else {},
    }


def format_stats(stats: dict[str, Any]) -> str:
    """Human-readable multi-line summary of :func:`compute_stats` output."""
    lines = [
        f"dataset {stats['dataset']} (format {stats['format']})",
        f"  users         {stats['users']:,}",
        f"  items         {stats['items']:,}",
        f"  interactions  {stats['interactions']:,}",
        f"  seq length    avg {stats['avg_seq_len']:.2f}, "
        f"min {stats['min_seq_len']}, max {stats['max_seq_len']}",
        f"  density       {stats['density']:.6f}",
    ]
    if stats["non_empty_share"]:
        lines.append("  non-empty item fields:")
        for name, share in stats["non_empty_share"].items():
            lines.append(f"    {name:<12} {share:7.2%}  ({stats['empty_count'][name]:,} empty)")
    else:
        lines.append("  no item text (.inter only)")
    return "\n".join(lines)


def _file_mode() -> int:
    """Permission bits for new files (0o666 minus the current umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, lines: Iterable[str]) -> None:
    """Write ``lines`` to ``path`` via a temporary file in the same directory + ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, _file_mode())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def write_atomic_files(
    data: ConvertedDataset, out_dir: Path, name: str, stats: dict[str, Any] | None = None
) -> list[Path]:
    """Write ``NAME.inter``, ``NAME.item`` (if the data has items) and ``NAME.stats.json``.

    A stale ``NAME.item`` left from an earlier run is removed when the data has
    no item table, so that RecBole never pairs it with the new ``.inter``.
    Returns the paths written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    inter_path = out_dir / f"{name}.inter"

    def inter_lines() -> Iterator[str]:
        yield INTER_HEADER + "\n"
        for r in data.interactions:
            yield f"{_format_field(r.user)}\t{_format_field(r.item)}\t{_format_number(r.timestamp)}\n"

    write_atomic(inter_path, inter_lines())
    written.append(inter_path)

    item_path = out_dir / f"{name}.item"
    if data.items is not None:
        def item_lines() -> Iterator[str]:
            yield "\t".join(["item_id:token"] + [f"{f.name}:{f.type}" for f in data.item_fields]) + "\n"
            for item, row in item_table(data):
                values = [_format_field(item)] + [_format_field(row.get(f.name)) for f in data.item_fields]
                yield "\t".join(values) + "\n"

        write_atomic(item_path, item_lines())
        written.append(item_path)
    elif item_path.exists():
        item_path.unlink()
        print(f"removed stale {item_path} (this dataset has no item text)")

    if stats is not None:
        stats_path = out_dir / f"{name}.stats.json"
        write_atomic(stats_path, [json.dumps(stats, indent=2, ensure_ascii=False) + "\n"])
        written.append(stats_path)
    return written


# --------------------------------------------------------------------------- #
# Entry points
# --------------------------------------------------------------------------- #


def resolve_format(dataset: str, fmt: str | None) -> str:
    """Return ``fmt`` or the format inferred from a known dataset name."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise PrepareError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}.")
        return fmt
    if dataset in KNOWN_DATASETS:
        return KNOWN_DATASETS[dataset]
    known = ", ".join(f"{k} ({v})" for k, v in KNOWN_DATASETS.items())
    raise PrepareError(
        f"unknown dataset name {dataset!r}: pass --format with one of {', '.join(FORMATS)} "
        f"(the format is inferred only for {known})."
    )


def convert(fmt: str, source: Path, category: str | None = None) -> ConvertedDataset:
    """Run the converter for ``fmt`` on ``source``."""
    if fmt == "p5":
        if category is not None:
            print("note: --category is ignored for --format p5")
        return convert_p5(source)
    if fmt == "lcrec":
        return convert_lcrec(source, category)
    if fmt == "ids":
        return convert_ids(source, category)
    if fmt == "amazon2014":
        return convert_amazon2014(source, category)
    if fmt == "amazon2018":
        return convert_amazon2018(source, category)
    raise PrepareError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}.")


def prepare(
    dataset: str,
    source: str | Path,
    data_path: str | Path,
    fmt: str | None = None,
    category: str | None = None,
    min_user_inter: int = 0,
    min_item_inter: int = 0,
) -> dict[str, Any]:
    """Convert ``source`` and write ``data_path/dataset/dataset.{inter,item,stats.json}``.

    Prints the conversion notes and the statistics; returns the statistics
    (see :func:`compute_stats`).  Raises :class:`PrepareError` on bad input.
    """
    if not dataset or dataset in (".", "..") or any(sep in dataset for sep in ("/", "\\", os.sep)):
        raise PrepareError(f"invalid --dataset {dataset!r}: use a plain name such as 'amazon-beauty'.")
    fmt = resolve_format(dataset, fmt)
    data = convert(fmt, Path(source), category)
    data = kcore_filter(data, min_user_inter, min_item_inter)
    if not data.interactions:
        raise PrepareError(f"no interactions left for {dataset!r}; check the source files and filters.")
    for note in data.notes:
        print(f"note: {note}")
    stats = compute_stats(data, dataset, fmt)
    out_dir = Path(data_path) / dataset
    written = write_atomic_files(data, out_dir, dataset, stats)
    print(format_stats(stats))
    for path in written:
        print(f"wrote {path}")
    return stats


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description="Convert sequential-recommendation data into RecBole atomic files "
        "(DATA_PATH/NAME/NAME.inter, NAME.item, NAME.stats.json).",
    )
    parser.add_argument("--dataset", required=True, help="dataset name (output folder and file stem)")
    parser.add_argument("--source", required=True, help="folder holding the downloaded source files")
    parser.add_argument("--data_path", required=True, help="RecBole data_path to write into")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="source format; inferred for "
        + ", ".join(f"{k} ({v})" for k, v in KNOWN_DATASETS.items())
        + ", required otherwise",
    )
    parser.add_argument(
        "--category",
        default=None,
        help="file-name category, e.g. Beauty for reviews_Beauty_5.json.gz (amazon2014), "
        "Luxury_Beauty (amazon2018), Scientific (lcrec), Beauty (ids); inferred when the "
        "folder holds exactly one candidate",
    )
    parser.add_argument("--min_user_inter", type=int, default=0,
                        help="iterative k-core: minimum interactions per user (default: no filter)")
    parser.add_argument("--min_item_inter", type=int, default=0,
                        help="iterative k-core: minimum interactions per item (default: no filter)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; input problems exit with a message, not a traceback."""
    args = build_parser().parse_args(argv)
    try:
        prepare(
            args.dataset,
            args.source,
            args.data_path,
            fmt=args.format,
            category=args.category,
            min_user_inter=args.min_user_inter,
            min_item_inter=args.min_item_inter,
        )
    except PrepareError as exc:
        raise SystemExit(f"error: {exc}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
