"""The layout the README describes, held: no import circles, dependencies one way, no platform branches outside
the registry, loop modules of one responsibility each (devtools/architecture.py measures)."""
from __future__ import annotations

from devtools import architecture

from .conftest import ROOT


def test_no_import_circles_layering_holds_and_no_platform_branches():
    m = architecture.measure(ROOT)
    assert m["cycles"] == []
    assert m["layering"] == []
    assert m["platform_branches"] == []
    assert m["unresolved"] == []  # e.g. a lazy import of a module that moved


def test_the_checker_finds_what_it_looks_for(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "__init__.py").write_text("")
    (tmp_path / "model" / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "model" / "b.py").write_text("from model import a\nimport storage\n")
    (tmp_path / "storage.py").write_text("")
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "__init__.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                                     "    import web\n")
    (tmp_path / "web.py").write_text("def g(p):\n    return p.platform == 'tagtog'\n\n\n"
                                     "def h():\n    from observability_gone import setup\n")
    m = architecture.measure(tmp_path)
    assert m["cycles"] == [["model.a", "model.b"]]
    assert m["layering"] == ["model.b -> storage (model/ imports nothing of the service)"]
    assert len(m["platform_branches"]) == 1 and m["platform_branches"][0].startswith("web.py:2")
    assert m["unresolved"] == ["web.py:6: import observability_gone"]


def test_loop_modules_stay_small_and_the_event_path_is_six_files():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "worker" / "loop").glob("*.py")}
    assert max(sizes.values()) <= 400, sizes
    readme = (ROOT / "docs" / "design.md").read_text()
    path = readme.split("<!-- event-path -->")[1].split("<!-- /event-path -->")[0]
    files = [line.split("`")[1] for line in path.strip().splitlines() if line[:1].isdigit()]
    assert len(files) <= 6 and all((ROOT / f).is_file() for f in files), files
