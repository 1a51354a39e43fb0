"""A blob body response in plain ASGI: file segments go out with sendfile where the connection
allows (nvme_cache.ZeroCopySender), bytes otherwise, and a fill's read-along segments are pushed
by its receiving threads where the connection allows; stops when the client leaves, and aborts the
connection (no final chunk) when the bytes behind it fail, so a client never sees a wrong body as
complete."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.types import Message, Receive, Scope, Send

from nvme_cache import FileSegment, FillFailed, LiveSegment, push_segment, send_segment, sender_of

log = logging.getLogger("registry_mirror.responses")

BodyDone = Callable[[int, float | None, bool], None]  # (bytes sent, seconds to first byte, completed)


class BlobResponse:
    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: AsyncIterator[bytes]
        | AsyncIterator[bytes | FileSegment]
        | AsyncIterator[bytes | FileSegment | LiveSegment]
        | None,
        *,
        started: float,
        source: str = "cache",
        on_done: BodyDone | None = None,
    ) -> None:
        self.status_code = status
        self.source = source
        self._headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self._body = body
        self._started = started
        self._on_done = on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self._headers})
        if self._body is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self._done(0, None, True)
            return
        disconnected = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, disconnected))
        sent = 0
        first_byte: float | None = None
        completed = False
        sender = sender_of(scope)
        try:
            async for item in self._body:
                if disconnected.is_set():
                    break
                if first_byte is None:
                    first_byte = time.perf_counter() - self._started
                if isinstance(item, LiveSegment):
                    sent += await push_segment(item, sender)
                elif isinstance(item, FileSegment):
                    sent += await send_segment(item, sender, send)
                else:
                    await send({"type": "http.response.body", "body": item, "more_body": True})
                    sent += len(item)
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                completed = True
        except FillFailed as exc:
            # Returning without completing makes the server close the connection mid-body.
            log.warning("aborting response for %s after %d bytes: %s", scope.get("path"), sent, exc)
        except OSError as exc:
            # The client went away or stopped reading during a zero-copy send.
            log.info("response for %s ended after %d bytes: %s", scope.get("path"), sent, exc)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            aclose = getattr(self._body, "aclose", None)
            if aclose is not None:
                await aclose()
            self._done(sent, first_byte, completed)

    def _done(self, sent: int, first_byte: float | None, completed: bool) -> None:
        if self._on_done is not None:
            self._on_done(sent, first_byte, completed)


async def _watch_disconnect(receive: Receive, disconnected: asyncio.Event) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            disconnected.set()
            return
