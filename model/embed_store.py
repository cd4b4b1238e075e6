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

Workers on several machines (DATABASE_URL on PostgreSQL) share no instance folder: there the vectors live in the
database itself (``SqlEmbeddingStore``: a table ``embeddings`` of the same rows, written with ``ON CONFLICT DO
NOTHING``), so a worker added on another machine embeds nothing another worker already did. ``open_store``
picks: EMBEDDING_CACHE ``off`` none, a path the file, a ``postgresql`` URL that database; empty: the database
when DATABASE_URL is PostgreSQL, else the file beside it.
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


def _decode(rows: Iterable[tuple[bytes, bytes]], dim: int) -> dict[str, np.ndarray]:
    """(key, vector bytes) rows as hex key -> float32 vector; a vector of another size is not this encoder's (it
    is left out, so the text is embedded again)."""
    out = {}
    for key, vec in rows:
        v = np.frombuffer(bytes(vec), dtype="<f4")
        if len(v) == dim:
            out[bytes(key).hex()] = v.astype("float32")
    return out


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
                    out.update(_decode(rows, dim))
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


class SqlEmbeddingStore(EmbeddingStore):
    """The same vectors in a table of a SQL database every worker reaches (PostgreSQL: SQLAlchemy + psycopg)."""

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        from sqlalchemy import Column, LargeBinary, MetaData, String, Table, create_engine  # noqa: PLC0415

        self.path = Path(url.split("@")[-1])  # for messages: host/database, never the password
        self.timeout_s = timeout_s
        self._broken = False
        self._lock = threading.Lock()
        meta = MetaData()
        self.table = Table("embeddings", meta, Column("space", String(200), primary_key=True),
                           Column("key", LargeBinary, primary_key=True), Column("vec", LargeBinary, nullable=False))
        try:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)
            meta.create_all(self.engine, checkfirst=True)
        except Exception as exc:  # any driver error: a cache that cannot open is not used
            self._fail("open", exc)

    def get(self, space: str, keys: Sequence[str], dim: int) -> dict[str, np.ndarray]:
        from sqlalchemy import select  # noqa: PLC0415

        if self._broken or not keys:
            return {}
        out: dict[str, np.ndarray] = {}
        t = self.table
        try:
            with self.engine.connect() as conn:
                for s in range(0, len(keys), CHUNK):
                    chunk = [bytes.fromhex(k) for k in keys[s:s + CHUNK]]
                    out.update(_decode(conn.execute(select(t.c.key, t.c.vec).where(t.c.space == space,
                                                                                   t.c.key.in_(chunk))), dim))
        except Exception as exc:  # any driver error: as the file store, go on without it
            self._fail("read", exc)
            return {}
        return out

    def put(self, space: str, vectors: Mapping[str, np.ndarray]) -> None:
        if self._broken or not vectors:
            return
        rows = [{"space": space, "key": bytes.fromhex(k), "vec": np.asarray(v, dtype="<f4").tobytes()}
                for k, v in vectors.items()]
        try:
            with self.engine.begin() as conn:
                if self.engine.dialect.name == "postgresql":
                    from sqlalchemy.dialects.postgresql import insert  # noqa: PLC0415

                    conn.execute(insert(self.table).on_conflict_do_nothing(), rows)
                else:  # SQLite (tests): the same "keep the first" rule
                    conn.execute(self.table.insert().prefix_with("OR IGNORE"), rows)
        except Exception as exc:  # any driver error: as the file store, go on without it
            self._fail("write", exc)

    def count(self, space: str | None = None) -> int:
        from sqlalchemy import func, select  # noqa: PLC0415

        if self._broken:
            return 0
        q = select(func.count()).select_from(self.table)
        if space is not None:
            q = q.where(self.table.c.space == space)
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(q).scalar() or 0)
        except Exception as exc:  # any driver error: as the file store, go on without it
            self._fail("read", exc)
            return 0


def open_store(target: str | Path | None) -> EmbeddingStore | None:
    """The embedding store ``target`` names: None (off), a ``postgresql`` URL (a table there) or a file path."""
    if target is None or str(target) == "":
        return None
    if str(target).startswith("postgresql"):
        return SqlEmbeddingStore(str(target))
    return EmbeddingStore(target)


__all__ = ["EmbeddingStore", "SqlEmbeddingStore", "open_store"]
