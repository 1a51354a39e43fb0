"""oci.bearer: the one bearer-token check of every listener."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oci import bearer_matches, bearer_token, token_matches


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer s3cret", "s3cret"),
        ("bearer s3cret", "s3cret"),  # the scheme is case-insensitive (RFC 9110 11.1)
        ("BEARER   s3cret  ", "s3cret"),
        (b"Bearer s3cret", "s3cret"),  # raw ASGI header bytes
        ("Basic czNjcmV0", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | bytes | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_bearer_matches() -> None:
    assert bearer_matches("Bearer s3cret", "s3cret") and bearer_matches(b"Bearer s3cret", b"s3cret")
    assert not bearer_matches("Bearer s3cre", "s3cret") and not bearer_matches("Bearer s3cret!", "s3cret")
    assert not bearer_matches("s3cret", "s3cret") and not bearer_matches(None, "s3cret")


def test_an_empty_token_never_matches() -> None:
    assert not token_matches("", "") and not token_matches(None, "x") and not token_matches("x", "")


@given(st.text(max_size=40), st.text(min_size=1, max_size=40))
def test_any_header_text_is_an_answer_not_a_crash(header: str, token: str) -> None:
    # hmac.compare_digest raises TypeError on non-ASCII str; the check compares bytes instead.
    assert bearer_matches("Bearer " + header, token) == (header.strip() == token.strip() == token and bool(token))
