"""Peer TLS: with --peer-ca/--peer-cert/--peer-key the peer listener (and the embedded tracker on
it) speaks mutual TLS; blobs still flow between mirrors, and a client without a certificate from
the cluster CA is refused."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.p2p.test_swarm_e2e import MiB, get_all
from tests.support.images import push_blob, write_random_file
from tests.support.net import free_port

pytestmark = pytest.mark.integration


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_pki(directory: Path, hosts: list[str]) -> dict[str, Path]:
    now = datetime.datetime.now(datetime.UTC)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("cluster-ca"))
        .issuer_name(name("cluster-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("mirror"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(h)) for h in hosts]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.crt", "cert": directory / "peer.crt", "key": directory / "peer.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(_pem_key(key))
    return paths


def test_mtls_swarm_and_refused_client(origin_factory, mirror_process, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    origin = origin_factory()
    path = write_random_file(tmp_path / "blob.bin", 20 * MiB + 7, "tls")
    digest = push_blob(origin, "test/tls", path)
    hosts = ["127.0.0.21", "127.0.0.22"]
    pki = make_pki(tmp_path, hosts)
    tls = ["--peer-ca", str(pki["ca"]), "--peer-cert", str(pki["cert"]), "--peer-key", str(pki["key"])]
    ports = [free_port(h) for h in hosts]
    tracker = f"https://{hosts[0]}:{ports[0]}/tracker"
    mirrors = []
    for i, host in enumerate(hosts):
        args = [
            "--peer-listen",
            f"{host}:{ports[i]}",
            "--piece-size",
            str(MiB),
            "--default-upstream",
            origin.host,
            "--tracker",
            "embedded" if i == 0 else tracker,
            *tls,
        ]
        mirrors.append(mirror_process({origin.host: origin.url}, extra_args=args, host=host))
    assert get_all(mirrors[:1], f"/v2/test/tls/blobs/{digest}") == [digest]
    marker = origin.clear_log_marker()
    assert get_all(mirrors[1:], f"/v2/test/tls/blobs/{digest}") == [digest]
    assert origin.blob_gets(digest, since=marker) == []  # the bytes came over mutual TLS from the peer

    peer_url = f"https://{hosts[0]}:{ports[0]}/p2p/v1/blobs/{digest}"
    no_cert = ssl.create_default_context(cafile=str(pki["ca"]))
    no_cert.check_hostname = False
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.get(peer_url, headers={"Range": "bytes=0-9"}, verify=no_cert, timeout=10)
    with_cert = ssl.create_default_context(cafile=str(pki["ca"]))
    with_cert.check_hostname = False
    with_cert.load_cert_chain(str(pki["cert"]), str(pki["key"]))
    answer = httpx.get(peer_url, headers={"Range": "bytes=0-9"}, verify=with_cert, timeout=10)
    assert answer.status_code == 206 and len(answer.content) == 10
