"""Sentence embeddings kept on disk, shared by every process of an instance (workers, the ML backend, the CLI).

The encoder is frozen and a text's vector does not depend on what it was embedded with (model/embed.py), so a
vector computed once is right forever: a worker restart, a deploy, a second worker or the ML backend read it
instead of paying MiniLM again (55 texts per CPU-second on the 2-core machine; a 55,000-text project is 8 to 30
minutes of embedding, inside the first round's lock, without this file).

One SQLite file (stdlib ``sqlite3``, WAL: one writer at a time, readers never blocked), a row per (space, sha256
of the text): ``space`` names the checkpoint and the token limit, so vectors of different encoders never mix.
Writes are ``INSERT OR IGNORE`` (two workers embedding the same text store the same vector). The file is a cache:
when it cannot be read or written (disk full, locked too long, corrupt) prelabel logs it once and embeds as if it
were empty; nothing else depends on it.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)
CHUNK = 500  # keys per SELECT (SQLite's default limit on bound parameters is 32,766; small chunks stay fast)


class EmbeddingStore:
    """Vectors by (space, text hash) in the SQLite file ``path``; float32, ``dim`` values each."""

    def __init__(self, path: Path | str, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._broken = False
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as db, db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS vectors (space TEXT NOT NULL, key BLOB NOT NULL, "
                           "vec BLOB NOT NULL, PRIMARY KEY (space, key)) WITHOUT ROWID")
        except (OSError, sqlite3.Error) as exc:
            self._fail("open", exc)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self.timeout_s)

    def _fail(self, what: str, exc: BaseException) -> None:
        with self._lock:
            first, self._broken = not self._broken, True
        if first:  # once per process: a full disk would otherwise log on every batch
            logger.warning("embedding cache %s: cannot %s (%s); embedding without it", self.path, what, exc)

    @property
    def usable(self) -> bool:
        return not self._broken

    def get(self, space: str, keys: Sequence[str], dim: int) -> dict[str, np.ndarray]:
        """The stored vectors of ``keys`` (hex sha256 of texts) in ``space``; missing ones are absent."""
        if self._broken or not keys:
            return {}
        out: dict[str, np.ndarray] = {}
        try:
            with closing(self._connect()) as db:
                for s in range(0, len(keys), CHUNK):
                    chunk = [bytes.fromhex(k) for k in keys[s:s + CHUNK]]
                    rows = db.execute(f"SELECT key, vec FROM vectors WHERE space = ? AND key IN "
                                      f"({','.join('?' * len(chunk))})", [space, *chunk])
                    for key, vec in rows:
                        v = np.frombuffer(vec, dtype="<f4")
                        if len(v) == dim:  # a vector of another shape is not this encoder's: embed again
                            out[key.hex()] = v.astype("float32")
        except (OSError, sqlite3.Error) as exc:
            self._fail("read", exc)
            return {}
        return out

    def put(self, space: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Store ``vectors`` (hex sha256 -> vector) in ``space``; ones already there are kept."""
        if self._broken or not vectors:
            return
        rows: Iterable[tuple[str, bytes, bytes]] = (
            (space, bytes.fromhex(k), np.asarray(v, dtype="<f4").tobytes()) for k, v in vectors.items())
        try:
            with closing(self._connect()) as db, db:
                db.executemany("INSERT OR IGNORE INTO vectors (space, key, vec) VALUES (?, ?, ?)", rows)
        except (OSError, sqlite3.Error) as exc:
            self._fail("write", exc)

    def count(self, space: str | None = None) -> int:
        """How many vectors are stored (in ``space``, or in all)."""
        if self._broken:
            return 0
        try:
            with closing(self._connect()) as db:
                if space is None:
                    return int(db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
                return int(db.execute("SELECT COUNT(*) FROM vectors WHERE space = ?", (space,)).fetchone()[0])
        except (OSError, sqlite3.Error) as exc:
            self._fail("read", exc)
            return 0


__all__ = ["EmbeddingStore"]
