"""Label Studio wire formats, pure: the label config, webhook bodies, tasks/annotations and predictions.

See shared/docs/labelstudio.md §3 (webhooks) and §4 (ML-backend protocol). prelabel classifies with one
``<Choices>`` control over one ``<Text>`` object: ``choice="single"``/``"single-radio"`` is binary or multiclass,
``choice="multiple"`` is multilabel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import defusedxml.ElementTree as ET
from defusedxml import DefusedXmlException

from .strictjson import loads
from .errors import FormatError

ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_CREATED", "PROJECT_UPDATED",
           "START_TRAINING")


@dataclass(frozen=True)
class LabelConfig:
    """The ``<Choices>`` control prelabel learns, and the ``<Text>`` it labels."""

    from_name: str  # the Choices' name
    to_name: str  # the Text's name
    text_key: str  # the task data key the Text shows ($text -> text)
    multiple: bool  # choice="multiple": multilabel
    choices: tuple[str, ...]

    @property
    def kind(self) -> str:
        return "multilabel" if self.multiple else "single"


def parse_label_config(xml: str, control: str = "") -> LabelConfig:
    """The ``<Choices>`` named ``control`` (or the first one) and the ``<Text>`` it points to."""
    if not xml or not xml.strip():
        raise FormatError("the project has no label config")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise FormatError(f"label config is not valid XML: {exc}") from None
    except DefusedXmlException as exc:
        raise FormatError(f"label config refused ({type(exc).__name__}): DTDs and entities are not allowed") from None
    all_choices = [e for e in root.iter() if e.tag == "Choices"]
    if not all_choices:
        raise FormatError("label config has no <Choices> control: prelabel classifies whole texts")
    picks = [e for e in all_choices if e.get("name") == control] if control else all_choices[:1]
    if not picks:
        raise FormatError(f"label config has no <Choices name=\"{control}\">; it has "
                          f"{[e.get('name') for e in all_choices]}")
    ch = picks[0]
    name, to_name = ch.get("name") or "", ch.get("toName") or ""
    if not name or not to_name:
        raise FormatError("the <Choices> control needs name and toName")
    texts = {e.get("name"): e for e in root.iter() if e.tag in ("Text", "HyperText", "Paragraphs")}
    text = texts.get(to_name.split(",")[0])
    if text is None:
        raise FormatError(f"<Choices name=\"{name}\"> points to {to_name!r}, which is not a <Text> in the config")
    value = text.get("value") or ""
    if not value.startswith("$") or len(value) < 2:
        raise FormatError(f"<Text name=\"{to_name}\"> must show task data ($key), got value={value!r}")
    options = tuple(c.get("value") or c.get("alias") or "" for c in ch.iter("Choice"))
    options = tuple(o for o in options if o)
    if len(options) < 2:
        raise FormatError(f"<Choices name=\"{name}\"> needs at least two <Choice> values, has {list(options)}")
    if len(set(options)) != len(options):
        raise FormatError(f"<Choices name=\"{name}\"> repeats a value: {list(options)}")
    return LabelConfig(name, to_name.split(",")[0], value[1:], (ch.get("choice") or "single") == "multiple", options)


@dataclass(frozen=True)
class Webhook:
    """What prelabel needs from a webhook body; the rest (tokens included) is dropped at once."""

    action: str
    project_id: int | None
    task_id: int | None = None
    annotation_id: int | None = None
    updated_at: str = ""
    skipped: bool = False  # was_cancelled or an empty result: not a label
    annotation_ids: tuple[int, ...] = ()  # ANNOTATIONS_DELETED
    task_ids: tuple[int, ...] = ()  # TASKS_CREATED
    label_config: str = ""  # PROJECT_UPDATED


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise FormatError(f"{what} must be an integer, got {v!r}")
    return v


def _obj(v: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise FormatError(f"{what} must be an object, got {type(v).__name__}")
    return v


def parse_project_ref(v: Any) -> int:
    """A project id from a webhook's ``project`` object, or the ML backend's ``"<id>.<created_ts>"`` string."""
    if isinstance(v, Mapping):
        return _int(v.get("id"), "project.id")
    if isinstance(v, bool):
        raise FormatError(f"project must be an id, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.split(".")[0].isdigit():
        return int(v.split(".")[0])
    raise FormatError(f"project must be an object with an id or \"<id>.<timestamp>\", got {str(v)[:50]!r}")


def parse_webhook(body: bytes | str | Mapping[str, Any]) -> Webhook:
    """A Label Studio webhook body. Unknown actions parse (the caller ignores them); known ones are checked."""
    if isinstance(body, (bytes, str)):
        data = loads(body, "webhook body")
    else:
        data = body
    data = _obj(data, "webhook body")
    action = data.get("action")
    if not isinstance(action, str) or not action:
        raise FormatError("webhook body has no action")
    if action not in ACTIONS:
        return Webhook(action, None)
    if "project" not in data:
        raise FormatError(f"{action} webhook has no project")
    project_id = parse_project_ref(data["project"])
    if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        ann = _obj(data.get("annotation"), "annotation")
        task = data.get("task")
        task_id = _int(task.get("id") if isinstance(task, Mapping) else ann.get("task"), "task id")
        result = ann.get("result")
        if result is not None and not isinstance(result, list):
            raise FormatError("annotation.result must be a list")
        return Webhook(action, project_id, task_id=task_id, annotation_id=_int(ann.get("id"), "annotation.id"),
                       updated_at=str(ann.get("updated_at") or ""),
                       skipped=bool(ann.get("was_cancelled")) or not result)
    if action == "ANNOTATIONS_DELETED":
        anns = data.get("annotations")
        if not isinstance(anns, list):
            raise FormatError("ANNOTATIONS_DELETED needs a list of annotations")
        return Webhook(action, project_id, annotation_ids=tuple(
            _int(_obj(a, "annotation").get("id"), "annotation id") for a in anns))
    if action == "TASKS_CREATED":
        tasks = data.get("tasks")
        if not isinstance(tasks, list):
            raise FormatError("TASKS_CREATED needs a list of tasks")
        return Webhook(action, project_id, task_ids=tuple(_int(_obj(t, "task").get("id"), "task id") for t in tasks))
    config = data["project"].get("label_config", "") if isinstance(data["project"], Mapping) else ""
    return Webhook(action, project_id, label_config=config if isinstance(config, str) else "")


@dataclass(frozen=True)
class TaskLabel:
    """A task's ground truth under a config: ``value`` is a choice (single), a sorted list (multilabel) or None."""

    task_id: int
    text: str
    value: Any
    annotation_id: int | None
    who: str
    invalid: str = ""  # why the annotation's choice cannot be used (not in the config), else ""


