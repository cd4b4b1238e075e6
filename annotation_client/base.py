"""The one interface every annotation platform implements, and the plain data that crosses it.

The worker's loop (worker/loop/) talks to a platform only through ``Platform``; it never asks which platform it
has. A platform turns its webhooks into ``WebhookEvent``s (pure: no I/O), says what an event asks for
(``plan_event``), reads a document with its ground-truth label (``read_document``), lists documents for sync and
reconciliation, reads the label definitions (``read_scheme``), and uploads pre-labels. What it stores is the
loop's business: nothing here imports the store.

A new platform (doccano, Argilla...) is one module with a ``Platform`` subclass, plus one line in
``annotation_client/__init__.py``'s ``PLATFORMS``.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, ClassVar, Collection, Iterable, Mapping, Sequence

from .errors import WebhookRejected


def utcnow() -> datetime:
    """Naive UTC, as the store keeps times (when a platform read happened, for race detection)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class Scheme:
    """A project's labels: one (binary/multiclass) or several booleans (multilabel)."""

    kind: str  # single | multilabel
    ids: tuple[str, ...]  # platform label ids (tagtog m_N; Label Studio choices)
    names: tuple[str, ...]  # their names: the class names of a multilabel model
    type: str | None  # boolean | enum | None (single: inferred from values)
    # what the project row keeps of it (label_type, label_id, label_ids); None when it was read from that row
    record: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class ProjectRef:
    """A served project as a platform sees it: its key on the platform and the scheme stored last time."""

    id: int
    owner: str
    name: str
    label_name: str = ""  # the configured label(s): tagtog ``a+b`` / a name; Label Studio a <Choices> name
    label_type: str | None = None
    label_id: str | None = None
    label_ids: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class WebhookEvent:
    """One delivery, parsed: which project and document, what happened, and the key that makes a replay a
    duplicate. ``once``: the key is unique for good (not only while the event is queued)."""

    owner: str
    project: str
    doc_id: str
    kind: str
    dedup_key: str
    member: str = ""
    source: str = ""
    once: bool = False


@dataclass(frozen=True)
class Ignored:
    """A delivery prelabel answers 200 to and does not record (its own uploads, actions it does not use). When it
    names its project, the project must still be one prelabel serves (else 404, as for any event)."""

    reason: str
    owner: str = ""
    project: str = ""


@dataclass(frozen=True)
class Plan:
    """What an event asks the worker to do: ``read`` documents, re-read those holding ``annotation_ids``,
    ``reconcile``, ``refresh_scheme``, ``retrain``, or ``ignore`` (with a reason)."""

    action: str
    doc_ids: tuple[str, ...] = ()
    annotation_ids: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class Reading:
    """A document as the platform holds it now: its ground-truth value under a scheme (None: no ground truth),
    who set it, and its text when the read carried it (else ``Platform.read_text``). ``invalid`` says why the
    label cannot be used (the loop refreshes the scheme once, then rejects)."""

    doc_id: str
    value: Any
    who: str = ""
    annotation_id: str | None = None
    text: str | None = None
    invalid: str = ""


@dataclass(frozen=True)
class Listed:
    """A document in a platform listing: its change stamp, file name and folder, and its ``reading`` when the
    listing carries text and labels (Label Studio's export), else None (read it when needed)."""

    doc_id: str
    updated: str = ""
    filename: str = ""
    folder: str = ""
    reading: Reading | None = None


@dataclass(frozen=True)
class Suggestion:
    """One pre-label: the model's ``value`` (a class name, or the sorted names a multilabel model sets), its
    probability, and for multilabel each class with its decision and probability."""

    doc_id: str
    value: Any
    prob: float
    marks: tuple[tuple[str, bool, float], ...] = ()


