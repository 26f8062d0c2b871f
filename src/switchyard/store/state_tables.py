"""Conversation tables (:mod:`switchyard.state`): one row per conversation and one per stored message.

Registered on :data:`switchyard.store.tables.metadata`; revision ``0008_conversations`` creates them and must match.
Content columns (``LargeBinary``) hold JSON, or an AES-GCM sealed copy of it when ``state.encryption_key`` is set
(:mod:`switchyard.state.crypto`). Times are epoch seconds. ``scope`` is the tenant (``org:<id>``, or
``key:<id>`` for a key without an organization): every read and write names it, so another tenant's id is a 404.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, LargeBinary, String, Table

from .tables import metadata

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("scope", String(96), nullable=False),
    Column("created_at", Float(), nullable=False),
    Column("updated_at", Float(), nullable=False),
    Column("expires_at", Float(), nullable=False),  # deleted by the TTL sweep after this
    Column("next_seq", Integer(), nullable=False),  # the seq of the next stored message
    Column("meta", LargeBinary(), nullable=True),  # the caller's metadata (JSON object)
    Column("system", LargeBinary(), nullable=True),  # the newest system prompt (a neutral message)
    Column("summary", LargeBinary(), nullable=True),  # a summary of messages up to summary_through
    Column("summary_through", Integer(), nullable=False),  # seq of the last summarised message; -1: none
    Column("pad", LargeBinary(), nullable=True),  # the scratchpad and the stored tool outputs
)
Index("ix_conversations_expires_at", conversations.c.expires_at)

conversation_items = Table(
    "conversation_items",
    metadata,
    Column("conversation_id", String(64), primary_key=True),
    Column("seq", Integer(), primary_key=True, autoincrement=False),
    Column("id", String(64), nullable=False),
    Column("origin", String(32), nullable=True),  # the provider type that wrote it; null: the caller's
    Column("created_at", Float(), nullable=False),
    Column("data", LargeBinary(), nullable=False),  # the neutral message
)
Index("ix_conversation_items_conversation_id_id", conversation_items.c.conversation_id, conversation_items.c.id,
      unique=True)
