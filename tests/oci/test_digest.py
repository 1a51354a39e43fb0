from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oci.digest import SUPPORTED_ALGORITHMS, Digest, InvalidDigest, Verifier, new_hasher

SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_parse_sha256_round_trips() -> None:
    digest = Digest.parse(f"sha256:{SHA256_EMPTY}")
    assert digest == Digest("sha256", SHA256_EMPTY)
    assert str(digest) == f"sha256:{SHA256_EMPTY}"


def test_parse_sha512_round_trips() -> None:
    hex_part = hashlib.sha512(b"x").hexdigest()
    assert str(Digest.parse(f"sha512:{hex_part}")) == f"sha512:{hex_part}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "sha256",
        "sha256:",
        f":{SHA256_EMPTY}",
        f"md5:{hashlib.md5(b'').hexdigest()}",
        f"sha384:{hashlib.sha384(b'').hexdigest()}",
        f"SHA256:{SHA256_EMPTY}",
        f"sha256:{SHA256_EMPTY.upper()}",
        f"sha256:{SHA256_EMPTY[:-1]}",
        f"sha256:{SHA256_EMPTY}0",
        f"sha256:{SHA256_EMPTY[:-1]}g",
        f"sha256:{SHA256_EMPTY}\n",
        f" sha256:{SHA256_EMPTY}",
        f"sha256:{SHA256_EMPTY}:",
        f"sha256:{SHA256_EMPTY[:-1]}\u0663",  # an Arabic-Indic digit is not hex
        f"sha512:{SHA256_EMPTY}",
        "sha256:totallywrong",
        f"sha256+b64:{SHA256_EMPTY}",
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(text)


def test_invalid_digest_is_a_value_error() -> None:
    assert issubclass(InvalidDigest, ValueError)


def test_constructor_validates_too() -> None:
    with pytest.raises(InvalidDigest):
        Digest("sha256", "abc")
    with pytest.raises(InvalidDigest):
        Digest("sha1", hashlib.sha1(b"").hexdigest())


@given(st.binary(max_size=256), st.sampled_from(sorted(SUPPORTED_ALGORITHMS)))
def test_any_real_digest_round_trips(data: bytes, algorithm: str) -> None:
    text = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    assert str(Digest.parse(text)) == text
    assert Digest.from_bytes(data, algorithm) == Digest.parse(text)


@given(st.text(max_size=200))
def test_parse_arbitrary_text_round_trips_or_raises_invalid_digest(text: str) -> None:
    try:
        digest = Digest.parse(text)
    except InvalidDigest:
        return
    assert str(digest) == text
    assert "/" not in digest.hex and ".." not in digest.hex


@given(st.sampled_from(["sha256", "sha512"]), st.text(alphabet="0123456789abcdefABCDEF:g", max_size=130))
def test_parse_near_misses_round_trip_or_raise(algorithm: str, hex_part: str) -> None:
    text = f"{algorithm}:{hex_part}"
    try:
        digest = Digest.parse(text)
    except InvalidDigest:
        assert (
            len(hex_part) != SUPPORTED_ALGORITHMS[algorithm]
            or hex_part != hex_part.lower()
            or not all(c in "0123456789abcdef" for c in hex_part)
        )
        return
    assert str(digest) == text


def test_new_hasher_matches_hashlib() -> None:
    digest = Digest.parse(f"sha256:{SHA256_EMPTY}")
    hasher = digest.new_hasher()
    hasher.update(b"abc")
    assert hasher.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    assert new_hasher("sha512").hexdigest() == hashlib.sha512().hexdigest()
    with pytest.raises(InvalidDigest):
        new_hasher("md5")


@given(st.lists(st.binary(max_size=4096), max_size=20), st.sampled_from(["sha256", "sha512"]))
def test_verifier_over_chunks_equals_whole(chunks: list[bytes], algorithm: str) -> None:
    whole = b"".join(chunks)
    verifier = Verifier(algorithm)
    for chunk in chunks:
        verifier.update(memoryview(chunk))
    expected = Digest.from_bytes(whole, algorithm)
    assert verifier.size == len(whole)
    assert verifier.hexdigest() == hashlib.new(algorithm, whole).hexdigest()
    assert verifier.digest() == expected
    assert verifier.matches(expected, len(whole))
    assert verifier.matches(expected, None)
    assert not verifier.matches(expected, len(whole) + 1)


def test_verifier_rejects_other_content() -> None:
    verifier = Verifier.for_digest(Digest.parse(f"sha256:{SHA256_EMPTY}"))
    verifier.update(b"not empty")
    assert not verifier.matches(Digest.parse(f"sha256:{SHA256_EMPTY}"))
    assert not verifier.matches(Digest.parse(f"sha256:{SHA256_EMPTY}"), 9)


def test_verifier_counts_bytes_of_memoryviews_of_non_byte_items() -> None:
    verifier = Verifier()
    buffer = bytearray(b"abcdefgh")
    verifier.update(memoryview(buffer).cast("I"))  # 2 items of 4 bytes
    assert verifier.size == 8
    assert verifier.hexdigest() == hashlib.sha256(b"abcdefgh").hexdigest()


def test_verifier_refuses_to_judge_another_algorithm() -> None:
    verifier = Verifier("sha256")
    with pytest.raises(ValueError):
        verifier.matches(Digest.from_bytes(b"", "sha512"))


def test_verifier_rejects_unknown_algorithm() -> None:
    with pytest.raises(InvalidDigest):
        Verifier("md5")
