"""Label Studio formats on payloads recorded from a real Label Studio 1.23.2 (tests/samples/labelstudio)."""
from __future__ import annotations

import json

import pytest

from formats.labelstudio import (FormatError, build_prediction, model_version_name, parse_label_config,
                                 parse_predict_request, parse_webhook, task_label)

from ..conftest import ROOT

SAMPLES = ROOT / "tests" / "samples" / "labelstudio"
SPAM = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="single">'
        '<Choice value="spam"/><Choice value="ham"/></Choices></View>')
EMOTIONS = ('<View><Header value="Emotions"/><Text name="msg" value="$body"/><Choices name="emo" toName="msg" '
            'choice="multiple"><Choice value="joy"/><Choice value="anger"/><Choice value="fear"/></Choices></View>')


def sample(name: str) -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


def test_recorded_webhooks_parse() -> None:
    created = parse_webhook(sample("annotation_created"))
    assert (created.action, created.project_id, created.task_id, created.skipped) == ("ANNOTATION_CREATED", 2, 3,
                                                                                       False)
    assert created.annotation_id and created.updated_at
    updated = parse_webhook(sample("annotation_updated"))
    assert updated.action == "ANNOTATION_UPDATED" and updated.annotation_id == created.annotation_id
    assert updated.updated_at != created.updated_at  # the dedup key changes with each update
    assert parse_webhook(sample("annotation_cancelled")).skipped
    deleted = parse_webhook(sample("annotations_deleted"))
    assert deleted.annotation_ids == (created.annotation_id,)
    assert parse_webhook(sample("tasks_created")).task_ids == (3, 4)


def test_recorded_samples_hold_no_secrets() -> None:
    for path in SAMPLES.glob("*.json"):
        project = json.loads(path.read_text())["project"]
        assert project["token"] in ("REDACTED", "", None), path.name


@pytest.mark.parametrize("body, message", [
    (b"not json", "not valid JSON"),
    (b"[]", "must be an object"),
    (b'{"project": {"id": 1}}', "no action"),
    (b'{"action": "ANNOTATION_CREATED"}', "no project"),
    (b'{"action": "ANNOTATION_CREATED", "project": {"id": "x"}}', "project.id must be an integer"),
    (b'{"action": "ANNOTATION_CREATED", "project": {"id": 1}, "annotation": 3}', "annotation must be an object"),
    (b'{"action": "ANNOTATION_CREATED", "project": {"id": 1}, "annotation": {"id": 1, "result": {}}, '
     b'"task": {"id": 2}}', "result must be a list"),
    (b'{"action": "ANNOTATIONS_DELETED", "project": {"id": 1}, "annotations": {"id": 2}}', "list of annotations"),
    (b'{"action": "TASKS_CREATED", "project": {"id": 1}, "tasks": [{"id": true}]}', "task id must be an integer"),
])
def test_bad_webhooks_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_webhook(body)


def test_unknown_action_parses_without_project() -> None:
    hook = parse_webhook(b'{"action": "LABEL_LINK_CREATED", "project": {"id": 1}}')
    assert hook.action == "LABEL_LINK_CREATED" and hook.project_id is None


def test_label_config_single_and_multiple() -> None:
    c = parse_label_config(SPAM)
    assert (c.from_name, c.to_name, c.text_key, c.multiple, c.choices) == ("label", "text", "text", False,
                                                                           ("spam", "ham"))
    m = parse_label_config(EMOTIONS)
    assert (m.kind, m.text_key, m.choices) == ("multilabel", "body", ("joy", "anger", "fear"))


def test_label_config_picks_the_named_control() -> None:
    xml = ('<View><Text name="t" value="$text"/><Choices name="topic" toName="t"><Choice value="a"/>'
           '<Choice value="b"/></Choices><Choices name="tone" toName="t"><Choice value="x"/><Choice value="y"/>'
           '</Choices></View>')
    assert parse_label_config(xml).from_name == "topic"
    assert parse_label_config(xml, "tone").choices == ("x", "y")
    with pytest.raises(FormatError, match=r"no <Choices name=\"mood\">.*'topic', 'tone'"):
        parse_label_config(xml, "mood")


