"""Mutual TLS: only clients with a certificate from the configured CA reach the tracker."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from p2p.errors import TrackerError
from p2p.tracker_client import TrackerClient
from tests.p2p.harness import tracker
from tests.support.procs import starts_processes


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Issued(cert_path, key_path)


def _issue(
    directory: Path, stem: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, server: bool
) -> tuple[Issued, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(stem))
        .issuer_name(_name(stem) if issuer is None else issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:  # a CA
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
    cert = builder.sign(key if issuer is None else issuer[1], hashes.SHA256())
    return _write(directory, stem, cert, key), cert, key


@dataclass(frozen=True)
class PKI:
    ca: Issued
    server: Issued
    client: Issued
    rogue_client: Issued  # signed by a CA the tracker does not trust


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = _issue(directory, "tracker-ca", None, server=False)
    _, rogue_cert, rogue_key = _issue(directory, "rogue-ca", None, server=False)
    server, _, _ = _issue(directory, "tracker", (ca_cert, ca_key), server=True)
    client, _, _ = _issue(directory, "mirror", (ca_cert, ca_key), server=False)
    rogue, _, _ = _issue(directory, "rogue-mirror", (rogue_cert, rogue_key), server=False)
    return PKI(ca, server, client, rogue)


@pytest.fixture(scope="module")
@starts_processes
def mtls_tracker(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    extra = [
        "--tls-cert",
        str(pki.server.cert),
        "--tls-key",
        str(pki.server.key),
        "--tls-ca",
        str(pki.ca.cert),
        "--cert-identity",
    ]
    with tracker(tmp_path_factory.mktemp("mtls"), token=None, extra=extra, scheme="https") as running:
        yield running.url


def _context(pki: PKI, client: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


async def test_client_with_a_certificate_from_the_ca_is_served(pki: PKI, mtls_tracker: str) -> None:
    async with TrackerClient(mtls_tracker, None, ssl_context=_context(pki, pki.client)) as client:
        assert (await client.stats())["store"] == "memory"


@pytest.mark.parametrize("which", ["no certificate", "certificate from another CA"])
async def test_client_without_a_valid_certificate_is_refused(pki: PKI, mtls_tracker: str, which: str) -> None:
    certificate = None if which == "no certificate" else pki.rogue_client
    async with TrackerClient(mtls_tracker, None, ssl_context=_context(pki, certificate)) as client:
        with pytest.raises(TrackerError) as refused:
            await client.stats()
    assert refused.value.status is None  # refused in the TLS handshake, before any HTTP


async def test_the_certificate_name_is_the_peer_id(pki: PKI, mtls_tracker: str) -> None:
    """Issue 11 item 3: with mutual TLS a caller may act only as its certificate's commonName."""
    from p2p.tracker.models import PeerInfo

    async with TrackerClient(mtls_tracker, None, ssl_context=_context(pki, pki.client)) as client:
        assert await client.whoami() == "mirror"
        await client.heartbeat(PeerInfo("mirror", "https://127.0.0.1:7000"))
        with pytest.raises(TrackerError) as refused:
            await client.heartbeat(PeerInfo("another-node", "https://127.0.0.1:7001"))
    assert refused.value.status == 403 and refused.value.field == "peer.id"
