"""A local durable spool: records appended as lines to a file before the response completes, shipped later.

Each gateway process appends to its own files in the spool directory, named
``<prefix>-<host>-<pid>-<random>-<seq>.jsonl``, and holds an exclusive ``flock`` on each while it lives. One
record is one ``os.write`` of one line to a file opened with ``O_APPEND``: once that call returns, the record is
in the kernel's page cache and survives the death of the process (SIGKILL included); the fsync policy decides
what survives the machine losing power:

* ``always``  — ``fsync`` after every record (nothing acknowledged is lost; costs a disk flush per request);
* ``interval`` (default) — the shipper fsyncs every ``fsync_interval`` seconds (a power cut loses at most that);
* ``none``    — left to the kernel's writeback (about 30 s on Linux).

The shipper reads what was appended since its last commit (whole lines only), hands it to a writer, and advances
its offset once the writer's transaction has committed. A file that has grown past ``rotate_bytes`` is sealed (a
new one takes the appends) and deleted once fully shipped. Files of a dead process (their lock is free) are
*adopted*: shipped in full and deleted by whichever live process on the machine finds them first. Shipping is at
least once; the writer makes it exactly once (unique request ids). A new file is created under a temporary name,
locked, and only then renamed into place, so that no process can adopt a file that its owner is still opening.

*Intents*: a line appended with :meth:`Spool.append_intent` says that a call was admitted; the record appended
with ``append(line, done=request_id)`` is its outcome. A file is not deleted while it holds an intent whose outcome
has not been written (in it or in a later file), so that when a process dies, every call it left in flight has its
intent in a file that survives it. A dead process's files are adopted together (all of them or none), and each
adopted file stays until :meth:`Spool.release` says its intents were looked at (see
:mod:`switchyard.governance.intents`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger("switchyard.spool")

FsyncPolicy = Literal["none", "interval", "always"]


@dataclass(slots=True, eq=False)
class Segment:
    path: Path
    fd: int
    size: int  # bytes appended (our own files) or found (adopted ones)
    shipped: int = 0  # bytes committed downstream
    own: bool = True  # ours (appended by this process) or adopted from a dead one
    sealed: bool = False  # no more appends: delete once shipped
    intents: int = 0  # intents in it still without an outcome (adopted: 1 until released): kept until 0


@dataclass(slots=True)
class Batch:
    """Complete lines read from one segment, ``[start, end)``."""

    segment: Segment
    start: int
    end: int
    lines: list[bytes]


class Spool:
    def __init__(self, directory: str | Path, *, prefix: str = "spend", fsync: FsyncPolicy = "interval",
                 rotate_bytes: int = 4 * 1024 * 1024) -> None:
        self.dir = Path(directory)
        self.prefix = prefix
        self.fsync_policy = fsync
        self.rotate_bytes = rotate_bytes
        self._lock = threading.Lock()  # appends vs. rotation (appends may come from any thread)
        self._id = f"{prefix}-{_safe(socket.gethostname())}-{os.getpid()}-{secrets.token_hex(4)}"
        self._seq = 0
        self.active: Segment | None = None
        self.segments: list[Segment] = []  # sealed own segments and adopted ones, oldest first
        self._dirty = False  # appended since the last fsync
        self._open: dict[str, Segment] = {}  # request id -> the segment holding its intent, until its outcome
        self.unscanned: list[list[Segment]] = []  # adopted files, by dead process, whose intents were not looked at

    # --- appending (the hot path) --------------------------------------------------------------------------

    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self.active is None:
                self.active = self._new_segment()

    def append(self, line: bytes, done: str | None = None) -> None:
        """Append one record (a line ending in ``\\n``) with a single ``write``: durable against process death
        when this returns. ``done``: the request id whose intent this record is the outcome of."""
        with self._lock:
            self._write(line)
            if done is not None:
                held = self._open.pop(done, None)
                if held is not None:
                    held.intents -= 1

    def append_intent(self, line: bytes, request_id: str) -> None:
        """Append a call's intent: its file is kept until the call's outcome is appended (``append(done=...)``)."""
        with self._lock:
            seg = self._write(line)
            seg.intents += 1
            self._open[request_id] = seg

    def _write(self, line: bytes) -> Segment:
        """One line, one ``write`` (under the lock)."""
        seg = self.active
        if seg is None:  # not opened yet (or closed at shutdown): a file of its own, adopted if left behind
            self.dir.mkdir(parents=True, exist_ok=True)
            seg = self.active = self._new_segment()
        n = os.write(seg.fd, line)
        if n != len(line):  # a short write to a regular file: a full disk; finish the line or fail loudly
            os.write(seg.fd, line[n:])
        seg.size += len(line)
        if self.fsync_policy == "always":
            os.fsync(seg.fd)
        else:
            self._dirty = True
        return seg

    def sync(self) -> None:
        """fsync the active file if anything was appended since the last time (policy ``interval``)."""
        if not self._dirty:
            return
        self._dirty = False
        seg = self.active
        if seg is not None:
            with contextlib.suppress(OSError):
                os.fsync(seg.fd)

    # --- shipping ------------------------------------------------------------------------------------------

    def pending(self) -> int:
        """Bytes appended or adopted but not yet shipped."""
        with self._lock:
            segs = [*self.segments, *([self.active] if self.active else [])]
            return sum(s.size - s.shipped for s in segs)

    def read(self, max_bytes: int = 1 << 20, max_lines: int = 1000) -> Batch | None:
        """The next complete lines to ship (oldest segment first), or None when everything is shipped."""
        with self._lock:
            order = [*self.segments, *([self.active] if self.active else [])]
            snapshot = [(s, s.size) for s in order]
        for seg, size in snapshot:
            if seg.shipped >= size:
                continue
            data = os.pread(seg.fd, min(size - seg.shipped, max_bytes), seg.shipped)
            end = data.rfind(b"\n")
            if end < 0 and len(data) < size - seg.shipped:  # one line longer than max_bytes: read to its end
                data = os.pread(seg.fd, size - seg.shipped, seg.shipped)
                end = data.find(b"\n")
            if end < 0:
                if seg.own and len(data) < max_bytes:
                    continue  # cannot happen for our own whole-line appends; wait rather than guess
                log.error("spool: %s has %d bytes with no line end at offset %d; skipped", seg.path.name, len(data),
                          seg.shipped)
                seg.shipped += len(data)
                continue
            lines = data[:end].split(b"\n")
            if len(lines) > max_lines:
                lines = lines[:max_lines]
                end = sum(len(x) + 1 for x in lines) - 1
            return Batch(seg, seg.shipped, seg.shipped + end + 1, lines)
        self._reap()  # a segment may have ended in a skipped torn line
        return None

    def commit(self, batch: Batch) -> None:
        """The batch is safely downstream: advance past it, and delete a sealed segment that is done."""
        seg = batch.segment
        seg.shipped = max(seg.shipped, batch.end)
        self._reap()

    def _reap(self) -> None:
        with self._lock:
            if self.active is not None and self.active.size >= self.rotate_bytes:
                old, self.active = self.active, self._new_segment()
                old.sealed = True
                self.segments.append(old)
                if self.fsync_policy != "none" and old.shipped < old.size:
                    with contextlib.suppress(OSError):
                        os.fsync(old.fd)
            done = [s for s in self.segments if s.shipped >= s.size and not s.intents]
            self.segments = [s for s in self.segments if s.shipped < s.size or s.intents]
        for s in done:
            self._remove(s)

    def adopt(self, scan: bool = False) -> int:
        """Take over the files of processes that died (their lock is free). Returns how many were adopted.

        A process's files are taken in order, and all or none: if the first is locked (its owner is alive, or
        another adopter is taking them), the rest are left too. With ``scan``, the adopted files of each process
        are added to ``unscanned``, and kept until :meth:`release`."""
        mine = {s.path for s in self.segments} | ({self.active.path} if self.active else set())
        found = 0
        try:
            candidates = sorted(self.dir.glob(f"{self.prefix}-*.jsonl"))
        except OSError:
            return 0
        groups: dict[str, list[Path]] = {}
        for path in candidates:
            if path not in mine:
                groups.setdefault(path.name.rsplit("-", 1)[0], []).append(path)
        for paths in groups.values():
            taken: list[Segment] = []
            for path in paths:
                seg = self._take(path, scan)
                if seg is None and not taken:
                    break  # the first is locked: its owner, or another adopter, has them all
                if seg is not None:
                    taken.append(seg)
            if taken:
                with self._lock:
                    self.segments[:0] = taken
                    if scan:
                        self.unscanned.append(taken)
                found += len(taken)
        if found:
            log.info("spool: adopted %d file(s) left by a stopped gateway", found)
        return found

    def _take(self, path: Path, hold: bool) -> Segment | None:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return None  # deleted meanwhile by another adopter
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # its owner is alive
            return None
        if not path.exists():  # another adopter shipped and deleted it before we got the lock
            os.close(fd)
            return None
        return Segment(path, fd, os.fstat(fd).st_size, own=False, sealed=True, intents=int(hold))

    def read_all(self, seg: Segment) -> list[bytes]:
        """Every complete line of a segment (to look at an adopted file's intents)."""
        data = os.pread(seg.fd, seg.size, 0)
        return data[:data.rfind(b"\n") + 1].splitlines()

    def release(self, segments: list[Segment]) -> None:
        """The intents of these adopted files have been looked at: delete them once shipped."""
        with self._lock:
            for s in segments:
                s.intents = 0
        self._reap()

    def close(self) -> None:
        """Close every file; delete the ones fully shipped (the others are adopted by the next process)."""
        with self._lock:
            segs = [*self.segments, *([self.active] if self.active else [])]
            self.segments, self.active = [], None
        for s in segs:
            if s.shipped >= s.size and not s.intents:
                self._remove(s)
            else:
                with contextlib.suppress(OSError):
                    os.fsync(s.fd)
                os.close(s.fd)

    # --- files ---------------------------------------------------------------------------------------------

    def _new_segment(self) -> Segment:
        self._seq += 1
        final = self.dir / f"{self._id}-{self._seq:06d}.jsonl"
        tmp = self.dir / f".{final.name}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(tmp, final)
        return Segment(final, fd, 0)

    @staticmethod
    def _remove(s: Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            s.path.unlink()
        with contextlib.suppress(OSError):
            os.close(s.fd)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "host"
