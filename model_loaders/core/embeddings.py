"""The embedding cache: SAM's image embeddings kept so that a later click only decodes."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from model_loaders.core.results import ImageEmbedding

__all__ = ["EmbeddingCache"]


class EmbeddingCache:
    """A small LRU of image embeddings, bounded by count and bytes: one per user session (and
    one per Ray Serve replica, shared by the images it encoded).

    Keyed by (image digest, model key): content, not object identity, so it stays right when
    state crosses a process boundary, and two users' images never mix.
    """

    def __init__(self, max_items: int = 2, max_bytes: int = 128 * 2**20) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], ImageEmbedding] = OrderedDict()

    def get(self, digest: str, model_key: str) -> ImageEmbedding | None:
        """The cached embedding, or ``None``."""
        item = self._items.get((digest, model_key))
        if item is not None:
            self._items.move_to_end((digest, model_key))
        return item

    def put(self, embedding: ImageEmbedding) -> None:
        """Store ``embedding``, evicting the least recently used beyond the bounds."""
        key = (embedding.digest, embedding.model_key)
        self._items[key] = embedding
        self._items.move_to_end(key)
        while len(self._items) > 1 and (len(self._items) > self.max_items or self.nbytes > self.max_bytes):
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Drop every embedding (session ended)."""
        self._items.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return sum(e.nbytes for e in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __deepcopy__(self, memo: dict[int, Any]) -> EmbeddingCache:
        # gr.State deep-copies its initial value per session: give each session an empty cache.
        return EmbeddingCache(self.max_items, self.max_bytes)
