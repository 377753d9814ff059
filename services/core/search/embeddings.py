"""Embedding providers: `none`, or any OpenAI-compatible HTTP embeddings API."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from services.core.config import Settings
from services.core.errors import PermanentError, TransientError, is_retryable_status
from services.core.observability.downstream import observed
from services.core.taskdefs import Downstream

EMBEDDINGS = Downstream.EMBEDDINGS


class EmbeddingProvider(Protocol):
    """Turns texts into vectors."""

    dimensions: int | None

    async def embed(self, texts: list[str], *, api_key: str | None = None) -> list[list[float]]:
        """One vector per text, in order."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class NoEmbeddings:
    """Provider `none`: items are stored without a vector."""

    dimensions: int | None = None

    async def embed(self, texts: list[str], *, api_key: str | None = None) -> list[list[float]]:
        return []

    async def aclose(self) -> None:
        return None


class OpenAIEmbeddings:
    """POST {base_url}/embeddings with a model and optional dimensions."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        dimensions: int,
        api_key: str | None,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.dimensions: int | None = dimensions
        self._model = model
        self._default_key = api_key
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport
        )

    async def embed(self, texts: list[str], *, api_key: str | None = None) -> list[list[float]]:
        if not texts:
            return []
        key = api_key or self._default_key
        if not key:
            raise PermanentError("no embeddings api key: give api_key or set EMBEDDINGS_API_KEY")
        body: dict[str, Any] = {"model": self._model, "input": texts, "dimensions": self.dimensions}
        try:
            with observed(EMBEDDINGS, "embed") as call:
                response = await self._client.post(
                    "/embeddings", json=body, headers={"Authorization": f"Bearer {key}"}
                )
                call.answered(response.status_code)
        except httpx.TransportError as exc:
            raise TransientError(
                f"embeddings unreachable: {type(exc).__name__}", downstream=EMBEDDINGS
            ) from exc
        if response.status_code >= 400:
            message = f"embeddings {response.status_code}: {response.text[:300]}"
            if is_retryable_status(response.status_code):
                raise TransientError(message, downstream=EMBEDDINGS)
            raise PermanentError(message, downstream=EMBEDDINGS)
        data = sorted(response.json()["data"], key=lambda d: d["index"])
        vectors = [list(map(float, d["embedding"])) for d in data]
        if len(vectors) != len(texts) or any(len(v) != self.dimensions for v in vectors):
            raise PermanentError(
                f"embeddings answered {len(vectors)} vectors for {len(texts)} texts, "
                f"expected {self.dimensions} dimensions each"
            )
        return vectors

    async def aclose(self) -> None:
        await self._client.aclose()


def make_provider(settings: Settings) -> EmbeddingProvider:
    """The provider the settings choose."""
    if settings.embeddings_provider == "none":
        return NoEmbeddings()
    key = settings.embeddings_api_key
    return OpenAIEmbeddings(
        base_url=settings.embeddings_base_url,
        model=settings.embeddings_model,
        dimensions=settings.embeddings_dimensions,
        api_key=key.get_secret_value() if key else None,
        timeout_s=settings.embeddings_timeout_s,
    )


def embedding_text(data: dict[str, Any], fields: list[str]) -> str:
    """The text of an item that is embedded: its configured fields, one per line."""
    parts = [str(data[f]) for f in fields if data.get(f) not in (None, "")]
    return "\n".join(parts)
