"""docs/kubernetes: parse every manifest and check the cross-references a typo would break."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from registry_mirror.config_load import load_settings
from tests.support.mirror import mirror_binary

K8S = Path(__file__).resolve().parents[2] / "docs" / "kubernetes"
WORKLOADS = ("Deployment", "DaemonSet")


def documents() -> list[dict[str, Any]]:
    docs = [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    assert docs and all({"apiVersion", "kind", "metadata"} <= set(d) for d in docs)
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _workloads() -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] in WORKLOADS]


def test_selectors_labels_and_ports() -> None:
    workloads = _workloads()
    for workload in workloads:
        template = workload["spec"]["template"]
        assert _selects(workload["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])
    for service in by_kind("Service").values():
        targets = [w for w in workloads if _selects(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])]
        assert len(targets) == 1, service["metadata"]["name"]
        port_names = {p["name"] for c in targets[0]["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    for pdb in by_kind("PodDisruptionBudget").values():
        assert any(_selects(pdb["spec"]["selector"]["matchLabels"], w["spec"]["template"]["metadata"]["labels"])
                   for w in workloads)
    namespaces = set(by_kind("Namespace"))
    assert all(d["metadata"].get("namespace") in namespaces for d in documents() if d["kind"] != "Namespace")


def test_volumes_config_maps_and_secrets() -> None:
    config_maps, secrets = by_kind("ConfigMap"), by_kind("Secret")
    for workload in _workloads():
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"] + pod.get("initContainers", []):
            for mount in container.get("volumeMounts", []):
                volume = volumes[mount["name"]]
                if "configMap" in volume and "subPath" in mount:
                    assert mount["subPath"] in config_maps[volume["configMap"]["name"]]["data"]
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"]
        for volume in volumes.values():
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps


def _mirror_pod() -> dict[str, Any]:
    return by_kind("DaemonSet")["registry-mirror"]["spec"]["template"]["spec"]


def test_config_map_loads_and_matches_ports(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for key, value in by_kind("Secret")["registry-mirror-tokens"]["stringData"].items():
        (secrets_dir / key).write_text(value)
    text = by_kind("ConfigMap")["registry-mirror-config"]["data"]["registry-mirror.toml"]
    config = tmp_path / "registry-mirror.toml"
    config.write_text(text.replace("/etc/registry-mirror/secrets", str(secrets_dir)))
    mirror = next(c for c in _mirror_pod()["containers"] if c["name"] == "mirror")
    env = {e["name"]: e["value"].replace("$(NODE_IP)", "10.0.0.7") for e in mirror["env"] if "value" in e}
    settings = load_settings(config, env, {})  # unknown keys or bad values raise here
    ports = {p["name"]: p for p in mirror["ports"]}
    assert ports["http"]["containerPort"] == ports["http"]["hostPort"] == settings.listen_port
    assert settings.listen_host == "0.0.0.0" and settings.client_token  # open listener -> token
    assert int(settings.p2p.peer_listen.rsplit(":", 1)[1]) == ports["peer"]["containerPort"]
    assert urlsplit(settings.p2p.advertise).port == ports["peer"]["hostPort"]
    assert settings.cache.directory.as_posix() in {m["mountPath"] for m in mirror["volumeMounts"]}
    tracker = urlsplit(settings.p2p.tracker)
    service = by_kind("Service")[tracker.hostname.split(".")[0]]
    assert tracker.port in {p["port"] for p in service["spec"]["ports"]}
    tracker_args = " ".join(by_kind("Deployment")["registry-mirror-tracker"]["spec"]["template"]["spec"]["containers"][0]["args"])
    redis_host = re.search(r"redis://([^:/]+)", tracker_args).group(1)  # type: ignore[union-attr]
    assert redis_host in by_kind("Service")


def test_init_container_writes_hosts_toml(tmp_path: Path) -> None:
    init = _mirror_pod()["initContainers"][0]
    args = [a.replace("$(NODE_IP)", "10.0.0.7").replace("$(CLIENT_TOKEN)", "t0ken")
             .replace("/etc/containerd/certs.d", str(tmp_path)) for a in init["args"]]
    assert init["command"][0] == "registry-mirror"
    done = subprocess.run([mirror_binary(), *init["command"][1:], *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    hosts = (tmp_path / "docker.io" / "hosts.toml").read_text()
    assert "http://10.0.0.7:5000" in hosts and "Bearer t0ken" in hosts
    mount = next(m for m in init["volumeMounts"])
    assert mount["mountPath"] == "/etc/containerd/certs.d"
