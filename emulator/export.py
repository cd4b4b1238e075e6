"""Write a tagtog project export folder (the layout of tagtog's ZIP export) from texts, for fixtures and demos."""
from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any, Iterable

from formats.tagtog import AnnDoc, Confidence, MetaValue, build_plain_html, dump_annjson

ID_CHARS = string.ascii_letters + string.digits + "._"


def write_export(folder: Path, docs: Iterable[tuple[str, str, Any]], label_name: str, *, folder_name: str = "",
                 annotator: str = "annotator", seed: int = 0) -> list[str]:
    """Write ``annotations-legend.json``, ``plain.html/pool/<folder_name>/`` and, for docs whose label is not
    None, a confirmed ``ann.json/master/pool/<folder_name>/``. ``docs`` yields (filename, text, label).
    Returns the docids in order."""
    rng = random.Random(seed)
    folder = Path(folder)
    sub = Path("pool", folder_name) if folder_name else Path("pool")
    (folder / "plain.html" / sub).mkdir(parents=True, exist_ok=True)
    (folder / "annotations-legend.json").write_text(json.dumps({"m_1": label_name}, indent=2))
    ids = []
    for filename, text, label in docs:
        docid = "a" + "".join(rng.choice(ID_CHARS) for _ in range(27)) + "-" + filename
        (folder / "plain.html" / sub / f"{docid}.plain.html").write_text(build_plain_html(docid, text, filename),
                                                                         encoding="utf-8")
        if label is not None:
            ann = AnnDoc(metas={"m_1": MetaValue(label, Confidence("", (f"user:{annotator}",), 1))},
                         anncomplete=True, parts=("s1v1",))
            (folder / "ann.json" / "master" / sub).mkdir(parents=True, exist_ok=True)
            (folder / "ann.json" / "master" / sub / f"{docid}.ann.json").write_text(dump_annjson(ann),
                                                                                    encoding="utf-8")
        ids.append(docid)
    return ids
