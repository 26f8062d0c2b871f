"""Reading a stream to its end after its client hung up, so that the call is charged for what the upstream produced.

A client that reads every content chunk and leaves before the finish and usage chunks has still made the upstream
produce (and bill) the whole reply. So the relay does not close the upstream when its client leaves: it hands the
rest of the stream to :class:`Drains`, which reads it in a background task, bounded in time (``drain_timeout``,
and never past the call's own deadline) and in chunks (``drain_max_chunks``), collecting the usage the upstream
reports. The call is then recorded (status ``cancelled``) with that usage. When the drain cannot finish (a limit,
an upstream failure, the gateway shutting down), or the upstream reports no usage, the call is charged an estimate
instead: the prompt estimate, and the output counted from the text seen (content, tool-call arguments and
reasoning; about four characters a token), never less than any usage already reported.

The relay's per-chunk cost does not change: it sums the lengths of the text it relays (:func:`tally`) and the
conversion to tokens happens once, at the end (:func:`estimate_usage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from ..errors import SwitchyardError
from ..messages import ReasoningDelta, TextDelta, ToolCallDelta, Usage, UsageUpdate, merge_usage
from .health import Outcome

if TYPE_CHECKING:
    from ..messages import Chunk, StreamEvent
    from .executor import StreamLease

log = logging.getLogger("switchyard.drain")

# called once the drain has ended: (usage, characters of text seen, complete, why it stopped early)
Done = Callable[[Usage, int, bool, str | None], None]


def tally(events: list[StreamEvent], usage: Usage) -> int:
    """Fold the chunk's usage reports into ``usage``; return the characters of generated text it carries."""
    n = 0
    for ev in events:
        if isinstance(ev, TextDelta):
            n += len(ev.text)
        elif isinstance(ev, UsageUpdate):
            merge_usage(usage, ev.usage)
        elif isinstance(ev, ToolCallDelta):
            n += len(ev.arguments)
        elif isinstance(ev, ReasoningDelta):
            n += len(ev.text)
    return n


def estimate_usage(usage: Usage, chars: int, prompt_tokens: int) -> Usage:
    """What a cut call is charged: the usage reported so far; the prompt estimate if no prompt tokens were
    reported; and at least the output estimated from the ``chars`` of text the upstream sent (about four
    characters a token)."""
    return Usage(usage.input_tokens or prompt_tokens, max(usage.output_tokens, (chars + 3) // 4),
                 usage.cached_tokens, usage.cache_write_tokens, usage.reasoning_tokens, usage.cache_write_1h_tokens)


class Drains:
    """The drains in flight: each one holds its deployment's stream lease until it ends. ``aclose`` cuts them all
    (each then records with the estimate)."""

    def __init__(self, timeout: float, max_chunks: int) -> None:
        self.timeout = timeout
        self.max_chunks = max_chunks
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self.timeout > 0 and not self._closed

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, rest: AsyncIterator[Chunk], lease: StreamLease | None, usage: Usage, chars: int,
              done: Done) -> None:
        """Read ``rest`` to its end in the background, then call ``done`` (exactly once, whatever happens)."""
        task = asyncio.get_running_loop().create_task(self._drain(rest, lease, usage, chars, done),
                                                      name="switchyard-stream-drain")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, rest: AsyncIterator[Chunk], lease: StreamLease | None, usage: Usage, chars: int,
                     done: Done) -> None:
        complete, outcome = False, Outcome.NEUTRAL
        why: str | None = "the drain was cut"
        until = time.monotonic() + self.timeout
        if lease is not None:  # never past the call's own deadline; the lease still bounds the gaps (idle_s)
            lease.rebind()
            lease.deadline = until if lease.deadline is None else min(lease.deadline, until)
        try:
            async with asyncio.timeout(None if lease is not None else self.timeout):
                for _ in range(self.max_chunks):
                    try:
                        chunk = await (lease.next(rest) if lease is not None else rest.__anext__())
                    except StopAsyncIteration:
                        complete, why, outcome = True, None, Outcome.SUCCESS
                        break
                    chars += tally(chunk.events, usage)
                else:
                    why = f"the upstream sent more than {self.max_chunks} chunks after the client left"
        except SwitchyardError as e:
            why = e.message
            outcome = lease.outcome_of(e) if lease is not None else Outcome.NEUTRAL
        except TimeoutError:
            why = f"the upstream did not finish within {self.timeout:g}s after the client left"
        except asyncio.CancelledError:
            why = "the gateway shut down before the upstream finished"
            raise
        except Exception as e:
            why = f"unexpected {type(e).__name__}"
            log.exception("drain: reading the rest of a stream failed")
        finally:
            with contextlib.suppress(Exception):
                aclose = getattr(rest, "aclose", None)
                if aclose is not None and not complete:
                    await aclose()
            if lease is not None:
                lease.finish(outcome, why if outcome is Outcome.FAILURE else None)
            done(usage, chars, complete, why)

    async def aclose(self) -> None:
        """Cut every drain in flight (each records with its estimate) and wait for them."""
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
