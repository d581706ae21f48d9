"""Dataset imports through the service: QUEUED -> RUNNING -> DONE | FAILED | CANCELLED, taken fairly."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from .database import Database
from .records import Import
from .states import FAILED, PENDING_IMPORTS, QUEUED, RUNNING

FAIR_SHARE_SECONDS = 3600  # the queue of imports favours the user who started the fewest in this long


class ImportQueue(Database):
    """The imports table: the queue the import worker takes from, and each import's progress."""

    def add_import(self, user: str, name: str, request: dict) -> Import:
        with self.tx() as db:
            cur = db.execute(
                "INSERT INTO imports(user, name, request, state, created) VALUES (?, ?, ?, ?, ?)", (user, name, json.dumps(request), QUEUED, time.time())
            )
            import_id = cur.lastrowid
        return self.get_import(import_id)

    def add_import_capped(self, user: str, name: str, request: dict, cap: int) -> Import | None:
        """Queue an import unless ``user`` already has ``cap`` QUEUED or RUNNING: the count and the
        insert are one transaction, so parallel requests never get past the cap. None at the cap."""
        with self.tx() as db:
            pending = db.execute("SELECT COUNT(*) AS n FROM imports WHERE user = ? AND state IN (?, ?)", (user, *PENDING_IMPORTS)).fetchone()["n"]
            if pending >= cap:
                return None
            cur = db.execute(
                "INSERT INTO imports(user, name, request, state, created) VALUES (?, ?, ?, ?, ?)", (user, name, json.dumps(request), QUEUED, time.time())
            )
            import_id = cur.lastrowid
        return self.get_import(import_id)

    def claim_import(self, window: float = FAIR_SHARE_SECONDS) -> Import | None:
        """Take the next QUEUED import and make it RUNNING, fairly: the oldest of the user who
        started the fewest imports in the last ``window`` seconds (a RUNNING one counts), so one
        user's long queue does not hold up another's import. None when none is queued."""
        now = time.time()
        with self.tx() as db:
            row = db.execute(
                """SELECT i.id FROM imports i WHERE i.state = ?
                   ORDER BY (SELECT COUNT(*) FROM imports j WHERE j.user = i.user AND j.started IS NOT NULL AND j.started >= ?), i.id
                   LIMIT 1""",
                (QUEUED, now - window),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE imports SET state = ?, started = ? WHERE id = ? AND state = ?", (RUNNING, now, row["id"], QUEUED))
        return self.get_import(row["id"])

    def get_import(self, import_id: int) -> Import | None:
        row = self.db.execute("SELECT * FROM imports WHERE id = ?", (import_id,)).fetchone()
        return Import.from_row(row) if row else None

    def imports(self, user: str | None = None, states: Iterable[str] | None = None, limit: int = 100) -> list[Import]:
        """The newest first."""
        sql, args = self._select("imports", user, states)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [Import.from_row(r) for r in self.db.execute(sql, args)]

    def move_import(self, import_id: int, from_states: Iterable[str], to_state: str, **fields: Any) -> bool:
        """Move an import from one of ``from_states`` to ``to_state`` (and set ``fields``); False if it was in none."""
        from_states = list(from_states)
        sets = {"state": to_state, **fields}
        with self.tx() as db:
            cur = db.execute(
                f"UPDATE imports SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ? AND state IN ({','.join('?' * len(from_states))})",
                [*sets.values(), import_id, *from_states],
            )
            return cur.rowcount == 1

    def import_progress(self, import_id: int, done: int, total: int, unit: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE imports SET done = ?, total = ?, unit = ? WHERE id = ? AND state = ?", (done, total, unit, import_id, RUNNING))

    def recover_imports(self, message: str = "the server restarted during the import; nothing of it was kept, import again") -> list[int]:
        """After a restart no import of ours is alive: those left QUEUED or RUNNING failed."""
        with self.tx() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM imports WHERE state IN (?, ?)", (QUEUED, RUNNING))]
            db.execute("UPDATE imports SET state = ?, message = ?, finished = ? WHERE state IN (?, ?)", (FAILED, message, time.time(), QUEUED, RUNNING))
        return ids
