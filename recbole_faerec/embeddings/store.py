"""On-disk layout of cached item embeddings.

For a dataset ``NAME`` and suffix ``itememb`` (configurable, so several encoders can coexist), in
the dataset's folder (or the user cache for datasets whose folder is not ours, e.g. ml-100k):

``NAME.itememb``
    The source of truth: a RecBole atomic file, ``item_id:token`` and ``item_emb:float_seq``
    (space-separated, 9 significant digits: float32 round-trips exactly). RecBole itself can read
    it (``additional_feat_suffix: [itememb]``).
``NAME.itememb.npz``
    A binary sidecar (tokens + float32 matrix) for fast loading. Trusted only while the atomic
    file's fingerprint (size, mtime, hash of its first and last 64 KiB) equals the one recorded
    when the sidecar was written; otherwise the atomic file is parsed and the sidecar rewritten.
``NAME.itememb.json``
    The manifest: encoder (provider, model, options), dimension, prompt settings, a hash of each
    item's prompt, the atomic file's fingerprint, counts and times.
``NAME.itememb.partial/``
    During a run: one ``.npz`` per finished batch, so a killed run loses nothing. Removed when the
    run completes.

Every file is written to a temporary name in the same folder and renamed into place, so no
half-written file is ever visible.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from recbole_faerec.data.atomic import AtomicFileError

FORMAT_VERSION = 1
DEFAULT_SUFFIX = "itememb"
EMB_FIELD = "item_emb"
_EDGE = 64 * 1024


class EmbeddingFileError(AtomicFileError):
    """Cached embeddings are missing, malformed, or do not match the dataset."""


@dataclass
class EmbeddingPaths:
    directory: str
    dataset: str
    suffix: str = DEFAULT_SUFFIX

    @property
    def atomic(self) -> str:
        return os.path.join(self.directory, f"{self.dataset}.{self.suffix}")

    @property
    def sidecar(self) -> str:
        return self.atomic + ".npz"

    @property
    def manifest(self) -> str:
        return self.atomic + ".json"

    @property
    def partial(self) -> str:
        return self.atomic + ".partial"

    @property
    def prompts(self) -> str:
        return self.atomic + ".prompts.jsonl"


def _tmp(path: str) -> str:
    return f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def atomic_write_bytes(path: str, writer) -> None:
    """Call ``writer(file)`` on a temporary file beside ``path``, then rename it into place."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = _tmp(path)
    try:
        with open(tmp, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str, obj) -> None:
    atomic_write_bytes(path, lambda f: f.write(json.dumps(obj, indent=1, ensure_ascii=False).encode()))


def read_json(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise EmbeddingFileError(f"{path}: not a readable manifest ({err}); delete it to rebuild") from None


def fingerprint(path: str) -> Dict:
    """Cheap identity of a file: size, mtime and a hash of its first and last 64 KiB."""
    stat = os.stat(path)
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        digest.update(f.read(_EDGE))
        if stat.st_size > 2 * _EDGE:
            f.seek(-_EDGE, os.SEEK_END)
        digest.update(f.read(_EDGE))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "edges_sha1": digest.hexdigest()}


def write_atomic_embeddings(path: str, tokens: List[str], emb: np.ndarray) -> None:
    """The RecBole atomic file ``item_id:token  item_emb:float_seq``."""

    def writer(f):
        f.write(f"item_id:token\t{EMB_FIELD}:float_seq\n".encode())
        for start in range(0, len(tokens), 4096):
            block = emb[start:start + 4096]
            lines = [
                token + "\t" + " ".join("%.9g" % x for x in row.tolist())
                for token, row in zip(tokens[start:start + 4096], block)
            ]
            f.write(("\n".join(lines) + "\n").encode())

    atomic_write_bytes(path, writer)


def parse_atomic_embeddings(path: str, expected_dim: Optional[int] = None) -> Tuple[List[str], np.ndarray]:
    """Read an ``.itememb`` atomic file: (tokens, float32 matrix). Errors name the line."""
    if not os.path.isfile(path):
        raise EmbeddingFileError(f"{path} does not exist")
    tokens: List[str] = []
    rows: List[np.ndarray] = []
    dim = expected_dim
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        names = [h.rpartition(":")[0] for h in header]
        if len(header) != 2 or not header[1].endswith(":float_seq"):
            raise EmbeddingFileError(
                f"{path}, line 1 (header): expected 'item_id:token<TAB>{EMB_FIELD}:float_seq', "
                f"found {header}"
            )
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            token, sep, values = line.partition("\t")
            if not sep:
                raise EmbeddingFileError(f"{path}, line {lineno}: no tab between {names[0]} and {names[1]}")
            try:
                row = np.array(values.split(), dtype=np.float32)
            except ValueError:
                raise EmbeddingFileError(f"{path}, line {lineno}: item '{token}' has a value that "
                                         "is not a number") from None
            if dim is None:
                dim = len(row)
            if len(row) != dim:
                raise EmbeddingFileError(
                    f"{path}, line {lineno}: item '{token}' has {len(row)} values, expected {dim}"
                )
            tokens.append(token)
            rows.append(row)
    emb = np.stack(rows) if rows else np.zeros((0, dim or 0), dtype=np.float32)
    return tokens, emb


