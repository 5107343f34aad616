"""The server's access token: one file, made on the first start, readable by its owner only."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from ..client import ServerError, read_token_file
from ..errors import UserError


def ensure_token(path: str | os.PathLike[str]) -> tuple[str, bool]:
    """The token in `path`, made there first (mode 0600) if the file does not exist.
    Returns (token, made_now)."""
    target = Path(path).expanduser().absolute()
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            token = secrets.token_urlsafe(32)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(token + "\n")
            return token, True
        except FileExistsError:
            pass  # made meanwhile by another start: read that one
        except OSError as exc:
            raise UserError(
                "bad_output", f"Cannot write the token file {target} ({exc.strerror}); choose another --token-file."
            ) from None
    try:
        return read_token_file(target), False
    except ServerError as exc:
        raise UserError("bad_token_file", exc.message) from None


def loose_permissions(path: str | os.PathLike[str]) -> bool:
    """True when others than the owner may read the token file."""
    try:
        return bool(Path(path).stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False
