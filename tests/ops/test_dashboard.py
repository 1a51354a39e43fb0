"""Debian's real Prometheus scrapes a mirror under a small pull workload; every PromQL expression of
the Grafana dashboard must return data, and the hit ratio must be what the workload did."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.conftest import TestImages
from tests.ops.conftest import OpsMirrorFactory, pull
from tests.support.net import free_port, wait_http
from tests.support.procs import ManagedProcess, require_binary

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "registry-mirror.json"
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__range": "5m", "$__interval": "1s"}


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def _expand(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_every_dashboard_expression_returns_data(
    ops_mirror: OpsMirrorFactory, images: TestImages, tmp_path: Path
) -> None:
    mirror = ops_mirror(
        "[limits]\nclient_rate = 1\nclient_burst = 60\n"
        '[[blocklist]]\nrepository = "test/docker"\nreason = "blocked for the dashboard"\n'
    )
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: 1s}}\nscrape_configs:\n"
        f"  - job_name: registry-mirror\n    static_configs: [{{targets: ['{mirror.host}']}}]\n"
    )
    prometheus = ManagedProcess(
        [
            require_binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "prometheus.log",
    ).start()
    api = f"http://127.0.0.1:{port}/api/v1/query"
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=30, alive=prometheus.alive)
        with mirror.client() as client, httpx.Client(base_url=mirror.admin_url) as admin:
            cold = pull(client, images.app)  # from the origin
            time.sleep(2)  # two scrapes apart, so rate() sees the counters move
            warm = pull(client, images.app) + pull(client, images.app)  # from the cache
            missing = "sha256:" + "0" * 64
            assert (
                client.get(f"/v2/{images.app.repo}/blobs/{missing}", params={"ns": images.app.registry}).status_code
                == 404
            )
            assert (
                client.get(f"/v2/{images.docker.repo}/manifests/v1", params={"ns": images.docker.registry}).status_code
                == 403
            )
            assert admin.delete(f"/admin/cache/{images.app.layers[0].digest}").status_code == 200
            with httpx.Client(base_url=mirror.url, transport=httpx.HTTPTransport(local_address="127.0.0.3")) as other:
                assert 429 in {other.get("/v2/").status_code for _ in range(70)}
        expected_ratio = warm / (cold + warm)

        def query(expr: str) -> list[dict]:  # type: ignore[type-arg]
            body = httpx.get(api, params={"query": _expand(expr)}).json()
            assert body["status"] == "success", (expr, body)
            return body["data"]["result"]

        # Series born late in the workload need two scrapes before rate() has data: poll (1 s scrapes).
        empty: list[str] = []
        for _ in range(100):
            empty = [expr for expr in dashboard_expressions() if not query(expr)]
            if not empty:
                break
            time.sleep(0.2)
        assert not empty, f"no data for: {empty}"
        hit_ratio = next(e for e in dashboard_expressions() if "rate" not in e and "source!=" in e)
        assert abs(float(query(hit_ratio)[0]["value"][1]) - expected_ratio) < 1e-9
    finally:
        prometheus.stop()


def test_exporter_names(ops_mirror: OpsMirrorFactory, images: TestImages) -> None:
    mirror = ops_mirror()
    with mirror.client() as client:
        pull(client, images.app)
        text = client.get("/metrics").text
    for name in (
        'registry_mirror_blob_bytes_total{source="origin",upstream=',
        "registry_mirror_requests_total{",
        "registry_mirror_blob_duration_seconds_bucket{",
        "registry_mirror_time_to_first_byte_seconds_bucket{",
        "registry_mirror_cache_bytes_used ",
        "registry_mirror_cache_bytes_capacity ",
    ):
        assert name in text, name
    requests_line = next(line for line in text.splitlines() if line.startswith("registry_mirror_requests_total{"))
    assert all(f'{label}="' in requests_line for label in ("route", "method", "status"))
