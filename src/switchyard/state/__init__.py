"""Managed state: what the gateway keeps between calls for its clients (docs/state.md): conversations kept in a
model-agnostic form, and stored Responses API responses.

``conversations`` is the store and its API (load, append, items, scratchpad, sweep); ``stage`` the conversation
stage of chat completions and messages; ``context`` the cut to a context window (truncate, summarize); ``codec``
the neutral messages as stored, and a history as one provider gets it; ``crypto`` content at rest; ``service`` the
store's life with the gateway (migration, the TTL sweep); ``responses`` the stored responses of ``/v1/responses``.
Each module opens its own tables of the store; nothing here is on the path of a call that does not use it.
"""

import re

CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")  # a conversation's id, as a caller (or a workflow) names it