def _who(ann: Mapping[str, Any]) -> str:
    by = ann.get("completed_by")
    if isinstance(by, Mapping):
        by = by.get("email") or by.get("id")
    return f"labelstudio:{by}" if by is not None else "labelstudio"


def annotation_choices(ann: Mapping[str, Any], config: LabelConfig) -> list[str] | None:
    """The choices an annotation sets on the config's control; None when it is skipped or does not set it."""
    if ann.get("was_cancelled"):
        return None
    for r in ann.get("result") or []:
        if not isinstance(r, Mapping) or r.get("from_name") != config.from_name:
            continue
        value = r.get("value")
        choices = value.get("choices") if isinstance(value, Mapping) else None
        if isinstance(choices, list) and all(isinstance(c, str) for c in choices):
            return choices
    return None


def task_text(task: Mapping[str, Any], config: LabelConfig) -> str:
    data = task.get("data")
    if not isinstance(data, Mapping) or config.text_key not in data:
        raise FormatError(f"task {task.get('id')} has no data.{config.text_key} (the config's <Text> shows "
                          f"${config.text_key})")
    text = data[config.text_key]
    if not isinstance(text, str):
        raise FormatError(f"task {task.get('id')}: data.{config.text_key} is not a string")
    return text


def task_label(task: Mapping[str, Any], config: LabelConfig) -> TaskLabel:
    """The task's ground truth: its ``ground_truth`` annotation if one has a choice, else the most recently updated
    annotation that is not skipped and sets a choice. Skipped annotations are never labels."""
    tid = _int(task.get("id"), "task.id")
    text = task_text(task, config)
    anns = [a for a in task.get("annotations") or [] if isinstance(a, Mapping)]
    usable = [(a, c) for a in anns if (c := annotation_choices(a, config)) is not None and (c or config.multiple)]
    if not usable:
        return TaskLabel(tid, text, None, None, "")
    usable.sort(key=lambda ac: (bool(ac[0].get("ground_truth")), str(ac[0].get("updated_at") or ""),
                                ac[0].get("id") or 0))
    ann, choices = usable[-1]
    unknown = [c for c in choices if c not in config.choices]
    aid = ann.get("id") if isinstance(ann.get("id"), int) else None
    if unknown:
        return TaskLabel(tid, text, None, aid, _who(ann),
                         invalid=f"annotation {aid} of task {tid} sets {unknown}, not in the label config's "
                                 f"<Choices name=\"{config.from_name}\"> {list(config.choices)}")
    if config.multiple:
        value: Any = sorted(set(choices))
    elif len(choices) != 1:
        return TaskLabel(tid, text, None, aid, _who(ann),
                         invalid=f"annotation {aid} of task {tid} sets {len(choices)} choices on a single-choice "
                                 "control")
    else:
        value = choices[0]
    return TaskLabel(tid, text, value, aid, _who(ann))


