"""Model hub endpoints: the Hugging Face API under /hf and the ModelScope API under /modelscope,
serving weight files from nvme_cache (and peers) with every byte verified."""

from registry_mirror.hub.app import HubApp, build_hub_app

__all__ = ["HubApp", "build_hub_app"]
