"""Item text -> cached LLM embeddings: prompts, providers, on-disk store, loader."""

from recbole_faerec.embeddings.loader import (
    embedding_paths,
    ensure_item_embeddings,
    load_item_embeddings,
)
from recbole_faerec.embeddings.prompts import PromptSettings, build_prompts
from recbole_faerec.embeddings.providers import EmbeddingError, make_provider
from recbole_faerec.embeddings.runner import EmbedSummary, embed_items
from recbole_faerec.embeddings.store import EmbeddingFileError, EmbeddingPaths

__all__ = [
    "EmbedSummary", "EmbeddingError", "EmbeddingFileError", "EmbeddingPaths", "PromptSettings",
    "build_prompts", "embed_items", "embedding_paths", "ensure_item_embeddings",
    "load_item_embeddings", "make_provider",
]
