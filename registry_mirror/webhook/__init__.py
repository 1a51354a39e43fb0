"""The model-hub pod-injection webhook: a mutating admission webhook that points a pod's Hugging Face
and ModelScope clients at the mirror on its node (`patch` decides, `app` speaks AdmissionReview)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry_mirror._facade import lazy_exports

if TYPE_CHECKING:
    from registry_mirror.webhook._app import create_app as create_app
    from registry_mirror.webhook._patch import HubEndpoints as HubEndpoints

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "_app": ("create_app",),
        "_patch": ("HubEndpoints",),
    },
)
