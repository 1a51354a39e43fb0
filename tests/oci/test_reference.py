"""oci.reference: repository names, tags, hosts and fully qualified image references."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oci import (
    Digest,
    ImageReference,
    InvalidReference,
    is_registry_host,
    is_repository,
    is_tag,
    parse_image_reference,
    repository_error,
)

SHA = "sha256:" + "ab" * 32


@pytest.mark.parametrize("name", ["a", "library/alpine", "org/app-1", "a__b/c.d", "x--y", "a/b/c/d"])
def test_repository_names_of_the_grammar(name: str) -> None:
    assert is_repository(name) and repository_error(name) is None


@pytest.mark.parametrize("name", ["", "A", "a//b", "/a", "a/", "a/../b", "-a", "a-", "a%2fb", "a.", "a" * 256])
def test_repository_names_outside_the_grammar_say_why(name: str) -> None:
    assert not is_repository(name) and repository_error(name)


def test_tags() -> None:
    assert is_tag("v1.2_rc-3") and is_tag("_x") and is_tag("a" * 128)
    assert not is_tag("") and not is_tag(".x") and not is_tag("-x") and not is_tag("a" * 129) and not is_tag("a/b")


def test_registry_hosts() -> None:
    assert all(map(is_registry_host, ["ghcr.io", "localhost:5000", "10.0.0.1:443", "[::1]:5000", "Quay.IO"]))
    assert not any(map(is_registry_host, ["", "a_b.io", "-x.io", "host:", "a" * 256, "ghcr.io/x"]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ghcr.io/org/app:v1", ImageReference("ghcr.io", "org/app", "v1")),
        ("localhost:5000/app", ImageReference("localhost:5000", "app")),
        (f"ghcr.io/org/app@{SHA}", ImageReference("ghcr.io", "org/app", None, Digest.parse(SHA))),
        (f"ghcr.io/org/app:v1@{SHA}", ImageReference("ghcr.io", "org/app", "v1", Digest.parse(SHA))),
    ],
)
def test_parse_image_reference(text: str, expected: ImageReference) -> None:
    assert parse_image_reference(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("alpine:3", "fully qualified"),  # no registry host
        ("docker/alpine:3", "fully qualified"),  # first component is no host
        ("ghcr.io/Org/app:v1", "invalid repository"),
        ("ghcr.io/org/app:-v1", "invalid tag"),
        ("ghcr.io/org/app@md5:abc", "unsupported digest algorithm"),
        ("ghcr.io/org/app@sha256:abc", "invalid digest"),
    ],
)
def test_invalid_image_references_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(InvalidReference, match=why):
        parse_image_reference(text)


@given(st.text(max_size=120))
def test_parse_image_reference_never_raises_anything_else(text: str) -> None:
    try:
        reference = parse_image_reference(text)
    except InvalidReference:
        return
    assert is_repository(reference.repository) and ".." not in reference.repository
