"""Checks of RecBole atomic files before RecBole reads them.

RecBole reads atomic files with pandas and reports problems (a missing file, a line with the wrong
number of columns, a value that is not a number, an item without a row in ``.item``) as a traceback
from deep inside, or not at all. :func:`check_atomic_files` finds them first and raises
:class:`AtomicFileError` naming the file, the line or the items, and what to do.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Sequence, Set

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
MAX_LISTED = 10


class AtomicFileError(ValueError):
    """An atomic file is missing or malformed."""


class DatasetNotFoundError(AtomicFileError):
    """The dataset folder or its ``.inter`` file does not exist."""


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(map(str, items[:MAX_LISTED]))
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return shown + more


def read_header(path: str, sep: str = "\t", encoding: str = "utf-8") -> List[tuple]:
    """``[(field, type), ...]`` of an atomic file's header line, validated."""
    with open(path, encoding=encoding) as f:
        line = f.readline().rstrip("\r\n")
    if not line:
        raise AtomicFileError(f"{path}: the file is empty; line 1 must be a header such as "
                              f"'user_id:token{sep}item_id:token{sep}timestamp:float'")
    header = []
    for i, column in enumerate(line.split(sep), start=1):
        field, colon, ftype = column.rpartition(":")
        if not colon or not field or ftype not in FIELD_TYPES:
            raise AtomicFileError(
                f"{path}, line 1 (header), column {i}: '{column}' is not 'name:type' with type "
                f"one of {', '.join(FIELD_TYPES)}"
            )
        header.append((field, ftype))
    return header


def scan_atomic_file(
    path: str,
    sep: str = "\t",
    encoding: str = "utf-8",
    columns: Iterable[str] = (),
    check_fields: Optional[Iterable[str]] = None,
) -> Dict[str, List[str]]:
    """Check every line of an atomic file; return the values of ``columns``.

    Each line must have as many fields as the header; each ``float`` field among ``check_fields``
    (default: all) must parse as a number (empty = missing, allowed: RecBole fills it).
    """
    header = read_header(path, sep, encoding)
    names = [name for name, _ in header]
    index = {name: i for i, name in enumerate(names)}
    check = set(names if check_fields is None else check_fields)
    float_cols = [index[n] for n, t in header if t == "float" and n in check]
    wanted = {c: index[c] for c in columns if c in index}
    values: Dict[str, List[str]] = {c: [] for c in wanted}
    n_fields = len(header)
    with open(path, encoding=encoding) as f:
        next(f)
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split(sep)
            if len(parts) != n_fields:
                raise AtomicFileError(
                    f"{path}, line {lineno}: {len(parts)} fields, but the header has {n_fields} "
                    f"({', '.join(names)}); fields are separated by {sep!r} and may not contain it"
                )
            for i in float_cols:
                value = parts[i]
                if value:
                    try:
                        float(value)
                    except ValueError:
                        raise AtomicFileError(
                            f"{path}, line {lineno}: field '{names[i]}' is declared float but "
                            f"holds {value!r}"
                        ) from None
            for c, i in wanted.items():
                values[c].append(parts[i])
    return values


def _load_col(config, suffix: str) -> Optional[List[str]]:
    """Fields RecBole will load from ``<dataset>.<suffix>``: a list, None for all, [] for none."""
    load_col = config["load_col"]
    unload_col = config["unload_col"] or {}
    if load_col is None:
        cols = None
    elif suffix in load_col:
        cols = list(load_col[suffix])
    else:
        return []
    if cols is not None and suffix in unload_col:
        cols = [c for c in cols if c not in unload_col[suffix]]
    return cols


def check_atomic_files(config) -> None:
    """Check the atomic files ``config`` will make RecBole load; raise :class:`AtomicFileError`.

    Checks: the dataset folder and ``<dataset>.inter`` exist; every loaded file has a valid header,
    the fields ``load_col`` asks for, the right number of fields on every line and numbers in its
    float fields; every item of ``.inter`` has a row in ``.item`` when ``.item`` is loaded.
    """
    dataset = config["dataset"]
    data_path = config["data_path"]
    sep = config["field_separator"] or "\t"
    encoding = config["encoding"] or "utf-8"
    iid = config["ITEM_ID_FIELD"]
    prepare = (
        f"Prepare it with 'python dataset_scripts/prepare_dataset.py --dataset {dataset} "
        f"--source DIR --data_path {os.path.dirname(os.path.normpath(data_path))}', or point "
        f"--data_path at the folder that holds '{dataset}/{dataset}.inter'."
    )
    if not os.path.isdir(data_path):
        raise DatasetNotFoundError(f"Dataset '{dataset}' not found: there is no folder {data_path}. {prepare}")
    inter_path = os.path.join(data_path, f"{dataset}.inter")
    if not os.path.isfile(inter_path):
        raise DatasetNotFoundError(
            f"Dataset '{dataset}': {inter_path} does not exist (a RecBole dataset needs at least "
            f"'{dataset}.inter'). {prepare}"
        )

    suffixes = ["inter", "user", "item"] + list(config["additional_feat_suffix"] or [])
    item_tokens: Dict[str, Set[str]] = {}
    for suffix in suffixes:
        path = os.path.join(data_path, f"{dataset}.{suffix}")
        cols = _load_col(config, suffix)
        if not os.path.isfile(path):
            if suffix not in ("inter", "user", "item") and cols != []:
                raise AtomicFileError(
                    f"{path} does not exist, but 'additional_feat_suffix' lists '{suffix}'"
                )
            if suffix in (config["load_col"] or {}) and suffix in ("user", "item"):
                raise AtomicFileError(
                    f"{path} does not exist, but 'load_col' asks for fields of '{suffix}': "
                    f"{cols}. Remove '{suffix}' from load_col or provide the file."
                )
            continue
        if cols == []:
            continue
        header = read_header(path, sep, encoding)
        names = [name for name, _ in header]
        if cols is not None:
            missing = [c for c in cols if c not in names]
            if missing:
                raise AtomicFileError(
                    f"{path}: load_col asks for {missing}, which the header does not have "
                    f"(it has {', '.join(names)})"
                )
        values = scan_atomic_file(
            path, sep, encoding, columns=[iid] if suffix in ("inter", "item") else [],
            check_fields=cols,
        )
        if iid in values:
            item_tokens[suffix] = set(values[iid])

    if "inter" in item_tokens and "item" in item_tokens:
        missing_items = sorted(item_tokens["inter"] - item_tokens["item"])
        if missing_items:
            raise AtomicFileError(
                f"{os.path.join(data_path, dataset + '.inter')}: {len(missing_items)} item(s) have "
                f"no row in {dataset}.item: {_listed(missing_items)}. Add a row for each (empty text "
                f"fields are fine) or do not load the .item file (load_col without 'item')."
            )
