"""A tracker store in Redis, so several tracker replicas behind a load balancer agree.

Every decision that must be exclusive runs server-side in one Lua script (registration, leases,
piece hashes, the per-peer record cap, reports); expiry is Redis's own (PX), except inside the
per-digest report and exclusion hashes, whose fields carry a deadline in ms (the tracker's wall
clock). The sorted sets under `index:` only feed `/v1/stats` and are allowed to be approximate.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from p2p.tracker import models
from p2p.tracker.models import BlobState, Lease, PeerHolding, PeerInfo, PieceHashes
from p2p.tracker.readiness import CatalogList, list_id
from p2p.tracker.store import PieceConflict, PiecesWrite, Registration, StoreStats

_KEPT_SERIALS = 4
_CATALOG_TTL_MS = 7 * 24 * 3600 * 1000

# A peer key holds "<session>\n<peer json>"; an existing session survives re-registration.
# KEYS[2], the peer's record set, starts empty with a new session.
_REGISTER = """
local cur = redis.call('GET', KEYS[1])
local session, was = ARGV[2], 0
if cur then
  local nl = string.find(cur, '\\n', 1, true)
  if nl then session = string.sub(cur, 1, nl - 1); was = 1 end
end
if was == 0 then redis.call('DEL', KEYS[2]) end
redis.call('SET', KEYS[1], session .. '\\n' .. ARGV[1], 'PX', ARGV[3])
return {session, was}
"""

_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); return {1, ARGV[1], tonumber(ARGV[2]), 0}
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]); return {1, cur, tonumber(ARGV[2]), 1}
end
return {0, cur, redis.call('PTTL', KEYS[1]), 0}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]); return 1 end
return 0
"""

# KEYS: pieces, excluded, reports of one digest. ARGV: ttl_ms, writer, piece_size, size or '',
# then field/value pairs (h:<index>, hex). All or nothing; see TrackerStore.put_piece_hashes.
_PUT_PIECES = """
local function conflict()
  local ps = redis.call('HGET', KEYS[1], 'ps')
  if not ps then return false end
  if ps ~= ARGV[3] then return {'piece_size', ps, ARGV[3]} end
  if ARGV[4] ~= '' then
    local size = redis.call('HGET', KEYS[1], 'size')
    if size and size ~= ARGV[4] then return {'size', size, ARGV[4]} end
  end
  for i = 5, #ARGV, 2 do
    local stored = redis.call('HGET', KEYS[1], ARGV[i])
    if stored and stored ~= ARGV[i + 1] then return {ARGV[i], stored, ARGV[i + 1]} end
  end
  return false
end
local c = conflict()
local replaced = 0
if c then
  if redis.call('HEXISTS', KEYS[1], 'w:' .. ARGV[2]) == 1 then return {c[1], c[2], c[3]} end
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]); replaced = 1
end
redis.call('HSET', KEYS[1], 'ps', ARGV[3], 'w:' .. ARGV[2], '1')
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'size', ARGV[4]) end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {'', '', '', replaced}
"""

_RESET_PIECES = """
if redis.call('HEXISTS', KEYS[1], 'w:' .. ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]); return 1
"""

# KEYS: reports, excluded of one digest. ARGV: peer, reporter, now_ms, ttl_ms, shown (0/1), needed.
# Reports are fields "<peer>\n<reporter>" -> deadline ms; exclusions "<peer>" -> deadline ms.
_REPORT = """
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1] .. '\\n' .. ARGV[2], now + ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
local count = 0
local prefix = ARGV[1] .. '\\n'
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) <= now then redis.call('HDEL', KEYS[1], all[i])
  elseif string.sub(all[i], 1, #prefix) == prefix then count = count + 1 end
end
if ARGV[5] ~= '1' and count < tonumber(ARGV[6]) then return 0 end
local until_ms = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HSET', KEYS[2], ARGV[1], math.max(until_ms, now + ttl))
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
if until_ms > now then return 0 end
return 1
"""

# KEYS[1]: the peer's record set. ARGV: ttl_ms, cap, digests...; returns 1/0 per digest (stored).
_CAP_RECORDS = """
local cap = tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 or redis.call('SCARD', KEYS[1]) < cap then
    redis.call('SADD', KEYS[1], ARGV[i]); out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return out
"""


