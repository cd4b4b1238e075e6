"""Clients for annotation platforms. ``CLIENTS`` is the one place that maps a platform name to its client."""
from __future__ import annotations

from typing import Any

from .errors import AuthError, MalformedAnswer, NotFound, PlatformError, PlatformUnavailable
from .labelstudio import LabelStudioClient
from .tagtog import AnndocUpload, LabelDef, SearchHit, TagtogClient

CLIENTS: dict[str, type] = {"tagtog": TagtogClient, "labelstudio": LabelStudioClient}
LOCAL = "local"  # a project with no platform (scripts.cli import/train/export): no client, nothing to upload

__all__ = ["CLIENTS", "LOCAL", "AnndocUpload", "AuthError", "LabelDef", "LabelStudioClient", "MalformedAnswer",
           "NotFound", "PlatformError", "PlatformUnavailable", "SearchHit", "TagtogClient", "make_client"]


def make_client(platform: str, **kwargs: Any) -> Any:
    """Build the client of ``platform`` from constructor arguments (see each client's ``__init__``)."""
    try:
        cls = CLIENTS[platform]
    except KeyError:
        raise ValueError(f"unknown platform {platform!r}; known: {sorted(CLIENTS)}") from None
    return cls(**kwargs)
