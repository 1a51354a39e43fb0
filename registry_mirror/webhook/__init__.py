"""The model-hub pod-injection webhook: a mutating admission webhook that points a pod's Hugging Face
and ModelScope clients at the mirror on its node (`patch` decides, `app` speaks AdmissionReview)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from registry_mirror.webhook._app import create_app as create_app
    from registry_mirror.webhook._patch import HubEndpoints as HubEndpoints

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_app": ["create_app"],
        "_patch": ["HubEndpoints"],
    },
)
