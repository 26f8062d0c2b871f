"""Managed state: conversations kept by the gateway in a model-agnostic form (docs/state.md).

``conversations`` is the store and its API (load, append, items, scratchpad, sweep); ``stage`` the conversation
stage of chat completions and messages; ``context`` the cut to a context window (truncate, summarize); ``codec``
the neutral messages as stored, and a history as one provider gets it; ``crypto`` content at rest; ``service`` the
store's life with the gateway (migration, the TTL sweep).
"""
