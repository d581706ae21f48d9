"""Users and their API tokens."""

from __future__ import annotations

import hashlib
import secrets
import time

from .database import Database
from .records import User


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


class UserTable(Database):
    """Users, and the hashes of the tokens that stand for them."""

    def add_user(self, name: str, admin: bool = False) -> str:
        """Create a user (or keep an existing one) and return a new token for them."""
        with self.tx() as db:
            db.execute("INSERT OR IGNORE INTO users(name, admin, created) VALUES (?, ?, ?)", (name, int(admin), time.time()))
            if admin:
                db.execute("UPDATE users SET admin = 1 WHERE name = ?", (name,))
        return self.issue_token(name)

    def issue_token(self, user: str, label: str = "") -> str:
        token = "xs_" + secrets.token_urlsafe(32)
        with self.tx() as db:
            db.execute("INSERT INTO tokens(hash, user, label, created) VALUES (?, ?, ?, ?)", (hash_token(token), user, label, time.time()))
        return token

    def user_for_token(self, token: str) -> User | None:
        row = self.db.execute("SELECT u.name, u.admin FROM tokens t JOIN users u ON u.name = t.user WHERE t.hash = ?", (hash_token(token),)).fetchone()
        return User(row["name"], bool(row["admin"])) if row else None

    def users(self) -> list[User]:
        return [User(r["name"], bool(r["admin"])) for r in self.db.execute("SELECT name, admin FROM users ORDER BY name")]
