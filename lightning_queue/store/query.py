"""Argument checks, sorting and paging shared by the store's query methods."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from ..types import PaginatedResult

M = TypeVar("M", bound=BaseModel)


def check_paging(limit: int, offset: int) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or (limit < 0 and limit != -1):
        raise ValueError(f"limit must be -1 (all) or a non-negative integer, got {limit!r}")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, got {offset!r}")


def check_choice(name: str, value: object, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def check_statuses(name: str, values: Sequence[str] | None, allowed: Sequence[str]) -> None:
    if values is None:
        return
    if isinstance(values, str):
        raise TypeError(f"{name} must be a list of statuses, not the string {values!r}")
    for value in values:
        check_choice(f"status in {name}", value, allowed)


def check_sort(sort_by: str | None, sort_order: str, model: type[BaseModel]) -> None:
    if sort_by is not None and sort_by not in model.model_fields:
        raise ValueError(f"cannot sort {model.__name__} by {sort_by!r}: choose one of {', '.join(model.model_fields)}")
    check_choice("sort_order", sort_order, ("asc", "desc"))


def _sort_key(value: Any) -> tuple[int, Any]:
    # None sorts first ascending (and so last descending); mixed types compare by their text.
    if value is None:
        return (0, "")
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value))


def sort_and_page(
    items: list[M], *, sort_by: str | None, sort_order: str, limit: int, offset: int
) -> PaginatedResult[M]:
    if sort_by is not None:
        items = sorted(items, key=lambda m: _sort_key(getattr(m, sort_by, None)), reverse=sort_order == "desc")
    elif sort_order == "desc":
        items = list(reversed(items))
    total = len(items)
    page = items[offset:] if limit == -1 else items[offset : offset + limit]
    return PaginatedResult(items=page, limit=limit, offset=offset, total=total)


def text_matches(value: str | None, exact: str | None, contains: str | None) -> list[bool]:
    """One verdict per given filter (exact, contains), for and/or combination by the caller."""
    verdicts = []
    if exact is not None:
        verdicts.append(value == exact)
    if contains is not None:
        verdicts.append(value is not None and contains in value)
    return verdicts


def combine(verdicts: list[bool], logic: str) -> bool:
    if not verdicts:
        return True
    return all(verdicts) if logic == "and" else any(verdicts)


Predicate = Callable[[Any], bool]