def write_sidecar(path: str, tokens: List[str], emb: np.ndarray) -> None:
    atomic_write_bytes(path, lambda f: np.savez(f, tokens=np.asarray(tokens, dtype=str),
                                                emb=np.ascontiguousarray(emb, dtype=np.float32)))


def read_sidecar(path: str) -> Tuple[List[str], np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return data["tokens"].tolist(), data["emb"]


def load_embeddings(paths: EmbeddingPaths, refresh_sidecar: bool = True):
    """``(tokens, emb, manifest)`` of a cached embedding set, via the sidecar when it is fresh.

    A missing, stale or unreadable sidecar is never trusted: the atomic file is parsed instead
    and (with ``refresh_sidecar``) the sidecar is rewritten with the new fingerprint.
    """
    if not os.path.isfile(paths.atomic):
        raise EmbeddingFileError(f"{paths.atomic} does not exist")
    manifest = read_json(paths.manifest)
    expected_dim = manifest.get("dimension") if manifest else None
    current = fingerprint(paths.atomic)
    sidecar_ok = (
        manifest is not None
        and manifest.get("atomic") == current
        and manifest.get("sidecar", {}).get("size") is not None
        and os.path.isfile(paths.sidecar)
        and os.path.getsize(paths.sidecar) == manifest["sidecar"]["size"]
    )
    if sidecar_ok:
        try:
            tokens, emb = read_sidecar(paths.sidecar)
        except (OSError, ValueError, KeyError):
            sidecar_ok = False
    if not sidecar_ok:
        tokens, emb = parse_atomic_embeddings(paths.atomic, expected_dim)
        if refresh_sidecar and manifest is not None:
            try:
                write_sidecar(paths.sidecar, tokens, emb)
                manifest["sidecar"] = {"size": os.path.getsize(paths.sidecar)}
                if manifest.get("atomic") != current:
                    # The atomic file changed by hand: its per-item prompt hashes no longer hold.
                    manifest["items"] = {}
                manifest["atomic"] = current
                write_json(paths.manifest, manifest)
            except OSError:
                pass  # read-only folder: parse every time, still correct
    if expected_dim is not None and emb.shape[1] != expected_dim:
        raise EmbeddingFileError(
            f"{paths.atomic}: vectors have {emb.shape[1]} dimensions but the manifest "
            f"{paths.manifest} says {expected_dim}"
        )
    return tokens, emb, manifest


def save_embeddings(paths: EmbeddingPaths, tokens: List[str], emb: np.ndarray, manifest: Dict) -> None:
    """Write atomic file, sidecar and manifest (in that order, each renamed into place)."""
    write_atomic_embeddings(paths.atomic, tokens, emb)
    write_sidecar(paths.sidecar, tokens, emb)
    manifest = dict(manifest)
    manifest["format"] = FORMAT_VERSION
    manifest["dimension"] = int(emb.shape[1])
    manifest["atomic"] = fingerprint(paths.atomic)
    manifest["sidecar"] = {"size": os.path.getsize(paths.sidecar)}
    write_json(paths.manifest, manifest)


# ---- resumable runs ------------------------------------------------------------------------
def open_partial(paths: EmbeddingPaths, signature: Dict) -> Dict[str, Tuple[str, np.ndarray]]:
    """Finished batches of an earlier run with the same ``signature``: token -> (hash, vector).

    Batches from a run with another signature (encoder, prompt settings) are discarded.
    """
    os.makedirs(paths.partial, exist_ok=True)
    sig_path = os.path.join(paths.partial, "signature.json")
    previous = read_json(sig_path)
    if previous != signature:
        for path in glob.glob(os.path.join(paths.partial, "*.npz")):
            os.remove(path)
        write_json(sig_path, signature)
    found: Dict[str, Tuple[str, np.ndarray]] = {}
    for path in sorted(glob.glob(os.path.join(paths.partial, "batch-*.npz"))):
        try:
            with np.load(path, allow_pickle=False) as data:
                for token, h, vec in zip(data["tokens"].tolist(), data["hashes"].tolist(), data["emb"]):
                    found[token] = (h, vec)
        except (OSError, ValueError, KeyError):
            os.remove(path)  # cannot happen with renamed files, but never trust a bad one
    return found


def save_batch(paths: EmbeddingPaths, tokens: List[str], hashes: List[str], emb: np.ndarray) -> None:
    path = os.path.join(paths.partial, f"batch-{uuid.uuid4().hex}.npz")
    atomic_write_bytes(path, lambda f: np.savez(f, tokens=np.asarray(tokens, dtype=str),
                                                hashes=np.asarray(hashes, dtype=str), emb=emb))


def close_partial(paths: EmbeddingPaths) -> None:
    shutil.rmtree(paths.partial, ignore_errors=True)
