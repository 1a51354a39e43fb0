"""deploy/kubernetes: every overlay rendered with the real `kubectl kustomize`, validated against the
Kubernetes schemas (kubernetes-validate, offline, strict), and checked for what a typo or an
omission would break: ordering, secrets, selectors and ports, probes, resources, securityContext,
the mirror's config loading, and the node-setup commands run as the init containers run them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from registry_mirror.config import load_settings
from tests.support.mirror import REPO_ROOT, mirror_binary
from tests.support.procs import require_binary

DEPLOY = REPO_ROOT / "deploy" / "kubernetes"
OVERLAYS = ("node-mirror", "p2p", "fleet")
K8S_VERSIONS = ("1.33.0", "1.37.0")
CRD_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/")  # validated by their operators, not here
WORKLOADS = ("Deployment", "DaemonSet")
NAMESPACE = "registry-mirror"
IMAGE = f"registry-mirror:{version('registry-mirror')}"


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [require_binary("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(_kustomize(DEPLOY / "overlays" / overlay))


def by_kind(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _pod_specs(docs: Any) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in docs if d["kind"] in WORKLOADS]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return pod.get("initContainers", []) + pod["containers"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _documented_secret_keys() -> set[str]:
    """The keys of the `kubectl create secret` command in base/kustomization.yaml."""
    text = (DEPLOY / "base" / "kustomization.yaml").read_text()
    return set(re.findall(r"--from-literal=([a-z-]+)=", text))


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("k8s", K8S_VERSIONS)
def test_overlay_validates_against_the_kubernetes_schema(overlay: str, k8s: str) -> None:
    for doc in rendered(overlay):
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        kubernetes_validate.validate(doc, k8s, strict=True)  # raises with the field on an error


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_order_namespaces_and_no_secret_values(overlay: str) -> None:
    docs = rendered(overlay)
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "Namespace"  # kubectl apply -k creates it before anything in it
    if "MutatingWebhookConfiguration" in kinds:  # last: its service exists by then
        assert kinds[-1] == "MutatingWebhookConfiguration"
    cluster_scoped = {"Namespace", "MutatingWebhookConfiguration"}
    assert all(d["metadata"].get("namespace") == NAMESPACE for d in docs if d["kind"] not in cluster_scoped)
    assert "Secret" not in kinds  # created by the documented command, never stored here
    text = yaml.safe_dump_all(docs)
    assert "CHANGE-ME" not in text and "example" not in text
    referenced = {
        ref["key"]
        for pod in _pod_specs(docs)
        for c in _containers(pod)
        for e in c.get("env", [])
        if (ref := e.get("valueFrom", {}).get("secretKeyRef"))
    }
    referenced |= {
        i["key"]
        for pod in _pod_specs(docs)
        for v in pod.get("volumes", [])
        for i in v.get("secret", {}).get("items", [])
    }
    assert referenced <= _documented_secret_keys()
    tls_secrets = {c["spec"]["secretName"] for c in by_kind(docs, "Certificate").values()}
    for pod in _pod_specs(docs):
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in {"registry-mirror-tokens"} | tls_secrets
            if "configMap" in volume:
                assert volume["configMap"]["name"] in by_kind(docs, "ConfigMap")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_hardened_sized_and_probed(overlay: str) -> None:
    for pod in _pod_specs(rendered(overlay)):
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in _containers(pod):
            name = container["name"]
            assert container["image"] in (IMAGE, "redis:7.0"), name
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert "memory" in container["resources"]["limits"] and container["resources"]["requests"], name
        for container in pod["containers"]:
            assert "readinessProbe" in container and "livenessProbe" in container, container["name"]
            runs_as = container["securityContext"].get("runAsUser", pod["securityContext"].get("runAsUser"))
            assert runs_as not in (None, 0), container["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_ports_budgets_policies_and_monitors(overlay: str) -> None:
    docs = rendered(overlay)
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    for workload in workloads:
        assert _selects(workload["spec"]["selector"]["matchLabels"], workload["spec"]["template"]["metadata"]["labels"])
    ports_of: dict[str, set[str]] = {}
    for service in by_kind(docs, "Service").values():
        [target] = [
            w for w in workloads if _selects(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        names = {p["name"] for c in target["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
        ports_of[service["metadata"]["name"]] = {p["name"] for p in service["spec"]["ports"]}
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for item in by_kind(docs, kind).values():
            selector = item["spec"]["selector" if kind == "PodDisruptionBudget" else "podSelector"]["matchLabels"]
            assert any(_selects(selector, w["spec"]["template"]["metadata"]["labels"]) for w in workloads), item
    protected = {
        w["metadata"]["name"]
        for w in workloads
        if any(
            _selects(p["spec"]["podSelector"]["matchLabels"], w["spec"]["template"]["metadata"]["labels"])
            for p in by_kind(docs, "NetworkPolicy").values()
        )
    }
    assert protected == {w["metadata"]["name"] for w in workloads}
    tracker_replicas = [w for w in workloads if w["metadata"]["name"] == "registry-mirror-tracker"]
    if tracker_replicas:
        assert tracker_replicas[0]["spec"]["replicas"] >= 2 and "registry-mirror-tracker" in by_kind(
            docs, "PodDisruptionBudget"
        )
    for monitor in by_kind(docs, "ServiceMonitor").values():
        wanted = {
            e["values"][0] if len(e["values"]) == 1 else tuple(e["values"])
            for e in monitor["spec"]["selector"]["matchExpressions"]
        }
        assert wanted and all(p["path"] == "/metrics" for p in monitor["spec"]["endpoints"])
        scraped = {p["port"] for p in monitor["spec"]["endpoints"]}
        assert set().union(*ports_of.values()) <= scraped | {"redis"}  # every service's port is scraped


def _mirror_pod(docs: Any) -> dict[str, Any]:
    return by_kind(docs, "DaemonSet")["registry-mirror"]["spec"]["template"]["spec"]


def _expand(value: str) -> str:
    return value.replace("$(NODE_IP)", "10.0.0.7").replace("$(CLIENT_TOKEN)", "t0ken")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_map_loads_and_matches_ports(overlay: str, tmp_path: Path) -> None:
    docs = rendered(overlay)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for key in _documented_secret_keys():
        (secrets / key).write_text("s3cret\n")
    text = by_kind(docs, "ConfigMap")["registry-mirror-config"]["data"]["registry-mirror.toml"]
    config = tmp_path / "registry-mirror.toml"
    config.write_text(text.replace("/etc/registry-mirror/secrets", str(secrets)))
    mirror = next(c for c in _mirror_pod(docs)["containers"] if c["name"] == "mirror")
    env = {
        e["name"]: _expand(e["value"]).replace("/etc/registry-mirror/secrets", str(secrets))
        for e in mirror["env"]
        if "value" in e
    }
    settings = load_settings(config, env, {})  # unknown keys or bad values raise here
    ports = {p["name"]: p for p in mirror["ports"]}
    assert ports["http"]["containerPort"] == ports["http"]["hostPort"] == settings.listen_port
    assert settings.listen_host == "0.0.0.0" and settings.client_token  # an open listener needs a token
    mounts = {m["mountPath"] for m in mirror["volumeMounts"]}
    assert settings.cache.directory.as_posix() in mounts and "/tmp" in mounts
    if overlay == "node-mirror":
        assert not settings.p2p.tracker and "peer" not in ports
        return
    assert int(settings.p2p.peer_listen.rsplit(":", 1)[1]) == ports["peer"]["containerPort"]
    assert urlsplit(settings.p2p.advertise).port == ports["peer"]["hostPort"]
    tracker = urlsplit(settings.p2p.tracker)
    service = by_kind(docs, "Service")[tracker.hostname.split(".")[0]]
    assert tracker.port in {p["port"] for p in service["spec"]["ports"]}
    tracker_args = " ".join(
        by_kind(docs, "Deployment")["registry-mirror-tracker"]["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert re.search(r"redis://([^:/]+)", tracker_args).group(1) in by_kind(docs, "Service")  # type: ignore[union-attr]


def _run_init(container: dict[str, Any], replace: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [*container["command"], *container.get("args", [])]
    assert argv[0] == "registry-mirror"
    argv = [mirror_binary(), *argv[1:]]
    for old, new in replace.items():
        argv = [_expand(a).replace(old, new) for a in argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_init_container_writes_hosts_toml_and_uninstall_removes_it(tmp_path: Path) -> None:
    init = next(c for c in _mirror_pod(rendered("node-mirror"))["initContainers"] if c["name"] == "hosts-toml")
    assert {"mountPath": "/etc/containerd/certs.d", "name": "containerd-certs"} in init["volumeMounts"]
    done = _run_init(init, {"/etc/containerd/certs.d": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    hosts = tomllib.loads((tmp_path / "docker.io" / "hosts.toml").read_text())
    assert hosts["host"]["http://10.0.0.7:5000"]["header"] == {"Authorization": "Bearer t0ken"}
    registries = sorted(p.parent.name for p in tmp_path.glob("*/hosts.toml"))
    assert registries == ["docker.io", "ghcr.io", "quay.io", "registry.k8s.io"]

    uninstall = _kustomize(DEPLOY / "uninstall")
    for doc in uninstall:
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)
    pod = by_kind(uninstall, "DaemonSet")["registry-mirror-uninstall"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["hostPath"]["path"] == "/etc/containerd/certs.d"
    removed = _run_init(pod["initContainers"][0], {"/etc/containerd/certs.d": str(tmp_path)})
    assert removed.returncode == 0, removed.stderr
    assert list(tmp_path.iterdir()) == []


def test_containerd_config_path_component_edits_and_restarts_once(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(DEPLOY / "base", overlay)],
                "components": [
                    os.path.relpath(DEPLOY / "components" / c, overlay) for c in ("containerd-config-path", "common")
                ],
            }
        )
    )
    docs = _kustomize(overlay)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)
    pod = _mirror_pod(docs)
    assert pod["hostPID"] is True
    init = next(c for c in pod["initContainers"] if c["name"] == "hosts-toml")
    restart = next(a for a in init["args"] if a.startswith("--restart-command="))
    assert shlex.split(restart.split("=", 1)[1])[:3] == ["nsenter", "--target", "1"]
    node_etc = tmp_path / "etc-containerd"
    node_etc.mkdir()
    (node_etc / "config.toml").write_text("version = 2\n")
    marker = tmp_path / "restarted"
    args = {
        "/host/etc/containerd": str(node_etc),
        "/etc/containerd/certs.d": str(tmp_path / "certs.d"),
        restart.split("=", 1)[1]: f"touch {marker}",
    }
    done = _run_init(init, args)
    assert done.returncode == 0, done.stderr
    config = tomllib.loads((node_etc / "config.toml").read_text())
    assert config["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"] == str(tmp_path / "certs.d")
    assert marker.exists()
    marker.unlink()
    assert _run_init(init, args).returncode == 0 and not marker.exists()  # unchanged: no restart


def test_webhook_configuration_reaches_the_webhook_and_never_blocks() -> None:
    docs = rendered("fleet")
    [configuration] = by_kind(docs, "MutatingWebhookConfiguration").values()
    service = by_kind(docs, "Service")["registry-mirror-webhook"]
    deployment = by_kind(docs, "Deployment")["registry-mirror-webhook"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    listen_port = int(next(a for a in container["args"] if a.startswith("--listen=")).rsplit(":", 1)[1])
    assert {p["containerPort"] for p in container["ports"]} == {listen_port}
    certificate = by_kind(docs, "Certificate")["registry-mirror-webhook"]
    assert (
        configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        == f"{NAMESPACE}/registry-mirror-webhook"
    )
    paths = set()
    for webhook in configuration["webhooks"]:
        assert webhook["failurePolicy"] == "Ignore" and webhook["sideEffects"] == "None"
        ref = webhook["clientConfig"]["service"]
        assert (ref["name"], ref["namespace"]) == ("registry-mirror-webhook", NAMESPACE)
        assert ref["port"] in {p["port"] for p in service["spec"]["ports"]}
        assert f"{ref['name']}.{ref['namespace']}.svc" in certificate["spec"]["dnsNames"]
        paths.add(ref["path"])
        excluded = webhook["namespaceSelector"]["matchExpressions"]
        assert any(e["key"] == "registry-mirror/inject" for e in excluded)
    assert paths == {"/mutate", "/mutate?scope=namespace"}
    mirror_port = int(next(a for a in container["args"] if a.startswith("--mirror-port=")).split("=")[1])
    mirror = next(c for c in _mirror_pod(docs)["containers"] if c["name"] == "mirror")
    assert mirror_port == next(p["hostPort"] for p in mirror["ports"] if p["name"] == "http")
