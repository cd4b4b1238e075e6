"""``local/<name>``: a project with no annotation platform (scripts.cli import/train/export/predict). Nothing to
sync, nothing to upload; every imported class counts."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from .base import Ignored, Listed, Plan, Platform, ProjectRef, Reading, Scheme, Suggestion, WebhookEvent, rejected
from .errors import NotFound

LOCAL = "local"


class LocalPlatform(Platform):
    name = LOCAL
    can_create_documents = True  # imported rows are the documents
    can_upload = False
    receives_webhooks = False
    lists_documents = False

    @classmethod
    def from_settings(cls, settings: Any, client: Any = None) -> "LocalPlatform":
        return cls(client)

    @classmethod
    def project_ref(cls, owner: str, name: str) -> str:
        return f"{LOCAL}/{name}"  # as it is typed: a local project has no owner

    @staticmethod
    def parse_project_spec(spec: str) -> tuple[str, str, str]:
        return LOCAL, spec.strip(), ""

    def verify_webhook(self, headers: Mapping[str, str]) -> None:
        raise rejected(404, "local projects receive no webhooks")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent | Ignored:
        raise rejected(404, "local projects receive no webhooks")

    def plan_event(self, kind: str, ref: str, member: str) -> Plan:
        return Plan("ignore", reason="local projects have no platform events")

    def read_scheme(self, project: ProjectRef, refresh: bool = False) -> Scheme:
        if project.label_type == "multilabel":
            names = tuple(n for _, n in project.label_ids)
            return Scheme("multilabel", names, names, "boolean")
        return Scheme("single", (project.label_id or "label",), (project.label_id or "label",), project.label_type)

    def allowed_classes(self, project: ProjectRef, scheme: Scheme) -> set[str] | None:
        return None

    def read_document(self, project: ProjectRef, doc_id: str, scheme: Scheme) -> Reading:
        raise NotFound(404, f"local project {project.name} has no platform documents")

    def read_text(self, project: ProjectRef, doc_id: str, need_folder: bool) -> tuple[str, str | None]:
        raise NotFound(404, f"local project {project.name} has no platform documents")

    def list_documents(self, project: ProjectRef) -> Iterable[Listed]:
        return []

    def list_labelled(self, project: ProjectRef, scheme: Scheme) -> dict[str, Listed]:
        return {}

    def upload_prelabels(self, project: ProjectRef, scheme: Scheme, suggestions: Sequence[Suggestion],
                         version: int, still_wanted: Callable[[str], bool],
                         uploaded: Callable[[Sequence[Suggestion]], None]) -> int:
        return 0
