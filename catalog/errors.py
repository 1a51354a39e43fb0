"""Errors raised by the catalog package.

CatalogError
 ├── SignatureError   envelope malformed, unknown key, bad signature
 ├── SchemaError      payload does not match catalog schema v1 (names the field)
 ├── ExpiredError     catalog past its `expires`
 ├── RollbackError    serial lower than (or equal to) the active catalog's
 ├── TooLargeError    document over the size cap, refused before parsing
 ├── DeltaMismatch    a rebuilt blob does not match its expected digest/size
 └── RegistryError    the registry answered with an error or unusable content
"""

from __future__ import annotations


class CatalogError(Exception):
    """Base class for every error raised by `catalog`."""


class SignatureError(CatalogError):
    pass


class SchemaError(CatalogError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ExpiredError(CatalogError):
    pass


class RollbackError(CatalogError):
    pass


class TooLargeError(CatalogError):
    pass


class DeltaMismatch(CatalogError):
    pass


class RegistryError(CatalogError):
    pass
