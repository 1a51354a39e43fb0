"""`POST /mutate`: AdmissionReview v1 in, AdmissionReview v1 out with a JSONPatch for Pod CREATEs.

The webhook never denies: every answer is `allowed: true`, with or without a patch, and the shipped
configuration says `failurePolicy: Ignore`, so a webhook that is down only means pods start without
the hub variables. `?scope=namespace` marks calls routed by the namespaceSelector of an opted-in
namespace (the review itself does not carry the namespace's labels).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from http_limits.errors import error_response
from registry_mirror.webhook import _metrics as metrics
from registry_mirror.webhook._patch import HubEndpoints, env_patch, wants_injection

MAX_REVIEW_BYTES = 4 << 20  # an object in etcd is at most 1.5 MiB; a review holds it and its old self
ADMISSION_API = "admission.k8s.io/v1"


class InvalidReview(ValueError):
    pass


class ReviewTooLarge(InvalidReview):
    pass


def review_response(review: Any, endpoints: HubEndpoints, namespace_opted_in: bool) -> tuple[dict[str, Any], str]:
    """The AdmissionReview answer for `review`, and the result label for the metric."""
    if (
        not isinstance(review, dict)
        or review.get("apiVersion") != ADMISSION_API
        or review.get("kind") != "AdmissionReview"
    ):
        raise InvalidReview(f"expected an {ADMISSION_API} AdmissionReview")
    request = review.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str):
        raise InvalidReview("request.uid is missing")
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    kind = request.get("kind") or {}
    pod = request.get("object")
    result = "skipped"
    if kind.get("kind") == "Pod" and request.get("operation") == "CREATE" and isinstance(pod, dict):
        result = "unchanged"
        if wants_injection(pod, namespace_opted_in):
            operations = env_patch(pod, endpoints)
            if operations:
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(operations).encode()).decode()
                result = "injected"
    return {"apiVersion": ADMISSION_API, "kind": "AdmissionReview", "response": response}, result


def create_app(endpoints: HubEndpoints, metrics_endpoint: Any = None) -> Starlette:
    async def mutate(request: Request) -> Response:
        started = time.perf_counter()
        result = "invalid"
        try:
            body = await _read_bounded(request)
            answer, result = review_response(
                json.loads(body), endpoints, request.query_params.get("scope") == "namespace"
            )
            return JSONResponse(answer)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response(400, "the body is not JSON")
        except ValueError as exc:  # InvalidReview: our own messages, naming what is wrong
            return error_response(413 if isinstance(exc, ReviewTooLarge) else 400, str(exc))
        finally:
            metrics.reviews.add(1, {"result": result})
            metrics.review_seconds.record(time.perf_counter() - started)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    routes = [Route("/mutate", mutate, methods=["POST"]), Route("/healthz", healthz)]
    if metrics_endpoint is not None:
        routes.append(Route("/metrics", metrics_endpoint))
    return Starlette(routes=routes)


async def _read_bounded(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_REVIEW_BYTES:
        raise ReviewTooLarge(f"review larger than {MAX_REVIEW_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REVIEW_BYTES:
            raise ReviewTooLarge(f"review larger than {MAX_REVIEW_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
