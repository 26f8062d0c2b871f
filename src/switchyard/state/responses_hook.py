"""The ``conversation`` parameter of ``responses.create``: a :class:`~switchyard.state.responses.HistoryHook` over the
conversation store (:mod:`.conversations`), installed as ``app.state.conversations`` when the config has a
``state:`` section.

* ``load``: the conversation (an id, or ``{"id": ...}``) of the caller's tenant (:func:`.conversations.scope_of`;
  another tenant's id is a 404 like an unknown one), once the key's retention allows conversations (403 otherwise,
  as on the chat path). Its messages become Responses input items (the Conversations API's rendering,
  :func:`~switchyard.protocols.openai_conversations.render_items`), oldest first, without the item ids and statuses
  of the listing. The model's own messages lose their reasoning and provider metadata (the deployment is not chosen
  yet, :func:`.codec.for_provider` with no provider): what is replayed is the text, the tool calls and the results.
* ``append``: the turn (the request's input items, then the response's output items, both read by the Responses
  protocol's parser) is stored in one transaction; the output's messages carry the provider type that wrote them as
  their origin, so a chat call on the same provider gets their reasoning back and any other does not.

The stored items are those of the Conversations API (``GET /v1/conversations/{id}/items``), and a chat completion
naming the conversation (``x-switchyard-conversation``) continues it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest, NotFound
from ..messages import Message
from ..protocols import openai_responses
from ..protocols.openai_conversations import render_items
from .conversations import ConversationStore, scope_of
from .stage import retention_ttl

if TYPE_CHECKING:
    from ..governance.auth import Principal

UNKNOWN_ORIGIN = "unknown"  # the model's output when the provider is not known: its provider data is never replayed
_MAX_ID = 128


def conversation_id(value: Any) -> str:
    """The id a ``conversation`` parameter names: a string, or an object with a string ``id``."""
    cid = value.get("id") if isinstance(value, dict) else value
    if not isinstance(cid, str) or not cid or len(cid) > _MAX_ID:
        raise InvalidRequest("conversation must be a conversation id, or an object with its id "
                             "({\"id\": \"conv_...\"}).", param="conversation", code="invalid_value")
    return cid


class ConversationHistory:
    """:class:`~switchyard.state.responses.HistoryHook` over a :class:`ConversationStore`."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store

    async def load(self, principal: Principal, conversation: Any) -> list[Any]:
        cid = conversation_id(conversation)
        retention_ttl(principal)
        try:
            history = await self.store.load(scope_of(principal), cid)
        except NotFound:
            raise NotFound(f"No conversation found with id {cid[:80]!r}.", param="conversation",
                           code="conversation_not_found") from None
        items: list[Any] = []
        for m in history.for_provider(None):
            for item in render_items("", m):
                if item["type"] == "reasoning":  # nothing a model can use without its provider's data
                    continue
                item.pop("id", None)
                item.pop("status", None)
                items.append(item)
        return items

    async def append(self, principal: Principal, conversation: Any, input_items: list[Any],
                     output_items: list[Any], origin: str | None = None) -> None:
        cid = conversation_id(conversation)
        ttl = retention_ttl(principal)
        mine = openai_responses.parse_items(input_items, "input") if input_items else []
        model: list[Message] = [m for m in openai_responses.parse_items(output_items, "output") if m.parts] \
            if output_items else []
        origins: list[str | None] = [None] * len(mine) + [origin or UNKNOWN_ORIGIN] * len(model)
        try:
            await self.store.append(scope_of(principal), cid, [*mine, *model], origins, ttl=ttl)
        except NotFound:  # deleted (or expired) while the response was made
            raise NotFound(f"No conversation found with id {cid[:80]!r}.", param="conversation",
                           code="conversation_not_found") from None
