"""Job history in SQLite (standard library): owner, time, kind, parameters, status, outputs.

One row per job, written when it is queued and updated as it runs; each output path is recorded just
before its file is written (the file itself appears atomically, by rename), so after a crash
``recover()`` makes the history agree with the disk: jobs left queued/running become "interrupted",
recorded paths whose file never appeared are dropped, and half-written temp files are deleted.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    status TEXT NOT NULL,
    params TEXT NOT NULL,      -- JSON object of the request's parameters
    paths TEXT NOT NULL,       -- JSON list of output paths
    infotexts TEXT NOT NULL,   -- JSON list, one per path
    error TEXT,
    notes TEXT NOT NULL DEFAULT '[]'  -- JSON list of events, e.g. "batch 2 retried on node X" (the farm)
);
CREATE INDEX IF NOT EXISTS jobs_owner_created ON jobs (owner, created);
"""
UNFINISHED = ("queued", "running")
COLUMNS = "id, owner, kind, created, started, finished, status, params, paths, infotexts, error, notes"


@dataclass(frozen=True)
class HistoryEntry:
    id: str
    owner: str
    kind: str
    created: float  # unix time
    started: Optional[float]
    finished: Optional[float]
    status: str
    params: dict[str, Any]
    paths: tuple[str, ...]
    infotexts: tuple[str, ...]
    error: Optional[str]
    notes: tuple[str, ...] = ()  # events while it ran (which farm worker made what, retries)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "owner": self.owner, "kind": self.kind, "created": self.created,
                "started": self.started, "finished": self.finished, "status": self.status, "params": self.params,
                "paths": list(self.paths), "infotexts": list(self.infotexts), "error": self.error, "notes": list(self.notes)}


class History:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: Optional[sqlite3.Connection] = None  # one connection, used under _lock, kept open
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            db = self._db()
            db.executescript(SCHEMA)
            columns = [row[1] for row in db.execute("PRAGMA table_info(jobs)")]
            if "notes" not in columns:  # a history written before the farm existed
                db.execute("ALTER TABLE jobs ADD COLUMN notes TEXT NOT NULL DEFAULT '[]'")

    def _db(self) -> sqlite3.Connection:
        """The open connection (call under ``_lock``). Kept open: closing the last connection to a WAL database
        checkpoints and fsyncs it, which made every write cost 20-50 ms here."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connect(self) -> sqlite3.Connection:
        # autocommit: every write is committed at once; any thread may use it (always under _lock)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed write survives the server process dying (what recover() repairs after);
        # only an OS crash / power cut may lose the last few. FULL fsyncs every write: ~10 ms each here, three
        # of them on every job's way (queued, running, output), 4-5 % of a 20-step demo image.
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _exec(self, sql: str, args: Iterable[Any] = ()) -> None:
        with self._lock:
            self._db().execute(sql, tuple(args))

    # ---------------------------------------------------------------- writes
    def add(self, job) -> None:
        self._exec("INSERT OR REPLACE INTO jobs (id, owner, kind, created, started, finished, status, params, paths, "
                   "infotexts, error, notes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (job.id, job.owner, job.kind, job.created, job.started, job.finished, job.status.value,
                    json.dumps(job.params, default=str), json.dumps([str(p) for p in job.paths]),
                    json.dumps(list(job.infotexts)), job.error, json.dumps(list(getattr(job, "notes", ())))))

    def update(self, job) -> None:
        self._exec("UPDATE jobs SET started=?, finished=?, status=?, paths=?, infotexts=?, error=?, notes=? WHERE id=?",
                   (job.started, job.finished, job.status.value, json.dumps([str(p) for p in job.paths]),
                    json.dumps(list(job.infotexts)), job.error, json.dumps(list(getattr(job, "notes", ()))), job.id))

    def recover(self) -> list[str]:
        """After a restart: unfinished jobs -> interrupted, keep only outputs that exist. Returns their ids."""
        with self._lock:
            db = self._db()
            rows = db.execute(f"SELECT id, paths, infotexts FROM jobs WHERE status IN {UNFINISHED}").fetchall()
            for job_id, paths_json, infos_json in rows:
                paths, infos = json.loads(paths_json), json.loads(infos_json)
                for folder in {Path(p).parent for p in paths}:
                    _remove_temp_files(folder)
                kept = [(p, i) for p, i in zip(paths, infos + [""] * len(paths)) if Path(p).is_file()]
                db.execute("UPDATE jobs SET status='interrupted', finished=COALESCE(finished, ?), paths=?, "
                           "infotexts=?, error=COALESCE(error, 'the server stopped while it ran') WHERE id=?",
                           (time.time(), json.dumps([p for p, _ in kept]), json.dumps([i for _, i in kept]),
                            job_id))
        return [r[0] for r in rows]

    # ---------------------------------------------------------------- reads
    def list(self, owner: Optional[str] = None, *, kind: Optional[str] = None, since: Optional[float] = None,
             until: Optional[float] = None, limit: int = 100) -> list[HistoryEntry]:
        """Newest first. ``owner=None`` lists everyone's (admins)."""
        where, args = [], []
        for column, op, value in (("owner", "=", owner), ("kind", "=", kind), ("created", ">=", since),
                                  ("created", "<", until)):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created DESC LIMIT ?"
        with self._lock:
            db = self._db()
            rows = db.execute(sql.replace("SELECT *", f"SELECT {COLUMNS}"), (*args, int(limit))).fetchall()
        return [_entry(r) for r in rows]

    def owner_of(self, path: str) -> Optional[str]:
        """The owner of the job that wrote ``path`` (None if no job did)."""
        needle = json.dumps(str(path))
        with self._lock:
            db = self._db()
            rows = db.execute("SELECT owner, paths FROM jobs WHERE instr(paths, ?) > 0", (needle,)).fetchall()
        for owner, paths in rows:
            if str(path) in json.loads(paths):
                return owner
        return None

    def get(self, job_id: str) -> Optional[HistoryEntry]:
        with self._lock:
            db = self._db()
            row = db.execute(f"SELECT {COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _entry(row) if row else None


def _entry(row) -> HistoryEntry:
    (job_id, owner, kind, created, started, finished, status, params, paths, infotexts, error, notes) = row
    return HistoryEntry(job_id, owner, kind, created, started, finished, status, json.loads(params),
                        tuple(json.loads(paths)), tuple(json.loads(infotexts)), error, tuple(json.loads(notes or "[]")))


def _remove_temp_files(folder: Path) -> None:
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.is_file() and is_temp_name(p.name):
            p.unlink(missing_ok=True)


def is_temp_name(name: str) -> bool:
    """A file still being written: ``.<name>.part`` (PNGs, see save_png) or ``<stem>.partial.mp4`` (videos)."""
    return (name.startswith(".") and name.endswith(".part")) or name.endswith(".partial.mp4")