class Platform(ABC):
    """An annotation platform, as the loop and the web process use it."""

    name: ClassVar[str]  # the registry key, the ``platform`` column, the webhook path
    client_class: ClassVar[type | None] = None  # its HTTP client (annotation_client.make_client)
    noun: ClassVar[str] = "document"  # what the platform calls a document, in event outcomes
    can_create_documents: ClassVar[bool] = False  # corpus samples can be uploaded as new documents
    can_upload: ClassVar[bool] = True  # pre-labels go back to the platform
    # every unlabelled document carries the champion's suggestion and the platform's own queue serves them in
    # prelabel's order (upload_queue: Label Studio); otherwise a batch of PRELABEL_K (upload_prelabels)
    queues_pool: ClassVar[bool] = False
    receives_webhooks: ClassVar[bool] = True  # POST /webhooks/<name> exists
    lists_documents: ClassVar[bool] = True  # sync and reconcile have something to compare
    listing_is_complete: ClassVar[bool] = False  # list_labelled lists every document (absent = deleted)
    retrain_on_scheme_change: ClassVar[bool] = False  # a changed label scheme asks for a retrain at once
    max_webhook_bytes: ClassVar[int | None] = None  # None: the web process's MAX_BODY_BYTES

    def __init__(self, client: Any = None) -> None:
        self.client = client

    # -- configuration (pure) ------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Any, client: Any = None) -> "Platform":
        """The platform configured by ``settings`` (config.Settings); ``client`` replaces its HTTP client."""

    @staticmethod
    @abstractmethod
    def parse_project_spec(spec: str) -> tuple[str, str, str]:
        """A project as written in the settings -> (owner, name, label); ValueError naming the expected form."""

    @classmethod
    def document_url(cls, settings: Any, owner: str, name: str, doc_id: str) -> str | None:
        """Where a person opens the document on the platform (None: it has no page)."""
        return None

    @classmethod
    def project_ref(cls, owner: str, name: str) -> str:
        """A project as people type it on the command line (``platform/owner/name``)."""
        return f"{cls.name}/{owner}/{name}"

    def not_served(self, owner: str, project: str) -> str:
        """The 404 message for a webhook naming a project this prelabel does not serve."""
        return f"{self.name} project {owner}/{project} is not served by this prelabel"

    def describe_value(self, value: Any) -> str:
        """A stored label value in an event outcome (``labelled <this>``)."""
        return value if isinstance(value, str) else json.dumps(value)

    # -- webhooks (pure, no I/O) ---------------------------------------------------------------------------
    @abstractmethod
    def verify_webhook(self, headers: Mapping[str, str]) -> None:
        """Check the delivery's credentials; raises WebhookRejected(401) when they are missing or wrong."""

    @abstractmethod
    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent | Ignored:
        """The event a delivery carries; raises WebhookRejected(400) naming what is malformed."""

    @abstractmethod
    def plan_event(self, kind: str, ref: str, member: str) -> Plan:
        """What a stored event of this platform asks the worker to do (pure)."""

    # -- reads ---------------------------------------------------------------------------------------------
    @abstractmethod
    def read_scheme(self, project: ProjectRef, refresh: bool = False) -> Scheme:
        """The project's label scheme from the platform's label definitions (or the stored one, unless
        ``refresh``); raises EventRejected when the configured label does not exist."""

    @abstractmethod
    def allowed_classes(self, project: ProjectRef, scheme: Scheme) -> set[str] | None:
        """The classes the platform still defines (a removed one stops being trained on); None: every class."""

    @abstractmethod
    def read_document(self, project: ProjectRef, doc_id: str, scheme: Scheme) -> Reading:
        """One document's ground truth now; raises NotFound when it no longer exists."""

    @abstractmethod
    def read_text(self, project: ProjectRef, doc_id: str, need_folder: bool) -> tuple[str, str | None]:
        """A document's text and (when ``need_folder``) its folder, for a document stored the first time."""

    @abstractmethod
    def list_documents(self, project: ProjectRef) -> Iterable[Listed]:
        """Every document offered as a candidate for pre-labelling (sync)."""

    @abstractmethod
    def list_labelled(self, project: ProjectRef, scheme: Scheme) -> dict[str, Listed]:
        """The documents holding ground truth now, by id, with their change stamps (reconciliation)."""

    # -- writes --------------------------------------------------------------------------------------------
    @abstractmethod
    def upload_prelabels(self, project: ProjectRef, scheme: Scheme, suggestions: Sequence[Suggestion],
                         version: int, still_wanted: Callable[[str], bool],
                         uploaded: Callable[..., None]) -> int:
        """Upload pre-labels of model ``version``; returns how many the platform took. Never overwrites a
        person's label. ``still_wanted(doc_id)`` is asked right before each upload (a person may be on it now);
        ``uploaded(done, before=None)`` is called after each platform call, so a retried job skips what is done;
        ``before`` maps a document to (when its state was read, what the upload replaced) where an upload
        replaces the document's annotations (tagtog), for ``restore_overwritten``."""

    def carries_upload(self, reading: Reading, version: int) -> bool:
        """Whether a document read now still shows prelabel's upload of ``version`` (a person's save that
        arrived before it was overwritten by it). False where uploads never replace annotations (Label Studio's
        predictions are separate objects)."""
        return False

    def restore_overwritten(self, project: ProjectRef, doc_id: str, version: int, replaced: str) -> bool:
        """Put back what an upload of ``version`` replaced (``replaced``, as passed to ``uploaded``); True when
        the platform was written."""
        return False

    def upload_queue(self, project: ProjectRef, scheme: Scheme, suggestions: Sequence[Suggestion], *, mode: str,
                     audit: Collection[str], still_wanted: Callable[[str], bool],
                     uploaded: Callable[..., None]) -> int:
        """(``queues_pool``) Write ``suggestions`` (the pool documents whose suggestion changed) and set the
        platform's queue for PRELABEL_MODE ``mode``; ``audit``: documents drawn at random for the estimate, to be
        served early. ``still_wanted`` and ``uploaded`` as in ``upload_prelabels``. Returns how many were written."""
        raise NotImplementedError(f"{self.name} has no queue of its own")

    def create_document(self, project: ProjectRef, text: str, filename: str) -> str:
        """Upload a text as a new document (``can_create_documents``), found again by ``filename`` after a
        crash; returns its id."""
        raise NotImplementedError(f"{self.name} documents are not created by prelabel")


def rejected(status: int, message: str, **headers: str) -> WebhookRejected:
    return WebhookRejected(status, message, headers)
