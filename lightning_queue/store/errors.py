"""The errors a store call raises for a missing record; a script's error reply becomes one of them here."""

from __future__ import annotations

from redis.exceptions import ResponseError

from . import schema


class NotFound(ValueError):
    """A record the call names does not exist (a ValueError, as the v0.3 contract says)."""


class RolloutNotFound(NotFound):
    """No rollout with this id in the namespace."""


class AttemptNotFound(NotFound):
    """The rollout exists, but not this attempt (or it has no attempts yet, for "latest")."""


class NotSupported(NotImplementedError):
    """A store without the runtime features of issue 17 (policy versions, claims pause, staleness)."""

    def __init__(self, store: object, feature: str) -> None:
        super().__init__(
            f"{type(store).__name__} does not support {feature}; use RedisLightningStore (or "
            "InMemoryLightningStore) on the namespace's Redis"
        )


class PauseHeld(RuntimeError):
    """Claims are already paused by another holder (issue 17): one weight sync at a time."""


def from_reply(exc: ResponseError) -> Exception:
    """The exception a script's error reply stands for; the reply itself if it carries no code of ours."""
    code, _, rest = str(exc).partition(" ")
    args = rest.split("\n")[0].split()
    if code == schema.ERR_NO_ROLLOUT and len(args) == 1:
        return RolloutNotFound(f"Rollout {args[0]} not found")
    if code == schema.ERR_NO_ATTEMPT and len(args) == 2:
        return AttemptNotFound(f"Attempt {args[1]} not found in rollout {args[0]}")
    if code == schema.ERR_NO_ATTEMPTS and len(args) == 1:
        return AttemptNotFound(f"No attempts found for rollout {args[0]}")
    if code == schema.ERR_BAD_PLACEHOLDER and len(args) == 1:
        return ValueError(f"span {args[0]} has no sequence id and was not packed for the finish script to number")
    return exc
