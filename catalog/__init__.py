"""Signed image catalogs with zstd layer deltas (CI side builds/pushes; mirrors pull/verify)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from catalog.activate import check_activation as check_activation
    from catalog.analyze import analyze as analyze
    from catalog.analyze import render_table as render_table
    from catalog.analyze import to_json as to_json
    from catalog.build import build_catalog as build_catalog
    from catalog.build import resolve_image as resolve_image
    from catalog.delta_source import DeltaSources as DeltaSources
    from catalog.errors import CatalogError as CatalogError
    from catalog.errors import SchemaError as SchemaError
    from catalog.models import Blob as Blob
    from catalog.models import catalog_to_json as catalog_to_json
    from catalog.models import format_time as format_time
    from catalog.models import parse_catalog as parse_catalog
    from catalog.prefetch import SourceFor as SourceFor
    from catalog.push import push_catalog as push_catalog
    from catalog.registry import Reference as Reference
    from catalog.registry import RegistryClient as RegistryClient
    from catalog.registry import parse_reference as parse_reference
    from catalog.service import CatalogOptions as CatalogOptions
    from catalog.service import CatalogService as CatalogService
    from catalog.service import delta_sources as delta_sources
    from catalog.service import load_trusted_keys as load_trusted_keys
    from catalog.signing import envelope_to_json as envelope_to_json
    from catalog.signing import generate_keypair as generate_keypair
    from catalog.signing import keyid as keyid
    from catalog.signing import load_private_key as load_private_key
    from catalog.signing import load_public_key as load_public_key
    from catalog.signing import save_private_key as save_private_key
    from catalog.signing import save_public_key as save_public_key
    from catalog.signing import sign as sign
    from catalog.signing import verify as verify

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "activate": ["check_activation"],
        "analyze": ["analyze", "render_table", "to_json"],
        "build": ["build_catalog", "resolve_image"],
        "delta_source": ["DeltaSources"],
        "errors": ["CatalogError", "SchemaError"],
        "models": ["Blob", "catalog_to_json", "format_time", "parse_catalog"],
        "prefetch": ["SourceFor"],
        "push": ["push_catalog"],
        "registry": ["Reference", "RegistryClient", "parse_reference"],
        "service": ["CatalogOptions", "CatalogService", "delta_sources", "load_trusted_keys"],
        "signing": [
            "envelope_to_json",
            "generate_keypair",
            "keyid",
            "load_private_key",
            "load_public_key",
            "save_private_key",
            "save_public_key",
            "sign",
            "verify",
        ],
    },
)
