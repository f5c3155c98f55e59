"""Who may use the model server's admin routes (`POST /v1/load`) and which checkpoints they may load.

An admin route needs `Authorization: Bearer <token>`; a load must name a directory inside the configured
checkpoint root once every `..` and symlink is resolved. A refused path gets one answer whatever lies
outside the root, so the server tells nothing about the rest of the file system.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import stat
from pathlib import Path

ADMIN_TOKEN_ENV = "LQ_MODEL_ADMIN_TOKEN"
# Below this a token could be guessed; token_urlsafe(32) gives 43 characters.
MIN_TOKEN_LENGTH = 16
_LOOPBACK_NAMES = ("localhost",)


class AdminConfigError(ValueError):
    """Settings under which the admin routes would be unsafe or unusable."""


class OutsideRootError(ValueError):
    """A load path that does not resolve inside the checkpoint root."""


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_token(token: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise AdminConfigError(f"the admin token must be at least {MIN_TOKEN_LENGTH} characters, got {len(token)}")
    return token


def read_or_create_token_file(path: Path) -> str:
    """The token in `path`; a missing file is created with a random token, readable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AdminConfigError(
                f"admin token file {str(path)!r} is readable by other users (mode {stat.S_IMODE(mode):o}); chmod 600 it"
            ) from None
        return check_token(path.read_text())
    with os.fdopen(fd, "w") as handle:
        token = secrets.token_urlsafe(32)
        handle.write(token + "\n")
    return token


def authorized(header: str | None, token: str) -> bool:
    """True if the Authorization header carries `token` (compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def resolve_inside(root: Path, requested: str) -> Path:
    """The real path of `requested` (relative paths are taken from `root`), if it and every entry of it
    stay inside `root`; OutsideRootError otherwise, with a message that says nothing about the target."""
    real_root = Path(os.path.realpath(root))
    candidate = Path(os.path.realpath(real_root / Path(requested).expanduser()))
    refusal = OutsideRootError(f"checkpoint path {requested!r} is not inside this server's checkpoint root")
    if not _within(candidate, real_root):
        raise refusal
    # A checkpoint inside the root whose files link outside it would read those files.
    if candidate.is_dir():
        for entry in candidate.iterdir():
            if entry.is_symlink() and not _within(Path(os.path.realpath(entry)), real_root):
                raise refusal
    return candidate


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
