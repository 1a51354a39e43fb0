"""Which pods get the hub endpoints, and the JSON Patch (RFC 6902) that adds them.

Each container and init container gets, appended after its own env so that Kubernetes expands the
reference: `NODE_IP` from the downward API (`status.hostIP`), then `HF_ENDPOINT=http://$(NODE_IP):5000/hf`
and `MODELSCOPE_ENDPOINT=http://$(NODE_IP):5000/modelscope`. A variable the container already sets
in `env` is left as it is. (A value from `envFrom` is invisible here, and `env` would win over it:
annotate such a pod `registry-mirror/inject: "false"`.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

INJECT_KEY = "registry-mirror/inject"  # pod annotation "true"/"false"; namespace label "enabled"
NODE_IP_ENV = "NODE_IP"
CONTAINER_LISTS = ("initContainers", "containers")


@dataclass(frozen=True)
class HubEndpoints:
    """Where the node's mirror answers, as seen from a pod on that node."""

    port: int = 5000
    scheme: str = "http"
    hf_path: str = "/hf"
    modelscope_path: str = "/modelscope"

    def env(self) -> list[dict[str, Any]]:
        base = f"{self.scheme}://$({NODE_IP_ENV}):{self.port}"
        return [
            {"name": NODE_IP_ENV, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.hostIP"}}},
            {"name": "HF_ENDPOINT", "value": base + self.hf_path},
            {"name": "MODELSCOPE_ENDPOINT", "value": base + self.modelscope_path},
        ]


def wants_injection(pod: Mapping[str, Any], namespace_opted_in: bool) -> bool:
    """The pod says `registry-mirror/inject: "true"`, or its namespace opted in (the webhook
    configuration's namespaceSelector says so) and the pod does not say "false"."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    value = str(annotations.get(INJECT_KEY, "")).strip().lower()
    return value == "true" or (namespace_opted_in and value != "false")


def env_patch(pod: Mapping[str, Any], endpoints: HubEndpoints) -> list[dict[str, Any]]:
    """JSON Patch operations adding the endpoint variables each container lacks; [] when none."""
    operations: list[dict[str, Any]] = []
    spec = pod.get("spec") or {}
    for list_name in CONTAINER_LISTS:
        for index, container in enumerate(spec.get(list_name) or []):
            env = container.get("env")
            present = {item.get("name") for item in env or [] if isinstance(item, Mapping)}
            missing = [item for item in endpoints.env() if item["name"] not in present]
            if not missing:
                continue
            path = f"/spec/{list_name}/{index}/env"
            if env is None:
                operations.append({"op": "add", "path": path, "value": missing})
            else:
                operations += [{"op": "add", "path": path + "/-", "value": item} for item in missing]
    return operations
