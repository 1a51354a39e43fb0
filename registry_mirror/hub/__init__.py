"""Model hub endpoints: the Hugging Face API under /hf and the ModelScope API under /modelscope,
serving weight files from nvme_cache (and peers) with every byte verified."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from registry_mirror.hub._app import HubApp as HubApp
    from registry_mirror.hub._app import build_hub_app as build_hub_app
    from registry_mirror.hub._errors import hub_error as hub_error
    from registry_mirror.hub._subjects import hf_subject as hf_subject
    from registry_mirror.hub._subjects import modelscope_subject as modelscope_subject

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_app": ["HubApp", "build_hub_app"],
        "_errors": ["hub_error"],
        "_subjects": ["hf_subject", "modelscope_subject"],
    },
)
