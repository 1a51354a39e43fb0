"""`registry-mirror` whose peer server flips the first byte of every piece it uploads.

A fault-injection peer for the swarm tests (a real process, like the others), kept out of the
product: run it as `python tests/support/corrupting_peer.py serve ...` with the usual arguments
(MirrorProcess(command=CORRUPTING_PEER)). Its own fills and cached bytes stay honest; only what it
sends to other peers is wrong, which they must detect by the piece hashes and route around.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import p2p.peer_server
from nvme_cache import FileSegment, read_segment
from registry_mirror.cli import main

COMMAND = [sys.executable, str(Path(__file__).resolve())]

_honest_upload = p2p.peer_server._upload


async def _flip_first_byte(body: AsyncIterator[bytes | FileSegment]) -> AsyncIterator[bytes | FileSegment]:
    first = True
    try:
        async for item in body:
            count = item.count if isinstance(item, FileSegment) else len(item)
            if first and count:
                data = item if isinstance(item, bytes) else await asyncio.to_thread(read_segment, item)
                item = bytes([data[0] ^ 0xFF]) + data[1:]
            first = False
            yield item
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


def _corrupting_upload(node: object, body: AsyncIterator[bytes | FileSegment], *args: object) -> object:
    return _honest_upload(node, _flip_first_byte(body), *args)  # type: ignore[arg-type]  # same signature


if __name__ == "__main__":
    p2p.peer_server._upload = _corrupting_upload  # type: ignore[assignment]  # the one fault injected
    sys.exit(main())
