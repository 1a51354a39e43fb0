"""Signed image catalogs with zstd layer deltas (CI side builds/pushes; mirrors pull/verify)."""
