"""The human-in-the-loop cycle, run by the worker: an event's document -> stored label -> retrain -> pre-label.

``Loop`` holds what the steps share (settings, the store, the platforms, the champion models in memory) and
one object per step, each in its own module:

    ingest.py    an event -> the document's ground-truth label in the store (and the label scheme)
    sync.py      import the platform's documents; reconcile what webhooks missed
    training.py  the families due, fit, ensemble, gate, save a version
    prelabel.py  score the pool, choose by active learning, upload pre-labels through the platform
    crossval.py  k-fold cross-validation of the champion's configuration, on demand
    mapping.py   the project's map (sentence embeddings in 2-D), once per champion

Each step takes ids, re-reads state from the store, and is safe to run twice: a replayed event converges to the
same rows, a retried pre-label job does not upload twice. Nothing here knows about Huey (see worker/jobs.py), and
nothing asks which platform it talks to: that is annotation_client's ``Platform``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from annotation_client import Platform, ProjectRef, make_platform
from config import Settings
from storage import ModelVersion, Project, Store

from .crossval import CrossValidation
from .fitting import Fitting
from .ingest import EventRejected, Ingest
from .mapping import Mapping
from .prelabel import Prelabels
from .quality import Quality
from .sync import Sync
from .training import ModelWriteError, Training, TrainResult, classes_of, save_version

__all__ = ["EventRejected", "Loop", "ModelWriteError", "TrainResult", "classes_of", "save_version"]


class Loop:
    """The worker's shared state and its steps (``ingest``, ``sync``, ``fitting``, ``training``, ``quality``,
    ``prelabels``, ``crossval``, ``maps``).

    ``client_factory(platform name)`` replaces a platform's HTTP client (tests: fast retries)."""

    def __init__(self, settings: Settings, store: Store, client_factory: Callable[[str], Any] | None = None) -> None:
        self._settings = settings
        self.store = store
        self._client_factory = client_factory
        if {"embed", "hybrid"} & set(settings.families):
            from model.embed import use_store  # noqa: PLC0415 - numpy only; Keras loads with the encoder

            use_store(settings.embedding_cache_path)
        self._clients: dict[str, Any] = {}
        self._platforms: dict[str, Platform] = {}
        self._models: dict[int, tuple[int, Any]] = {}  # project id -> (model version id, classifier in memory)
        self.ingest = Ingest(self)
        self.sync = Sync(self)
        self.fitting = Fitting(self)
        self.training = Training(self)
        self.quality = Quality(self)
        self.prelabels = Prelabels(self)
        self.crossval = CrossValidation(self)
        self.maps = Mapping(self)

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self._settings = settings
        self._platforms.clear()  # they were configured from the old settings (their clients stay)

    # -- platforms -----------------------------------------------------------------------------------------
    def platform(self, name: str) -> Platform:
        if name not in self._platforms:
            if name not in self._clients and self._client_factory is not None:
                self._clients[name] = self._client_factory(name)
            self._platforms[name] = make_platform(name, self.settings, self._clients.get(name))
            self._clients[name] = self._platforms[name].client
        return self._platforms[name]

    def client(self, name: str) -> Any:
        """The HTTP client of platform ``name``."""
        return self.platform(name).client

    def project(self, project_id: int) -> tuple[Platform, ProjectRef]:
        """A project's platform and its reference as the platform sees it (with the scheme stored last time)."""
        with self.store.session() as s:
            p = s.get(Project, project_id)
            ref = ProjectRef(p.id, p.owner, p.name, p.label_name or "", p.label_type, p.label_id,
                             tuple((str(i), str(n)) for i, n in (p.label_ids or [])))
            name = p.platform
        return self.platform(name), ref

    # -- models in memory ----------------------------------------------------------------------------------
    def load_copy(self, version_id: int) -> Any:
        """A fresh copy of a version's model, loaded from its folder."""
        from model.factory import load_classifier  # noqa: PLC0415 - TensorFlow loads with a Keras model

        with self.store.session() as s:
            path = s.get(ModelVersion, version_id).path
        return load_classifier(Path(path))

    def classifier(self, project_id: int, version_id: int) -> Any:
        """The model of a version, kept in memory for the champion."""
        cached = self._models.get(project_id)
        if cached is not None and cached[0] == version_id:
            return cached[1]
        clf = self.load_copy(version_id)
        self._models[project_id] = (version_id, clf)
        return clf

    def keep_model(self, project_id: int, version_id: int, clf: Any) -> None:
        """Remember a just-promoted champion without reloading it."""
        self._models[project_id] = (version_id, clf)
