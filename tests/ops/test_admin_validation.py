"""Every admin parameter is validated: a bad one is a 400 naming the field, never a 500
(issue 11, item 15). A real mirror process and its admin listener."""

from __future__ import annotations

import httpx

from tests.ops.conftest import OpsMirrorFactory

DIGEST = "sha256:" + "a" * 64


def test_bad_admin_parameters_are_400_with_the_field(ops_mirror: OpsMirrorFactory) -> None:
    mirror = ops_mirror("")
    cases = [
        ("GET", "/admin/cache?limit=abc", None, "limit"),
        ("GET", "/admin/cache?limit=-1", None, "limit"),
        ("GET", "/admin/cache?limit=99999999999999999999", None, "limit"),
        ("GET", "/admin/cache?limit=1&limit=2", None, "limit"),
        ("GET", "/admin/cache/sha256:nothex", None, "digest"),
        ("POST", f"/admin/cache/{DIGEST}/pin?name=../../etc", None, "name"),
        ("POST", f"/admin/cache/{DIGEST}/pin?name=", None, "name"),
        ("POST", "/admin/prefetch", {"ref": 7}, "ref"),
        ("POST", "/admin/prefetch", ["not", "an", "object"], "ref"),
        ("POST", "/admin/prefetch", {"ref": "127.0.0.1:1/test/app:v1", "platform": 3}, "platform"),
    ]
    with httpx.Client(base_url=mirror.admin_url) as admin:
        for method, path, body, field in cases:
            response = admin.request(method, path, json=body)
            assert response.status_code == 400, (method, path, response.status_code, response.text[:200])
            assert response.json()["field"] == field, (path, response.json())
        assert admin.get("/admin/cache?limit=5").status_code == 200
        # Starlette's own refusals come in the admin API's one error shape too
        for method, path, status in (("GET", "/admin/nothing", 404), ("PUT", "/admin/status", 405)):
            refused = admin.request(method, path)
            assert (refused.status_code, set(refused.json())) == (status, {"error"}), refused.text[:200]
        metrics = httpx.get(f"{mirror.url}/metrics").text
    assert 'registry_mirror_admin_bad_requests_total{field="limit"}' in metrics
    assert "Traceback" not in mirror.log_text()
