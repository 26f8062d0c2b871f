"""The conversation store's life with the gateway: opened (and migrated) at start, swept for expired conversations
by a background :class:`~switchyard.worker.Worker`, closed at stop."""

from __future__ import annotations

import asyncio
import logging

from ..config.state import StateConfig
from ..worker import Worker
from .conversations import ConversationStore

log = logging.getLogger("switchyard.state")


class StateService:
    def __init__(self, config: StateConfig, store_url: str) -> None:
        self.config = config
        self.store = ConversationStore.open(config.store or store_url, encryption_key=config.encryption_key,
                                            max_items=config.max_items, synchronous_commit=config.synchronous_commit)
        self.sweeper = Worker("conversation-ttl", self.sweep, interval=config.sweep_interval, backoff_max=300.0,
                              jitter=0.2)

    async def sweep(self) -> bool:
        """Delete expired conversations, a batch at a time, until none is left."""
        total = 0
        while (n := await self.store.sweep()) > 0:
            total += n
        if total:
            log.info("deleted %d expired conversation(s)", total)
        return True

    async def start(self) -> None:
        from ..store.db import migrate

        await asyncio.to_thread(migrate, self.store.db.engine)
        self.sweeper.start()

    async def aclose(self) -> None:
        await self.sweeper.stop()
        await asyncio.to_thread(self.store.close)
