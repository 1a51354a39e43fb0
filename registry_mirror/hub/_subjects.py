"""What a hub request asks for, as a blocklist Subject: the repo id named in its path.

Every path under `/hf` or `/modelscope` that names a repo (file resolves, revisions, trees,
paths-info, listings, pass-through API calls) yields the same Subject, so a `hf_repo` rule holds
on every route of the hub, not only on file downloads."""

from __future__ import annotations

import re
from urllib.parse import unquote

from registry_mirror.policy import Subject

HF_UPSTREAM = "huggingface"
MODELSCOPE_UPSTREAM = "modelscope"

_HF_API = re.compile(r"^/api/(?:models|datasets|spaces)/(?P<rest>.+)$")
_HF_RESOLVE = re.compile(r"^/(?:(?:datasets|spaces)/)?(?P<repo>[^/]+(?:/[^/]+)?)/resolve/")
# The HF API operations that may follow a repo id; a repo id without an org ("gpt2") is one
# component, so the second component is part of the id only when it is not one of these.
_HF_OPS = frozenset(
    {
        "revision",
        "tree",
        "paths-info",
        "xet-read-token",
        "refs",
        "commits",
        "commit",
        "preupload",
        "treesize",
        "discussions",
        "settings",
        "resolve",
        "parquet",
        "compare",
    }
)
_MS_API = re.compile(r"^/api/v1/(?:models|datasets)/(?P<owner>[^/]+)/(?P<name>[^/]+)(?:/|$)")


def hf_subject(path: str, query: bytes) -> Subject | None:
    if match := _HF_API.match(path):
        parts = match["rest"].split("/")
        repo = parts[0] if len(parts) == 1 or parts[1] in _HF_OPS else f"{parts[0]}/{parts[1]}"
        return _subject(HF_UPSTREAM, repo)
    if match := _HF_RESOLVE.match(path):
        return _subject(HF_UPSTREAM, match["repo"])
    return None


def modelscope_subject(path: str, query: bytes) -> Subject | None:
    if match := _MS_API.match(path):
        return _subject(MODELSCOPE_UPSTREAM, f"{match['owner']}/{match['name']}")
    return None


def _subject(hub: str, raw_repo: str) -> Subject:
    return Subject(upstream=hub, hf_repo=unquote(raw_repo))
