"""Message bodies of any size with flat memory: kept in memory while small, spooled to a
temporary file above a threshold, digested (SHA-256 and SHA-512) as they arrive.

The temporary file has no name (``tempfile.TemporaryFile``): nothing is left on disk when the
body is closed, when it grows past its limit, or when the process dies.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from typing import IO

from gateway.errors import GatewayError

__all__ = ["SpoolFailed", "SpooledBody", "TooLarge"]

CHUNK = 64 * 1024


class TooLarge(GatewayError):
    """A body grew past its limit while it was read."""


class SpoolFailed(GatewayError):
    """The body could not be written to or read from its temporary file (disk full, I/O)."""


class SpooledBody:
    """A body written once, chunk by chunk, then read back any number of times.

    File writes and reads go through a worker thread so the event loop never blocks on disk.
    At most ``memory_threshold`` bytes are held in memory; past it, everything goes to a
    temporary file in ``directory`` (default: the system's temporary directory). Growing past
    ``limit`` raises `TooLarge` and releases the file; a failing disk raises `SpoolFailed` and
    releases it too.
    """

    def __init__(
        self,
        *,
        limit: int,
        memory_threshold: int = 1024 * 1024,
        too_large_code: str = "MessageTooLarge",
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self._limit = limit
        self._threshold = memory_threshold
        self._code = too_large_code
        self._directory = directory
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._sha512 = hashlib.sha512()
        self._closed = False

    @property
    def in_memory(self) -> bool:
        """True while the body has not been spooled to disk."""
        return self._file is None

    @property
    def memory_bytes(self) -> int:
        """How many bytes of the body are held in memory now."""
        return len(self._memory)

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk``; raises `TooLarge` past the limit, `SpoolFailed` on a disk error.

        A chunk refused as too large is not counted: `size` is always what the digests
        cover (the bytes accepted before the refusal).
        """
        if self.size + len(chunk) > self._limit:
            self.close()
            raise TooLarge(f"the body is larger than {self._limit} bytes", code=self._code)
        self.size += len(chunk)
        self._sha256.update(chunk)
        self._sha512.update(chunk)
        if self._file is None and len(self._memory) + len(chunk) <= self._threshold:
            self._memory += chunk
            return
        try:
            if self._file is None:
                file: IO[bytes] = await asyncio.to_thread(
                    tempfile.TemporaryFile, prefix="obmin-body-", dir=self._directory
                )
                self._file = file
                pending = bytes(self._memory) + chunk
                self._memory = bytearray()
                await asyncio.to_thread(file.write, pending)
                return
            await asyncio.to_thread(self._file.write, chunk)
        except OSError as exc:
            self.close()
            raise SpoolFailed(
                f"the body could not be spooled to disk: {exc.strerror or exc}"
            ) from exc

    async def fill(self, chunks: AsyncIterator[bytes]) -> SpooledBody:
        """Write every chunk of ``chunks``; returns self."""
        async for chunk in chunks:
            await self.write(chunk)
        return self

    def sha256(self) -> bytes:
        """SHA-256 of everything written."""
        return self._sha256.digest()

    def sha512(self) -> bytes:
        """SHA-512 of everything written."""
        return self._sha512.digest()

    def sha512_state(self) -> hashlib._Hash:
        """A copy of the running SHA-512 (for a Content-Digest header)."""
        return self._sha512.copy()

    def small_bytes(self) -> bytes | None:
        """The body itself when it is still in memory, else ``None``."""
        return bytes(self._memory) if self._file is None else None

    def read_all_blocking(self) -> bytes:
        """The whole body as bytes. Blocks on disk: call it from a worker thread.

        Reads with ``os.pread``, so it does not move the file position `chunks` uses. What
        is read back from disk is checked against the size and SHA-512 taken as the body
        arrived (`SpoolFailed` if it differs), so a caller may use `sha512` for it unhashed.
        """
        if self._file is None:
            return bytes(self._memory)
        try:
            self._file.flush()
            fd = self._file.fileno()
            parts = []
            offset = 0
            while offset < self.size:
                part = os.pread(fd, min(CHUNK * 16, self.size - offset), offset)
                if not part:
                    break
                parts.append(part)
                offset += len(part)
        except (OSError, ValueError) as exc:
            raise SpoolFailed("the spooled body could not be read back") from exc
        data = b"".join(parts)
        if len(data) != self.size or hashlib.sha512(data).digest() != self.sha512():
            raise SpoolFailed("the spooled body read back from disk is not the body received")
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body again, from the start, chunk by chunk."""
        if self._file is None:
            for start in range(0, len(self._memory), CHUNK):
                yield bytes(self._memory[start : start + CHUNK])
            return
        file = self._file
        await asyncio.to_thread(file.seek, 0)
        while True:
            chunk = await asyncio.to_thread(file.read, CHUNK)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        """Release the temporary file, if any."""
        if self._file is not None and not self._closed:
            self._file.close()
        self._closed = True
