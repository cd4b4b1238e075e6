"""Property-based tests (hypothesis) on every parser in formats/: whatever bytes or JSON arrive, a parser returns
a value or raises FormatError naming the problem; never another exception (which would be a 500 in the web
process or an "internal error" in the worker). Valid inputs round-trip."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formats import corpus, labelstudio, strictjson, tables, tagtog
from formats.tagtog import FormatError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=25)
# objects shaped like the real payloads, with any values: reaches the checks past "is it an object"
tagtog_hooks = st.fixed_dictionaries({}, optional={k: json_values for k in ("owner", "project", "tagtogID", "docid",
                                                                           "member")})
ls_hooks = st.fixed_dictionaries(
    {"action": st.sampled_from(labelstudio.ACTIONS) | st.text(max_size=12)},
    optional={"project": json_values | st.fixed_dictionaries({"id": json_values}, optional={
        "label_config": json_values}),
              "annotation": json_values | st.fixed_dictionaries({}, optional={
                  "id": json_values, "result": json_values, "task": json_values, "was_cancelled": json_values}),
              "task": json_values | st.fixed_dictionaries({}, optional={"id": json_values}),
              "annotations": json_values | st.lists(st.fixed_dictionaries({"id": json_values}), max_size=3),
              "tasks": json_values | st.lists(st.fixed_dictionaries({"id": json_values}), max_size=3)})
CONFIG = labelstudio.parse_label_config(
    '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
    '<Choice value="pos"/><Choice value="neg"/></Choices></View>')


def only_format_errors(fn, *args):
    try:
        return fn(*args)
    except FormatError as exc:
        assert str(exc), "a FormatError must say what is wrong"
        return None


@FUZZ
@given(st.binary(max_size=300) | tagtog_hooks.map(lambda d: json.dumps(d).encode()),
       st.dictionaries(st.sampled_from(["X-tagtog-onPushSave-source", "X-tagtog-onPushSave-status", "Other"]),
                       st.text(max_size=10)))
def test_tagtog_webhook(body, headers):
    hook = only_format_errors(tagtog.parse_webhook, headers, body)
    if hook is not None:
        assert hook.owner and hook.project and hook.docid and hook.source in ("", "GUI", "API")


@FUZZ
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())
       | st.fixed_dictionaries({}, optional={"metas": json_values | st.dictionaries(
           st.text(max_size=5), st.fixed_dictionaries({"value": json_values}, optional={"confidence": json_values}),
           max_size=3), "anncomplete": json_values, "annotatable": json_values}).map(json.dumps))
def test_annjson(data):
    doc = only_format_errors(tagtog.parse_annjson, data)
    if doc is not None:  # what parses, builds and parses back to the same labels
        again = tagtog.parse_annjson(tagtog.dump_annjson(doc))
        assert again.metas.keys() == doc.metas.keys() and again.anncomplete == doc.anncomplete


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_plain_html(data):
    only_format_errors(tagtog.parse_plain_html, data)


@FUZZ
@given(st.text(max_size=200), st.text(max_size=40).filter(lambda s: s.strip() != ""))
def test_plain_html_round_trips_any_text(text, docid):
    parsed = tagtog.parse_plain_html(tagtog.build_plain_html(docid, text))
    assert parsed.docid == docid and parsed.text == text


@FUZZ
@given(st.binary(max_size=300) | ls_hooks.map(lambda d: json.dumps(d).encode()))
def test_labelstudio_webhook(body):
    hook = only_format_errors(labelstudio.parse_webhook, body)
    if hook is not None and hook.project_id is not None:
        assert isinstance(hook.project_id, int)


@FUZZ
@given(st.text(max_size=300) | st.builds(
    lambda name, to, value, opts, multi: (
        f'<View><Text name="t" value="{value}"/><Choices name="{name}" toName="{to}"{multi}>'
        + "".join(f'<Choice value="{o}"/>' for o in opts) + "</Choices></View>"),
    st.sampled_from(["c", ""]), st.sampled_from(["t", "x", ""]), st.sampled_from(["$text", "text", "$"]),
    st.lists(st.sampled_from(["a", "b", "c", ""]), max_size=4), st.sampled_from(["", ' choice="multiple"'])))
def test_label_config(xml):
    cfg = only_format_errors(labelstudio.parse_label_config, xml)
    if cfg is not None:
        assert len(cfg.choices) >= 2 and len(set(cfg.choices)) == len(cfg.choices) and cfg.text_key


@FUZZ
@given(json_values | st.fixed_dictionaries({"id": json_values}, optional={
    "data": json_values | st.fixed_dictionaries({"text": json_values}),
    "annotations": json_values | st.lists(st.fixed_dictionaries({}, optional={
        "id": json_values, "was_cancelled": json_values, "ground_truth": json_values, "updated_at": json_values,
        "result": json_values | st.lists(st.fixed_dictionaries({"from_name": st.just("sentiment"), "value":
                                         st.fixed_dictionaries({"choices": json_values})}), max_size=2)}),
        max_size=3)}))
def test_task_label(task):
    if not isinstance(task, dict):
        return  # callers hand task_label objects only (the export and the API client check)
    label = only_format_errors(labelstudio.task_label, task, CONFIG)
    if label is not None and label.value is not None:
        assert label.value in CONFIG.choices and not label.invalid


@FUZZ
@given(json_values | st.fixed_dictionaries({}, optional={"tasks": json_values, "project": json_values,
                                                          "label_config": json_values}))
def test_predict_request(body):
    only_format_errors(labelstudio.parse_predict_request, body)


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(["c.csv", "c.txt", "c.json"]), st.text(max_size=8))
def test_corpus(data, name, column):
    texts = only_format_errors(corpus.parse_corpus, data, name, column)
    assert texts is None or all(t.strip() for t in texts)


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(["t.csv", "t.xlsx", "t.parquet", "t.tsv"]))
def test_tables(data, name):
    only_format_errors(tables.read_table, data, name)


@FUZZ
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters=";", blacklist_categories=("Cs",)),
                        min_size=1, max_size=12).map(str.strip).filter(bool), max_size=5))
def test_label_cell_round_trips(labels):
    assert tables.parse_label_cell(tables.label_cell(labels), True) == tuple(sorted(set(labels)))


@FUZZ
@given(st.binary(max_size=200) | json_values.map(json.dumps))
def test_strict_json(data):
    value = only_format_errors(strictjson.loads, data)
    if value is not None:
        assert json.loads(data) == value  # strictness never changes what a valid document means


@pytest.mark.parametrize("data,needle", [
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"), (b"\xff\xfe{}", "not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "deeper than 64"), (b'{"a":' * 70 + b"1" + b"}" * 70, "deeper than 64"),
    (b"", "not valid JSON"), (b"{", "not valid JSON"), (b"NaN", None), (b'"\\ud800"', None),
])
def test_strict_json_names_the_problem(data, needle):
    if needle is None:
        strictjson.loads(data)  # JSON that Python accepts stays accepted
        return
    with pytest.raises(FormatError, match=needle):
        strictjson.loads(data)
