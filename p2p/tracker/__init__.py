"""The p2p tracker: which peer holds which pieces of which blob, piece hashes, and seed leases.

Kept import-light on purpose: `p2p.tracker.models` is shared with the client, so the Starlette app
lives in `p2p.tracker.app` and is imported only by whoever serves it.
"""
