"""Poll one published catalog (REGISTRY/REPO:TAG): verify, check, activate, prefetch, pin.

Order on every poll: fetch the envelope bytes -> verify the DSSE signature with the trusted keys
(nothing parses the payload before this) -> parse strictly -> refuse expired catalogs, a serial not
above the active one (a signed rollback too carries a higher serial, naming the one it
supersedes) and anything at or below a serial an operator rolled back from -> write the state file atomically -> pin the new blob set under `catalog:<name>` (the
previous catalog's own blobs become evictable) -> prefetch in the background.
Each refusal logs one line and counts `catalog_refusals{reason}`; nothing else changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from catalog.activate import check_activation
from catalog.delta_source import DeltaSources, DeltaTable
from catalog.errors import (
    CatalogError,
    ExpiredError,
    RegistryError,
    RollbackError,
    SchemaError,
    SignatureError,
    TooLargeError,
)
from catalog.fetch import pull_catalog
from catalog.metrics import activations, poll_errors, refusals, serial
from catalog.models import Blob, Catalog, format_time, parse_catalog
from catalog.prefetch import PrefetchProgress, SourceFor, prefetch
from catalog.registry import Reference, parse_reference
from catalog.signing import verify
from catalog.state import SavedState, StateFile
from nvme_cache import BlobStore

log = logging.getLogger("catalog.poller")

EnvelopeFetcher = Callable[[Reference], Awaitable[bytes]]
Clock = Callable[[], datetime]


class RolledBackError(RollbackError):
    """The serial is one an operator rolled back from; CI must publish a newer one."""


def refusal_reason(exc: CatalogError) -> str:
    for kind, reason in (
        (RolledBackError, "rolled_back"),
        (SignatureError, "signature"),
        (TooLargeError, "too_large"),
        (SchemaError, "schema"),
        (ExpiredError, "expired"),
        (RollbackError, "serial"),
    ):
        if isinstance(exc, kind):
            return reason
    return "invalid"


def parse_source(text: str) -> Reference:
    ref = parse_reference(text)
    if ref.tag is None or ref.digest is not None:
        raise ValueError(f"catalog source must be REGISTRY/REPO:TAG, got {text!r}")
    return ref


class CatalogPoller:
    def __init__(
        self,
        source: Reference,
        *,
        store: BlobStore,
        trusted_keys: Sequence[Ed25519PublicKey],
        state_dir: Path,
        source_for: SourceFor,
        deltas: DeltaSources | None = None,
        insecure: bool = False,
        poll_interval: float = 60.0,
        prefetch_concurrency: int = 4,
        fetch_envelope: EnvelopeFetcher | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.source = source
        self._store = store
        self._keys = list(trusted_keys)
        self._state_file = StateFile(state_dir, str(source))
        self._source_for = source_for
        self._deltas = deltas
        self._insecure = insecure
        self._interval = poll_interval
        self._concurrency = prefetch_concurrency
        self._fetch = fetch_envelope or self._pull
        self._now = clock or (lambda: datetime.now(UTC))
        self._lock = asyncio.Lock()
        self._state = SavedState()
        self.active: Catalog | None = None
        self.previous: Catalog | None = None
        self.activated_at: float | None = None
        self.progress: PrefetchProgress | None = None
        self._prefetch_task: asyncio.Task[PrefetchProgress] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._last_refused: str | None = None  # sha256 of the last refused envelope: log it once
        self.last_poll: float | None = None
        self.last_error: str | None = None
        self.last_refusal: dict[str, Any] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self.restore()
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name=f"catalog poller {self.source}")

    async def aclose(self) -> None:
        for task in (self._loop_task, self._prefetch_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def restore(self) -> None:
        """Load the saved state; the active envelope is verified again before it is trusted."""
        try:
            self._state = await asyncio.to_thread(self._state_file.load)
        except CatalogError as exc:
            log.error("catalog %s: %s; starting without an active catalog", self.source, exc)
            return
        self.active = self._trusted(self._state.active, "active")
        self.previous = self._trusted(self._state.previous, "previous")
        if self.active is not None:
            log.info("catalog %s: restored %r serial %d", self.source, self.active.name, self.active.serial)
            self._apply(self.active, kind="restore")

    def _trusted(self, envelope: bytes | None, which: str) -> Catalog | None:
        if envelope is None:
            return None
        try:
            return parse_catalog(verify(envelope, self._keys))
        except CatalogError as exc:
            reason = refusal_reason(exc)
            refusals.add(1, {"reason": f"state_{reason}"})
            log.error("catalog %s: saved %s catalog refused (%s): %s", self.source, which, reason, exc)
            return None

    async def _run(self) -> None:
        while True:
            await self.poll_once()
            self._resume_prefetch()
            await asyncio.sleep(self._interval)

    # -- one poll ----------------------------------------------------------------------------
    async def poll_once(self) -> str:
        """'activated', 'unchanged', 'refused:<reason>' or 'error'."""
        self.last_poll = time.time()
        try:
            envelope = await self._fetch(self.source)
        except TooLargeError as exc:  # refused before a byte of it is read
            async with self._lock:
                return self._refuse(exc, hashlib.sha256(str(exc).encode()).hexdigest())
        except Exception as exc:  # the registry is down or answers nonsense
            poll_errors.add(1)
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("catalog %s: poll failed: %s", self.source, self.last_error)
            return "error"
        self.last_error = None
        async with self._lock:
            if envelope == self._state.active:
                return "unchanged"
            fingerprint = hashlib.sha256(envelope).hexdigest()
            try:
                catalog = self._check(envelope)
            except CatalogError as exc:
                return self._refuse(exc, fingerprint)
            await self._activate(catalog, envelope)
            self._last_refused = None
            return "activated"

    def _check(self, envelope: bytes) -> Catalog:
        catalog = parse_catalog(verify(envelope, self._keys))  # the signature first, then the parser
        check_activation(self.active, catalog, self._now())
        floor = self._state.rolled_back_from
        if floor is not None and catalog.serial <= floor:
            raise RolledBackError(
                f"catalog {catalog.name!r} serial {catalog.serial} was rolled back from "
                f"here; publish a serial above {floor}"
            )
        return catalog

    def _refuse(self, exc: CatalogError, fingerprint: str) -> str:
        reason = refusal_reason(exc)
        if fingerprint == self._last_refused:
            log.debug("catalog %s: same refused envelope again (%s)", self.source, reason)
            return f"refused:{reason}"
        self._last_refused = fingerprint
        refusals.add(1, {"reason": reason})
        self.last_refusal = {"reason": reason, "message": str(exc), "at": time.time(), "envelope_sha256": fingerprint}
        active = f"serial {self.active.serial}" if self.active else "none"
        log.warning("catalog %s: refused (%s): %s; active catalog stays %s", self.source, reason, exc, active)
        return f"refused:{reason}"

    async def _activate(self, catalog: Catalog, envelope: bytes) -> None:
        floor = self._state.rolled_back_from
        state = SavedState(
            active=envelope,
            previous=self._state.active,
            rolled_back_from=floor if floor is not None and catalog.serial <= floor else None,
        )
        await asyncio.to_thread(self._state_file.save, state)  # durable before anything acts on it
        self._state, self.previous, self.active = state, self.active, catalog
        log.info(
            "catalog %s: activated %r serial %d (%d images, %d blobs, %d deltas), expires %s",
            self.source,
            catalog.name,
            catalog.serial,
            len(catalog.images),
            len(catalog.blobs),
            len(catalog.deltas),
            format_time(catalog.expires),
        )
        self._apply(catalog, kind="rollback" if catalog.rollback else "update")

    def _apply(self, catalog: Catalog, kind: str) -> None:
        """Pins, delta table, metrics and a fresh prefetch for the catalog just made active."""
        self.activated_at = time.time()
        self._store.pin(pin_name(catalog.name), [b.digest for b in catalog.blobs])
        if self._deltas is not None:
            self._deltas.use(catalog.name, DeltaTable.of(catalog, self.source.registry, self.source.repository))
        serial.set(catalog.serial, {"catalog": catalog.name})
        activations.add(1, {"kind": kind})
        self._start_prefetch(catalog)

    # -- rollback ----------------------------------------------------------------------------
    async def rollback(self) -> Catalog:
        """Make the previous catalog active again (verified and unexpired); the serial rolled back
        from is refused from now on until CI publishes a newer one."""
        async with self._lock:
            if self._state.previous is None or self.active is None:
                raise CatalogError(f"catalog {self.source}: no previous catalog to roll back to")
            previous = parse_catalog(verify(self._state.previous, self._keys))
            if previous.expires <= self._now():
                raise ExpiredError(
                    f"previous catalog serial {previous.serial} expired at {format_time(previous.expires)}"
                )
            floor = max(self.active.serial, self._state.rolled_back_from or -1)
            state = SavedState(active=self._state.previous, previous=self._state.active, rolled_back_from=floor)
            await asyncio.to_thread(self._state_file.save, state)
            self._state, self.previous, self.active = state, self.active, previous
            self._last_refused = None
            log.warning(
                "catalog %s: rolled back to %r serial %d; serials up to %d are refused from now on",
                self.source,
                previous.name,
                previous.serial,
                floor,
            )
            self._apply(previous, kind="operator_rollback")
            return previous

    # -- prefetch ----------------------------------------------------------------------------
    def _start_prefetch(self, catalog: Catalog) -> None:
        if self._prefetch_task is not None and not self._prefetch_task.done():
            self._prefetch_task.cancel()  # a newer catalog replaces the one being fetched
        self.progress = PrefetchProgress(catalog.name, catalog.serial)
        items = [(blob, self._registry_of(catalog, blob)) for blob in catalog.blobs]
        self._prefetch_task = asyncio.get_running_loop().create_task(
            prefetch(self._store, items, self._source_for, self.progress, self._concurrency),
            name=f"catalog prefetch {catalog.name} {catalog.serial}",
        )

    def _resume_prefetch(self) -> None:
        # Blobs that failed (origin down, cache full) are tried again on the next poll.
        task, progress = self._prefetch_task, self.progress
        if (
            self.active is not None
            and task is not None
            and task.done()
            and progress is not None
            and not progress.complete
        ):
            self._start_prefetch(self.active)

    async def wait_prefetch(self) -> PrefetchProgress | None:
        if self._prefetch_task is None:
            return None
        return await asyncio.shield(self._prefetch_task)

    def _registry_of(self, catalog: Catalog, blob: Blob) -> str:
        for image in catalog.images:
            with contextlib.suppress(ValueError):
                ref = parse_reference(image.ref)
                if ref.repository == blob.repository:
                    return ref.registry
        return self.source.registry

    async def _pull(self, source: Reference) -> bytes:
        assert source.tag is not None
        return await asyncio.to_thread(pull_catalog, source.registry, source.repository, source.tag, self._insecure)

    # -- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "active": _summary(self.active),
            "previous": _summary(self.previous),
            "activated_at": self.activated_at,
            "rolled_back_from": self._state.rolled_back_from,
            "prefetch": self.progress.as_dict() if self.progress else None,
            "last_poll": self.last_poll,
            "last_error": self.last_error,
            "last_refusal": self.last_refusal,
        }


def pin_name(catalog_name: str) -> str:
    return f"catalog:{catalog_name}"


def _summary(catalog: Catalog | None) -> dict[str, Any] | None:
    if catalog is None:
        return None
    return {
        "name": catalog.name,
        "serial": catalog.serial,
        "created": format_time(catalog.created),
        "expires": format_time(catalog.expires),
        "images": [i.ref for i in catalog.images],
        "blobs": len(catalog.blobs),
        "bytes": sum(b.size for b in catalog.blobs),
        "deltas": len(catalog.deltas),
        "rollback": catalog.rollback,
    }


__all__ = ["CatalogPoller", "RegistryError", "parse_source", "pin_name", "refusal_reason"]
