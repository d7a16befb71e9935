"""SpooledBody: small bodies stay in memory, large ones go to an unnamed temporary file with
memory bounded, both digests are right, the limit holds, and no file outlives the body."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gateway.errors import fault_for
from gateway.spool import SpooledBody, SpoolFailed, TooLarge

KIB = 1024
MiB = 1024 * KIB


def _spool_files(directory: Path) -> list[str]:
    """Files of this process open in ``directory`` (unnamed ones show as ``#inode (deleted)``)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


async def _read(body: SpooledBody) -> bytes:
    return b"".join([chunk async for chunk in body.chunks()])


async def test_small_body_stays_in_memory(tmp_path: Path) -> None:
    body = SpooledBody(limit=MiB, memory_threshold=64 * KIB, directory=tmp_path)
    data = b"small body " * 100
    await body.write(data[:500])
    await body.write(data[500:])
    assert body.in_memory and body.memory_bytes == len(data) == body.size
    assert _spool_files(tmp_path) == []
    assert body.small_bytes() == data == await _read(body) == body.read_all_blocking()
    assert body.sha256() == hashlib.sha256(data).digest()
    assert body.sha512() == hashlib.sha512(data).digest()
    body.close()


async def test_large_body_goes_to_disk_with_memory_bounded(tmp_path: Path) -> None:
    threshold = 100 * KIB
    body = SpooledBody(limit=8 * MiB, memory_threshold=threshold, directory=tmp_path)
    chunk = os.urandom(64 * KIB)
    expected256, expected512 = hashlib.sha256(), hashlib.sha512()
    peak = 0
    for _ in range(40):  # 2.5 MiB
        await body.write(chunk)
        expected256.update(chunk)
        expected512.update(chunk)
        peak = max(peak, body.memory_bytes)
    assert peak <= threshold
    assert not body.in_memory and body.memory_bytes == 0
    assert body.small_bytes() is None
    files = _spool_files(tmp_path)
    assert len(files) == 1 and files[0].endswith("(deleted)")  # on disk, but nameless
    fd = next(
        int(fd)
        for fd in os.listdir("/proc/self/fd")
        if os.readlink(f"/proc/self/fd/{fd}") == files[0]
    )
    assert os.fstat(fd).st_size == body.size == 40 * len(chunk)
    assert body.sha256() == expected256.digest()
    assert body.sha512() == expected512.digest()
    assert body.sha512_state().digest() == expected512.digest()
    data = await _read(body)
    assert hashlib.sha512(data).digest() == expected512.digest()
    assert await _read(body) == data == body.read_all_blocking()  # readable again
    body.close()
    assert _spool_files(tmp_path) == []
    body.close()  # idempotent


async def test_limit_raises_and_releases_the_file(tmp_path: Path) -> None:
    body = SpooledBody(
        limit=300 * KIB,
        memory_threshold=64 * KIB,
        directory=tmp_path,
        too_large_code="ServiceFailed.MessageTooLarge",
    )
    await body.write(b"x" * 200 * KIB)
    assert len(_spool_files(tmp_path)) == 1
    with pytest.raises(TooLarge) as caught:
        await body.write(b"x" * 200 * KIB)
    assert str(300 * KIB) in str(caught.value)
    assert body.size == 200 * KIB  # the refused chunk is not counted: size is what is digested
    assert fault_for(caught.value).full_code() == "Server.ServerProxy.ServiceFailed.MessageTooLarge"
    assert _spool_files(tmp_path) == []  # released at once, not when the caller closes


async def test_limit_in_memory(tmp_path: Path) -> None:
    body = SpooledBody(limit=10, directory=tmp_path)
    with pytest.raises(TooLarge) as caught:
        await body.write(b"x" * 11)
    assert fault_for(caught.value).full_code() == "Client.MessageTooLarge"


async def test_disk_failure_is_a_coded_error(tmp_path: Path) -> None:
    body = SpooledBody(limit=MiB, memory_threshold=KIB, directory=tmp_path / "missing")
    await body.write(b"x" * 512)
    with pytest.raises(SpoolFailed) as caught:
        await body.write(b"x" * 1024)
    assert "could not be spooled to disk" in str(caught.value)
    assert fault_for(caught.value).code == "InternalError"
    body.close()


async def test_fill_reads_an_async_source(tmp_path: Path) -> None:
    async def source():  # type: ignore[no-untyped-def]
        for i in range(5):
            yield bytes([i]) * 30 * KIB

    body = await SpooledBody(limit=MiB, memory_threshold=64 * KIB, directory=tmp_path).fill(
        source()
    )
    assert body.size == 150 * KIB and not body.in_memory
    assert await _read(body) == b"".join(bytes([i]) * 30 * KIB for i in range(5))
    body.close()


async def test_a_body_read_back_from_disk_is_the_body_received(tmp_path: Path) -> None:
    """The audit log stores (and seals) what `read_all_blocking` returns under the SHA-512
    taken as the body arrived, without hashing it again: a spool file changed on disk is
    refused, not stored under a digest it does not have."""
    body = SpooledBody(limit=MiB, memory_threshold=KIB, directory=tmp_path)
    await body.write(b"a" * 4 * KIB)
    (name,) = _spool_files(tmp_path)
    fd = next(
        int(fd) for fd in os.listdir("/proc/self/fd") if os.readlink(f"/proc/self/fd/{fd}") == name
    )
    assert body.read_all_blocking() == b"a" * 4 * KIB
    os.pwrite(fd, b"b", 100)
    with pytest.raises(SpoolFailed, match="not the body received"):
        body.read_all_blocking()
    body.close()