class RedisStore:
    kind = "redis"

    def __init__(
        self,
        url: str,
        peer_ttl: float,
        pieces_ttl: float = 24 * 3600.0,
        prefix: str = "registry-mirror:tracker:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        # `clock` (wall seconds, shared by every replica) stamps the index scores and reports; key TTLs
        # (PX/PEXPIRE) run on the Redis server's clock, so tests of those wait on a condition instead.
        self._clock = clock
        self._redis: Any = aioredis.from_url(url, decode_responses=True)
        self._peer_ttl_ms = max(1, int(peer_ttl * 1000))
        self._pieces_ttl_ms = max(1, int(pieces_ttl * 1000))
        self._p = prefix
        self._register = self._redis.register_script(_REGISTER)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)
        self._put_pieces = self._redis.register_script(_PUT_PIECES)
        self._reset_pieces = self._redis.register_script(_RESET_PIECES)
        self._report = self._redis.register_script(_REPORT)
        self._cap_records = self._redis.register_script(_CAP_RECORDS)

    def _key(self, kind: str, name: str) -> str:
        return f"{self._p}{kind}:{name}"

    async def _index(self, name: str, member: str, ttl_ms: int) -> None:
        await self._redis.zadd(self._key("index", name), {member: self._clock() * 1000 + ttl_ms})

    async def register_peer(self, peer: PeerInfo) -> Registration:
        info = json.dumps(peer.to_wire())
        session, was = await self._register(
            keys=[self._key("peer", peer.id), self._key("records", peer.id)],
            args=[info, secrets.token_hex(8), self._peer_ttl_ms],
        )
        await self._index("peers", peer.id, self._peer_ttl_ms)
        return Registration(str(session), bool(was))

    async def _peer_sessions(self, peer_ids: Sequence[str]) -> list[tuple[str, PeerInfo] | None]:
        if not peer_ids:
            return []
        raw = await self._redis.mget([self._key("peer", p) for p in peer_ids])
        found: list[tuple[str, PeerInfo] | None] = []
        for value in raw:
            if value is None:
                found.append(None)
                continue
            session, _, info = value.partition("\n")
            found.append((session, PeerInfo.from_wire(json.loads(info))))
        return found

    async def get_peer(self, peer_id: str) -> PeerInfo | None:
        (entry,) = await self._peer_sessions([peer_id])
        return None if entry is None else entry[1]

    async def put_holdings(self, peer_id: str, session: str, blobs: Sequence[BlobState], cap: int) -> int:
        if not blobs:
            return 0
        stored = await self._cap_records(
            keys=[self._key("records", peer_id)], args=[self._pieces_ttl_ms, cap, *(b.digest for b in blobs)]
        )
        accepted = [blob for blob, ok in zip(blobs, stored, strict=True) if int(ok)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for blob in accepted:
                key = self._key("holders", blob.digest)
                value = {
                    "s": session,
                    "size": blob.size,
                    "ps": blob.piece_size,
                    "c": blob.complete,
                    "b": "" if blob.complete else models.encode_bitmap(blob.bitmap()),
                }
                pipe.hset(key, peer_id, json.dumps(value))
                pipe.pexpire(key, self._pieces_ttl_ms)
                pipe.zadd(self._key("index", "digests"), {blob.digest: self._clock() * 1000 + self._pieces_ttl_ms})
            await pipe.execute()
        return len(blobs) - len(accepted)

    async def remove_holdings(self, peer_id: str, digests: Sequence[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.hdel(self._key("holders", digest), peer_id)
            if digests:
                pipe.srem(self._key("records", peer_id), *digests)
            await pipe.execute()

    async def holders(self, digest: str) -> list[PeerHolding]:
        key = self._key("holders", digest)
        entries: dict[str, str] = await self._redis.hgetall(key)
        peer_ids = list(entries)
        sessions = await self._peer_sessions(peer_ids)
        excluded: dict[str, str] = await self._redis.hgetall(self._key("excluded", digest)) if peer_ids else {}
        now_ms = self._clock() * 1000
        found, stale = [], []
        for peer_id, live in zip(peer_ids, sessions, strict=True):
            holding = json.loads(entries[peer_id])
            if live is None or live[0] != holding["s"]:
                stale.append(peer_id)
            elif float(excluded.get(peer_id, 0)) <= now_ms:
                bitmap = models.decode_bitmap(holding["b"])
                found.append(PeerHolding(live[1], holding["size"], holding["ps"], holding["c"], bitmap))
        if stale:
            await self._redis.hdel(key, *stale)
        return found

    async def acquire_lease(self, digest: str, peer_id: str, ttl: float) -> tuple[Lease, bool]:
        ttl_ms = max(1, int(ttl * 1000))
        granted, holder, left_ms, renewed = await self._acquire(
            keys=[self._key("lease", digest)], args=[peer_id, ttl_ms]
        )
        if granted:
            await self._index("leases", digest, ttl_ms)
        lease = Lease(bool(granted), str(holder), max(0, int(left_ms)) / 1000, await self.get_peer(str(holder)))
        return lease, bool(renewed)

    async def release_lease(self, digest: str, peer_id: str) -> bool:
        return bool(await self._release(keys=[self._key("lease", digest)], args=[peer_id]))

    async def lease_holder(self, digest: str) -> str | None:
        holder = await self._redis.get(self._key("lease", digest))
        return None if holder is None else str(holder)

    def _digest_keys(self, digest: str) -> list[str]:
        return [self._key("pieces", digest), self._key("excluded", digest), self._key("reports", digest)]

    async def put_piece_hashes(
        self, digest: str, writer: str, piece_size: int, size: int | None, hashes: Mapping[int, str]
    ) -> PiecesWrite:
        args: list[Any] = [self._pieces_ttl_ms, writer, piece_size, "" if size is None else size]
        for index, value in sorted(hashes.items()):
            args += [f"h:{index}", value]
        field, stored, offered, *replaced = (
            str(x) for x in await self._put_pieces(keys=self._digest_keys(digest), args=args)
        )
        if not field:
            return PiecesWrite(replaced=replaced == ["1"])
        if field.startswith("h:"):
            field = "hashes." + field[2:]
        return PiecesWrite(conflict=PieceConflict(field, stored, offered))

    async def reset_piece_hashes(self, digest: str, writer: str) -> bool:
        return bool(await self._reset_pieces(keys=self._digest_keys(digest), args=[writer]))

    async def get_piece_hashes(self, digest: str) -> PieceHashes | None:
        record: dict[str, str] = await self._redis.hgetall(self._key("pieces", digest))
        if "ps" not in record:
            return None
        hashes = {int(k[2:]): v for k, v in record.items() if k.startswith("h:")}
        size = int(record["size"]) if "size" in record else None
        return PieceHashes(digest, int(record["ps"]), size, hashes)

    async def report_peer(
        self, digest: str, peer_id: str, reporter: str, *, shown: bool, reporters_needed: int, ttl: float
    ) -> bool:
        ttl_ms = max(1, int(ttl * 1000))
        args: list[str | int] = [
            peer_id,
            reporter,
            int(self._clock() * 1000),
            ttl_ms,
            "1" if shown else "0",
            reporters_needed,
        ]
        keys = [self._key("reports", digest), self._key("excluded", digest)]
        fresh = bool(await self._report(keys=keys, args=args))
        if fresh:
            await self._index("excluded", f"{digest} {peer_id}", ttl_ms)
        return fresh

    async def live_peers(self) -> list[PeerInfo]:
        key = self._key("index", "peers")
        await self._redis.zremrangebyscore(key, "-inf", self._clock() * 1000)
        peer_ids = list(await self._redis.zrange(key, 0, -1))
        return [entry[1] for entry in await self._peer_sessions(peer_ids) if entry is not None]

    async def put_catalog(self, name: str, serial: int, peer_id: str, digests: Sequence[str]) -> None:
        lists_key, ident = self._key("catalog", name), list_id(digests)
        # Field "<serial>:<list id>" holds the digests; a set per field holds who offered it.
        known: dict[str, str] = await self._redis.hgetall(lists_key)
        async with self._redis.pipeline(transaction=False) as pipe:
            for field in known:
                if field.startswith(f"{serial}:"):
                    pipe.srem(self._key("catalog-voters", f"{name}:{field}"), peer_id)
            pipe.hset(lists_key, f"{serial}:{ident}", json.dumps(list(digests)))
            voters = self._key("catalog-voters", f"{name}:{serial}:{ident}")
            pipe.sadd(voters, peer_id)
            pipe.pexpire(voters, _CATALOG_TTL_MS)
            pipe.pexpire(lists_key, _CATALOG_TTL_MS)
            pipe.zadd(self._key("index", "catalogs"), {name: self._clock() * 1000 + _CATALOG_TTL_MS})
            serials = sorted({int(f.split(":", 1)[0]) for f in known} | {serial})
            for field in known:
                if int(field.split(":", 1)[0]) in serials[:-_KEPT_SERIALS]:
                    pipe.hdel(lists_key, field)
            await pipe.execute()

    async def catalog_lists(self, name: str) -> list[CatalogList]:
        known: dict[str, str] = await self._redis.hgetall(self._key("catalog", name))
        found = []
        for field, digests in known.items():
            voters = await self._redis.smembers(self._key("catalog-voters", f"{name}:{field}"))
            found.append(CatalogList(int(field.split(":", 1)[0]), tuple(json.loads(digests)), frozenset(voters)))
        return found

    async def catalog_names(self) -> list[str]:
        key = self._key("index", "catalogs")
        await self._redis.zremrangebyscore(key, "-inf", self._clock() * 1000)
        return sorted(await self._redis.zrange(key, 0, -1))

    async def stats(self) -> StoreStats:
        now_ms = self._clock() * 1000
        counts = []
        for name in ("peers", "digests", "leases", "excluded"):
            key = self._key("index", name)
            await self._redis.zremrangebyscore(key, "-inf", now_ms)
            counts.append(int(await self._redis.zcard(key)))
        return StoreStats(*counts)

    async def sweep(self) -> None:
        return None  # Redis expires keys itself

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
