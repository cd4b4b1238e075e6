"""Annotation platforms. ``PLATFORMS`` is the one place that maps a platform name to its class; each class
implements ``base.Platform`` over its HTTP client (``Platform.client_class``).

A new platform: one module with a ``Platform`` subclass (and its client), plus one line in ``PLATFORMS``.
"""
from __future__ import annotations

from typing import Any

from .base import (Ignored, Listed, Plan, Platform, ProjectRef, Reading, Scheme, Suggestion, WebhookEvent)
from .errors import (AuthError, EventRejected, MalformedAnswer, NotFound, PlatformError, PlatformUnavailable,
                     TooLarge, WebhookRejected)
from .labelstudio import LabelStudioClient, LabelStudioPlatform
from .local import LOCAL, LocalPlatform
from .tagtog import AnndocUpload, LabelDef, SearchHit, TagtogClient, TagtogPlatform

PLATFORMS: dict[str, type[Platform]] = {
    "tagtog": TagtogPlatform,
    "labelstudio": LabelStudioPlatform,
    LOCAL: LocalPlatform,
}

__all__ = ["LOCAL", "PLATFORMS", "AnndocUpload", "AuthError", "EventRejected", "Ignored", "LabelDef",
           "LabelStudioClient", "LabelStudioPlatform", "Listed", "LocalPlatform", "MalformedAnswer", "NotFound",
           "Plan", "Platform", "PlatformError", "PlatformUnavailable", "ProjectRef", "Reading", "Scheme",
           "SearchHit", "Suggestion", "TagtogClient", "TagtogPlatform", "TooLarge", "WebhookEvent", "WebhookRejected",
           "make_client", "make_platform", "platform_class"]


def platform_class(name: str) -> type[Platform]:
    """The class of platform ``name``; ValueError naming the known ones."""
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ValueError(f"unknown platform {name!r}; known: {sorted(PLATFORMS)}") from None


def make_platform(name: str, settings: Any, client: Any = None) -> Platform:
    """Platform ``name`` configured by ``settings`` (config.Settings); ``client`` replaces its HTTP client."""
    return platform_class(name).from_settings(settings, client)


def make_client(platform: str, **kwargs: Any) -> Any:
    """Build the HTTP client of ``platform`` from constructor arguments (see each client's ``__init__``)."""
    cls = platform_class(platform).client_class
    if cls is None:
        raise ValueError(f"platform {platform!r} has no HTTP client")
    return cls(**kwargs)
