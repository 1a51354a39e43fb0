"""A small ModelScope-compatible origin for tests, run as a real process:
`python -m tests.hub.ms_origin PORT DIR MODEL_ID`.

No public ModelScope-compatible server runs offline, so this answers the documented API shapes
the `modelscope` client uses: the file listing (`/api/v1/models/{id}/repo/files`, with `Sha256`
per file), the file download (`/api/v1/models/{id}/repo?Revision=&FilePath=`), model info and
revisions. Files are served from DIR; every request is logged."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from aiohttp import web

REVISION = "master"


def main() -> None:
    port, root, model_id = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    base = f"/api/v1/models/{model_id}"

    def listing() -> list[dict[str, object]]:
        files = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            rel = path.relative_to(root).as_posix()
            files.append(
                {
                    "Name": path.name,
                    "Path": rel,
                    "Type": "blob",
                    "Size": len(data),
                    "Sha256": hashlib.sha256(data).hexdigest(),
                    "Revision": REVISION,
                    "IsLFS": len(data) > 1000,
                    "CommitId": "0" * 40,
                    "CommittedDate": 1704067200,
                    "Mode": "33188",
                }
            )
        return files

    def ok(data: object) -> web.Response:
        return web.json_response(
            {"Code": 200, "Data": data, "Message": "success", "Success": True, "RequestId": "test"}
        )

    async def handle(request: web.Request) -> web.StreamResponse:
        print(f"{request.method} {request.path_qs}", flush=True)
        path = request.path
        if path == f"{base}/repo/files":
            return ok({"Files": listing()})
        if path == f"{base}/repo":
            target = root / request.query.get("FilePath", "")
            if not target.is_file():
                return web.json_response({"Code": 404, "Message": "not found", "Success": False}, status=404)
            return web.FileResponse(target)
        if path == f"{base}/revisions":
            return ok({"RevisionMap": {"Branches": [{"Revision": REVISION, "CreatedAt": 1704067200}], "Tags": []}})
        if path == base:
            return ok(
                {
                    "Id": 1,
                    "Name": model_id.split("/")[1],
                    "Path": model_id.split("/")[0],
                    "ModelType": [],
                    "Revision": REVISION,
                }
            )
        return web.json_response({"Code": 404, "Message": f"no route {path}", "Success": False}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()
