"""Which byte ranges of a fill's temp file hold bytes: disjoint, sorted, merged on insert.

Pieces of a fill land in any order (parallel origin ranges, peers, a reader's Range made first),
so "how far has the file grown" is a set of intervals, not one number. Few intervals exist at once
(about one per concurrent range), so a sorted list is the right structure.
"""

from __future__ import annotations

import bisect


class PresentRanges:
    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def add(self, start: int, end: int) -> None:
        """Marks [start, end) present, merging with touching or overlapping intervals."""
        if end <= start:
            return
        # Every interval whose end >= start and whose start <= end touches the new one.
        first = bisect.bisect_left(self._ends, start)
        last = bisect.bisect_right(self._starts, end)
        if first < last:
            start = min(start, self._starts[first])
            end = max(end, self._ends[last - 1])
        self._starts[first:last] = [start]
        self._ends[first:last] = [end]

    def run_end(self, offset: int) -> int:
        """The end of the present run containing `offset`; `offset` itself when it is missing."""
        index = bisect.bisect_right(self._starts, offset) - 1
        if index >= 0 and self._ends[index] > offset:
            return self._ends[index]
        return offset

    def covers(self, start: int, end: int) -> bool:
        return end <= start or self.run_end(start) >= end

    def prefix(self) -> int:
        """Bytes present from offset 0 without a gap."""
        return self._ends[0] if self._starts and self._starts[0] == 0 else 0

    def next_missing(self, offset: int) -> int:
        """The first missing byte at or after `offset`."""
        return max(offset, self.run_end(offset))

    def missing_end(self, offset: int, limit: int) -> int:
        """Where the gap that starts at `offset` ends (the next present byte, or `limit`)."""
        index = bisect.bisect_right(self._starts, offset)
        return min(limit, self._starts[index]) if index < len(self._starts) else limit

    def highest_gap(self, limit: int) -> tuple[int, int] | None:
        """The last missing range below `limit`, or None when [0, limit) is all present."""
        end = limit
        for index in range(len(self._starts) - 1, -1, -1):
            if self._starts[index] >= end:
                continue
            if self._ends[index] < end:
                return self._ends[index], end
            end = self._starts[index]
        return (0, end) if end > 0 else None

    def total(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def intervals(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))


def union(*groups: list[tuple[int, int]]) -> PresentRanges:
    merged = PresentRanges()
    for group in groups:
        for start, end in group:
            merged.add(start, end)
    return merged
