"""On-disk layout of cached item embeddings.

For a dataset ``NAME`` and suffix ``itememb`` (configurable, so several encoders can coexist), in
the dataset's folder (or the user cache for datasets whose folder is not ours, e.g. ml-100k):

``NAME.itememb``
    The source of truth: a RecBole atomic file, ``item_id:token`` and ``item_emb:float_seq``
    (space-separated, 9 significant digits: float32 round-trips exactly). RecBole itself can read
    it (``additional_feat_suffix: [itememb]``).
``NAME.itememb.npz``
    A binary sidecar (tokens + float32 matrix) for fast loading. Trusted only while the atomic
    file's content (size and SHA-256 of all its bytes) is the one recorded when the sidecar was
    written; otherwise the atomic file is parsed and the sidecar rewritten.
``NAME.itememb.json``
    The manifest: encoder (provider, model, options), dimension, prompt settings, a hash of each
    item's prompt and of each item's vector, the atomic file's content hash, counts and times.
``NAME.itememb.partial/``
    During a run: one ``.npz`` per finished batch, so a killed run loses nothing. Removed when the
    run completes.
``NAME.itememb.lock``
    Held (``flock``) by the run that embeds, so two runs on one cache never embed the same items
    twice: the second waits, then reuses the first's vectors.

Every file is written to a temporary name in the same folder and renamed into place, so no
half-written file is ever visible. Whether a file changed is decided by its content, never by its
modification time: a copied or touched cache is reused in full.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from recbole_faerec.data.atomic import AtomicFileError

FORMAT_VERSION = 2
DEFAULT_SUFFIX = "itememb"
EMB_FIELD = "item_emb"
_EDGE = 64 * 1024  # format-1 manifests fingerprinted the first and last 64 KiB


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

    @property
    def lock(self) -> str:
        return self.atomic + ".lock"


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
    """Identity of a file by content alone: its size and the SHA-256 of all its bytes.

    (No modification time: copying or touching a cache must not make it look changed.)
    """
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
            size += len(block)
    return {"size": size, "sha256": digest.hexdigest()}


def _edges_sha1(path: str) -> str:
    """The format-1 manifests' partial hash (first and last 64 KiB), to migrate them."""
    size = os.path.getsize(path)
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        digest.update(f.read(_EDGE))
        if size > 2 * _EDGE:
            f.seek(-_EDGE, os.SEEK_END)
        digest.update(f.read(_EDGE))
    return digest.hexdigest()


def same_content(recorded: Optional[Dict], current: Dict, path: str) -> bool:
    """Whether the fingerprint recorded in a manifest describes the file as it is now."""
    if not recorded:
        return False
    if "sha256" in recorded:
        return recorded == current
    # format 1 (size, mtime, edge hash): trust size + edge hash; the mtime is deliberately ignored
    return (recorded.get("size") == current["size"]
            and recorded.get("edges_sha1") == _edges_sha1(path))


def vector_hashes(emb: np.ndarray) -> List[str]:
    """A short hash of each row (float32 bytes): which items an edit of the file touched."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    return [hashlib.sha1(row.tobytes()).hexdigest()[:16] for row in emb]


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
    and (with ``refresh_sidecar``) the sidecar is rewritten with the new content hash. When the
    atomic file's content changed (edited by hand), the manifest keeps the prompt hash of exactly
    the items whose vectors are unchanged, so the next embedding run redoes only the others.
    """
    if not os.path.isfile(paths.atomic):
        raise EmbeddingFileError(f"{paths.atomic} does not exist")
    manifest = read_json(paths.manifest)
    expected_dim = manifest.get("dimension") if manifest else None
    current = fingerprint(paths.atomic)
    unchanged = manifest is not None and same_content(manifest.get("atomic"), current, paths.atomic)
    sidecar_ok = (
        unchanged
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
    if manifest is not None and (not sidecar_ok or manifest.get("atomic") != current
                                 or "vectors" not in manifest):
        hashes = vector_hashes(emb)
        if not unchanged:
            # Edited by hand: a prompt hash vouches only for a vector that is still the same.
            before = manifest.get("vectors") or {}
            prompts = manifest.get("items") or {}
            manifest["items"] = {t: prompts[t] for t, v in zip(tokens, hashes)
                                 if t in prompts and before.get(t) == v}
        manifest["vectors"] = dict(zip(tokens, hashes))
        manifest["atomic"] = current
        if refresh_sidecar:
            try:
                if not sidecar_ok:
                    write_sidecar(paths.sidecar, tokens, emb)
                manifest["sidecar"] = {"size": os.path.getsize(paths.sidecar)}
                manifest["format"] = FORMAT_VERSION
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
    manifest["vectors"] = dict(zip(tokens, vector_hashes(emb)))
    manifest["sidecar"] = {"size": os.path.getsize(paths.sidecar)}
    write_json(paths.manifest, manifest)


# ---- one embedding run at a time per cache ---------------------------------------------------
@contextmanager
def cache_lock(paths: EmbeddingPaths, on_wait=None):
    """Hold ``paths.lock`` exclusively (``flock``; released by the OS if the process dies).

    ``on_wait()`` is called once when another process holds it. Where no lock can be taken (a
    read-only folder, no ``fcntl``), the body runs unlocked: it can only read there anyway.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    try:
        os.makedirs(paths.directory, exist_ok=True)
        handle = open(paths.lock, "a")
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # releases the lock


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
