"""Model hub endpoints: the Hugging Face API under /hf and the ModelScope API under /modelscope,
serving weight files from nvme_cache (and peers) with every byte verified."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry_mirror._facade import lazy_exports

if TYPE_CHECKING:
    from registry_mirror.hub._app import HubApp as HubApp
    from registry_mirror.hub._app import build_hub_app as build_hub_app
    from registry_mirror.hub._errors import hub_error as hub_error
    from registry_mirror.hub._subjects import hf_subject as hf_subject
    from registry_mirror.hub._subjects import modelscope_subject as modelscope_subject

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "_app": (
            "HubApp",
            "build_hub_app",
        ),
        "_errors": ("hub_error",),
        "_subjects": (
            "hf_subject",
            "modelscope_subject",
        ),
    },
)
