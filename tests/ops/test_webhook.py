"""`registry-mirror webhook`: real AdmissionReview v1 requests over TLS to the running webhook; the
returned JSONPatch is applied with the `jsonpatch` library and the resulting pod checked (and
validated against the Kubernetes schema)."""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import kubernetes_validate
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.mirror import mirror_binary
from tests.support.net import free_port, wait_port
from tests.support.procs import ManagedProcess, starts_processes

K8S_VERSION = "1.33.0"
HUB_ENV = ["NODE_IP", "HF_ENDPOINT", "MODELSCOPE_ENDPOINT"]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry-mirror-webhook")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
@starts_processes
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    workdir = tmp_path_factory.mktemp("webhook")
    cert, key = _self_signed(workdir)
    port = free_port()
    process = ManagedProcess(
        [mirror_binary(), "webhook", f"--listen=127.0.0.1:{port}", f"--tls-cert={cert}", f"--tls-key={key}"],
        workdir / "webhook.log",
    ).start()
    try:
        wait_port("127.0.0.1", port, timeout=30)
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=str(cert), timeout=10) as client:
            yield client
    finally:
        process.stop()


def _pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "trainer", "namespace": "ml", **({"annotations": annotations} if annotations else {})},
        "spec": {
            "initContainers": [
                {"name": "fetch", "image": "busybox", "env": [{"name": "HF_ENDPOINT", "value": "https://hf.internal"}]}
            ],
            "containers": [
                {"name": "train", "image": "pytorch"},
                {"name": "sidecar", "image": "busybox", "env": [{"name": "A", "value": "1"}]},
            ],
        },
    }


def _review(obj: dict[str, Any], operation: str = "CREATE", kind: str = "Pod") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": operation,
            "namespace": "ml",
            "object": obj,
        },
    }


def _mutated(client: httpx.Client, pod: dict[str, Any], scope: str | None = None, **review: str) -> dict[str, Any]:
    answer = client.post("/mutate", params={"scope": scope} if scope else None, json=_review(pod, **review))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    response = body["response"]
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002" and response["allowed"] is True
    if "patch" not in response:
        return pod
    assert response["patchType"] == "JSONPatch"
    patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(response["patch"])))
    return patch.apply(copy.deepcopy(pod))


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_annotated_pod_gets_node_ip_then_endpoints_without_overrides(webhook: httpx.Client) -> None:
    pod = _mutated(webhook, _pod({"registry-mirror/inject": "true"}))
    train, sidecar = pod["spec"]["containers"]
    assert [e["name"] for e in train["env"]] == HUB_ENV  # NODE_IP first: Kubernetes expands $(NODE_IP) after it
    assert _env(train) == {
        "NODE_IP": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.hostIP"}},
        "HF_ENDPOINT": "http://$(NODE_IP):5000/hf",
        "MODELSCOPE_ENDPOINT": "http://$(NODE_IP):5000/modelscope",
    }
    assert [e["name"] for e in sidecar["env"]] == ["A", *HUB_ENV]
    [fetch] = pod["spec"]["initContainers"]
    assert _env(fetch)["HF_ENDPOINT"] == "https://hf.internal"  # the pod's own value is kept
    assert [e["name"] for e in fetch["env"]] == ["HF_ENDPOINT", "NODE_IP", "MODELSCOPE_ENDPOINT"]
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    again = _mutated(webhook, pod)  # re-invocation (reinvocationPolicy) adds nothing twice
    assert again == pod


def test_only_opted_in_pods_and_namespaces_are_changed(webhook: httpx.Client) -> None:
    plain = _pod()
    assert _mutated(webhook, plain) == plain
    assert _mutated(webhook, _pod({"registry-mirror/inject": "false"}), scope="namespace") == _pod(
        {"registry-mirror/inject": "false"}
    )
    in_namespace = _mutated(webhook, _pod(), scope="namespace")
    assert [e["name"] for e in in_namespace["spec"]["containers"][0]["env"]] == HUB_ENV
    assert _mutated(webhook, _pod({"registry-mirror/inject": "true"}), operation="UPDATE")["spec"] == plain["spec"]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}
    assert _mutated(webhook, deployment, kind="Deployment") == deployment


def test_bad_reviews_get_a_clear_error_and_metrics_count_results(webhook: httpx.Client) -> None:
    assert webhook.post("/mutate", content=b"{not json").status_code == 400
    wrong = webhook.post("/mutate", json={"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"})
    assert wrong.status_code == 400 and "AdmissionReview" in wrong.json()["error"]
    assert webhook.post("/mutate", json={**_review(_pod()), "request": {}}).status_code == 400
    too_big = webhook.post("/mutate", content=b" " * (5 << 20), headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413
    _mutated(webhook, _pod({"registry-mirror/inject": "true"}))
    metrics = webhook.get("/metrics").text
    assert 'registry_mirror_webhook_reviews_total{result="invalid"}' in metrics
    assert 'registry_mirror_webhook_reviews_total{result="injected"}' in metrics
    assert webhook.get("/healthz").status_code == 200