def prediction_result(config: LabelConfig, value: Any) -> list[dict[str, Any]]:
    """A prediction's ``result`` that sets ``value`` (a choice, or a list of choices) on the config's control."""
    choices = list(value) if isinstance(value, (list, tuple)) else [value]
    if not choices:
        return []
    return [{"from_name": config.from_name, "to_name": config.to_name, "type": "choices",
             "value": {"choices": choices}}]


def build_prediction(config: LabelConfig, value: Any, score: float, model_version: str,
                     task_id: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"result": prediction_result(config, value), "score": round(float(score), 6),
                           "model_version": model_version}
    if task_id is not None:
        out["task"] = task_id
    return out


def parse_predict_request(body: Any) -> tuple[int, list[Mapping[str, Any]], str]:
    """An ML-backend ``/predict`` body: (project id, tasks, label config)."""
    data = _obj(body, "predict body")
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, Mapping) for t in tasks):
        raise FormatError("predict body needs tasks: a list of task objects")
    if "project" not in data:
        raise FormatError("predict body has no project")
    config = data.get("label_config") or ""
    return parse_project_ref(data["project"]), tasks, config if isinstance(config, str) else ""


# the model_version of the suggestions prelabel keeps on every pool task (one per task, rewritten where it changed),
# which the project selects: not a champion's name, so an unchanged task keeps its prediction from round to round
QUEUE_VERSION = "prelabel-queue"
# the Data Manager tabs prelabel creates (once; a user may edit them): title -> ordering. Both list the tasks
# without annotations; "next to label" is Label Studio's uncertainty order (lowest score first: the active-learning
# order of a calibrated model), "surest first" the review order
QUEUE_VIEWS = {"prelabel: next to label": ["tasks:predictions_score"],
               "prelabel: surest first": ["-tasks:predictions_score"]}
# the project's labeling stream ("Label All Tasks") per PRELABEL_MODE
QUEUE_SAMPLING = {"learn": "Uncertainty sampling", "mixed": "Uncertainty sampling", "review": "Sequential sampling"}
# the prediction cluster of random documents drawn for the estimate: Label Studio's uncertainty stream serves the
# cluster this annotator labelled least first, so they are served early (the bulk import leaves cluster empty)
AUDIT_CLUSTER = 1


def queue_view(title: str) -> dict[str, Any]:
    """The ``data`` of a prelabel Data Manager tab: its title, ordering, and the filter "no annotations yet"."""
    return {"title": title, "ordering": QUEUE_VIEWS[title],
            "filters": {"conjunction": "and", "items": [{"filter": "filter:tasks:total_annotations",
                                                         "operator": "equal", "type": "Number", "value": 0}]}}


def model_version_name(version: int | None) -> str:
    """The ``model_version`` Label Studio shows for a prelabel model version."""
    return f"prelabel-v{version}" if version else "prelabel-v0"


__all__: Sequence[str] = ("ACTIONS", "FormatError", "LabelConfig", "TaskLabel", "Webhook", "annotation_choices",
                          "build_prediction", "model_version_name", "parse_label_config", "parse_predict_request",
                          "AUDIT_CLUSTER", "QUEUE_SAMPLING", "QUEUE_VERSION", "QUEUE_VIEWS", "queue_view",
                          "parse_project_ref", "parse_webhook", "prediction_result", "task_label", "task_text")