@pytest.mark.parametrize("xml, message", [
    ("", "no label config"),
    ("<View><Text", "not valid XML"),
    ('<View><Text name="t" value="$text"/><Labels name="l" toName="t"><Label value="a"/></Labels></View>',
     "no <Choices>"),
    ('<View><Choices name="c" toName="img"><Choice value="a"/><Choice value="b"/></Choices></View>',
     "not a <Text>"),
    ('<View><Text name="t" value="fixed"/><Choices name="c" toName="t"><Choice value="a"/><Choice value="b"/>'
     '</Choices></View>', "must show task data"),
    ('<View><Text name="t" value="$x"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>',
     "at least two"),
    ('<View><Text name="t" value="$x"/><Choices name="c" toName="t"><Choice value="a"/><Choice value="a"/>'
     '</Choices></View>', "repeats"),
    ('<!DOCTYPE v [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><View>&b;</View>', "DTDs and entities are not allowed"),
])
def test_bad_label_configs(xml: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_label_config(xml)


def _ann(i: int, choices: list[str] | None, updated: str, gt: bool = False, cancelled: bool = False,
         from_name: str = "label") -> dict:
    result = [] if choices is None else [{"from_name": from_name, "to_name": "text", "type": "choices",
                                          "value": {"choices": choices}}]
    return {"id": i, "result": result, "was_cancelled": cancelled, "ground_truth": gt, "updated_at": updated,
            "completed_by": {"id": 3, "email": "ann@example.com"}}


def test_task_label_rules() -> None:
    cfg = parse_label_config(SPAM)
    task = {"id": 7, "data": {"text": "hi"}, "annotations": []}
    assert task_label(task, cfg).value is None
    task["annotations"] = [_ann(1, ["spam"], "2026-01-01T00:00:00Z"), _ann(2, ["ham"], "2026-01-02T00:00:00Z")]
    tl = task_label(task, cfg)
    assert (tl.value, tl.annotation_id, tl.who) == ("ham", 2, "labelstudio:ann@example.com")  # latest wins
    task["annotations"][0]["ground_truth"] = True
    assert task_label(task, cfg).value == "spam"  # ...unless another is marked ground truth
    task["annotations"] = [_ann(3, None, "2026-01-03T00:00:00Z", cancelled=True)]
    assert task_label(task, cfg).value is None  # a skipped task is not a label
    task["annotations"] = [_ann(4, ["spam"], "2026-01-01T00:00:00Z"), _ann(5, ["ham"], "2026-01-05T00:00:00Z",
                                                                           cancelled=True)]
    assert task_label(task, cfg).value == "spam"
    task["annotations"] = [_ann(6, ["spam"], "2026-01-01T00:00:00Z", from_name="other")]
    assert task_label(task, cfg).value is None  # another control's choice


def test_task_label_flags_choices_outside_the_config() -> None:
    cfg = parse_label_config(SPAM)
    tl = task_label({"id": 7, "data": {"text": "hi"}, "annotations": [_ann(1, ["maybe"], "x")]}, cfg)
    assert tl.value is None and "['maybe'], not in the label config" in tl.invalid
    tl = task_label({"id": 7, "data": {"text": "hi"}, "annotations": [_ann(1, ["spam", "ham"], "x")]}, cfg)
    assert "2 choices on a single-choice control" in tl.invalid
    with pytest.raises(FormatError, match="no data.text"):
        task_label({"id": 7, "data": {"body": "hi"}, "annotations": []}, cfg)


def test_task_label_multilabel() -> None:
    cfg = parse_label_config(EMOTIONS)
    ann = {"id": 1, "result": [{"from_name": "emo", "to_name": "msg", "type": "choices",
                                "value": {"choices": ["fear", "joy"]}}], "updated_at": "x", "completed_by": 1}
    tl = task_label({"id": 3, "data": {"body": "eek"}, "annotations": [ann]}, cfg)
    assert tl.value == ["fear", "joy"] and tl.who == "labelstudio:1"


def test_predictions_and_predict_requests() -> None:
    cfg = parse_label_config(SPAM)
    p = build_prediction(cfg, "spam", 0.91234567, model_version_name(3), task_id=5)
    assert p == {"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                             "value": {"choices": ["spam"]}}], "score": 0.912346, "model_version": "prelabel-v3",
                 "task": 5}
    assert build_prediction(parse_label_config(EMOTIONS), [], 0.8, "v")["result"] == []
    pid, tasks, config = parse_predict_request({"tasks": [{"id": 1, "data": {"text": "a"}}],
                                                "project": "4.1700000000", "label_config": SPAM})
    assert (pid, len(tasks), config) == (4, 1, SPAM)
    with pytest.raises(FormatError, match="tasks"):
        parse_predict_request({"project": "4.1"})
    with pytest.raises(FormatError, match="project must be"):
        parse_predict_request({"tasks": [], "project": "abc"})
    assert model_version_name(None) == "prelabel-v0"
