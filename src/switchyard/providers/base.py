"""The outbound side's one interface. Each wire API implements it in a module of its own."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import InvalidRequest
from ..messages import ChatRequest, ChatResponse, Chunk, EmbeddingRequest, EmbeddingResponse


@dataclass(frozen=True, slots=True)
class Target:
    """What a provider needs to know of the deployment it is calling."""

    deployment: str
    model: str  # the upstream model id
    extra_headers: dict[str, str] = field(default_factory=dict)


class Provider(ABC):
    """One configured upstream (an account at a vendor, or a server). Those reached over HTTP hold one transport
    (:class:`~switchyard.providers.http_provider.HTTPProvider`)."""

    type: ClassVar[str]
    wire: ClassVar[str]  # the chat wire format it speaks; same-format requests pass through losslessly
    response_headers: ClassVar[dict[str, str]] = {}
    # the upstream goes on generating (and billing) a stream whose client left: the gateway reads it to its end for
    # the real usage (routing/drain.py). False for a model in this process: stop it at once, charge the estimate.
    drains_cut_streams: ClassVar[bool] = True

    def __init__(self, name: str, config: Any) -> None:
        self.name = name
        self.config = config

    async def start(self) -> None:  # noqa: B027 (an optional hook)
        """Open pools. Called once, from the app's lifespan."""

    async def aclose(self) -> None:  # noqa: B027 (an optional hook)
        """Close pools."""

    @abstractmethod
    async def chat(self, req: ChatRequest, target: Target) -> ChatResponse: ...

    @abstractmethod
    def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        """An async iterator of chunks. Failures before the first chunk raise from the first ``__anext__``."""

    async def embed(self, req: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        raise InvalidRequest(f"provider {self.name!r} ({self.type}) does not serve embeddings", param="model")
