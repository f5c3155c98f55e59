"""Settings models and the click options derived from their fields, so each knob is declared once."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
import click
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

F = TypeVar("F", bound=Callable[..., Any])


class Settings(BaseModel):
    """A role's settings: frozen, no unknown keys; each field carries its default, bounds and help."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


def setting(
    default: Any,
    *,
    help: str,
    option: str | None = None,
    param: str | None = None,
    short: str | None = None,
    envvar: str | tuple[str, ...] | None = None,
    metavar: str | None = None,
    required: bool = False,
    file: Literal["any", "existing"] | None = None,
    scale: int | None = None,
    **constraints: Any,
) -> Any:
    """A field with its help text (naming `envvar` if any) and its command-line option (`--kebab-name` by default).

    `file`: the option takes a file path ("existing": it must exist). `scale`: the option counts in units of
    `scale` field units (e.g. `--max-body-mb` for a field in bytes: scale=1 << 20) and is converted back.
    """
    cli: dict[str, Any] = {
        "option": option,
        "param": param,
        "short": short,
        "envvar": list(envvar) if isinstance(envvar, tuple) else envvar,
        "metavar": metavar,
        "required": required,
        "file": file,
        "scale": scale,
    }
    return Field(default, description=help, json_schema_extra={k: v for k, v in cli.items() if v}, **constraints)


def describe(exc: ValidationError) -> str:
    """A settings error as one line per problem, each naming the field and the bad value."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        if error["type"] == "value_error":
            # Our own checks already name the field and the value (redacted where it holds a secret).
            lines.append(str(error["ctx"]["error"]) if "ctx" in error else error["msg"])
        else:
            lines.append(f"{field}: {error['msg'].lower()}, got {error.get('input')!r}")
    return "; ".join(lines)


def _extra(info: FieldInfo) -> Mapping[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, Mapping) else {}


def option_name(model: type[BaseModel], field: str) -> str:
    """The command-line option of one field, e.g. `--redis-url` for `RedisSettings.url`."""
    return str(_extra(model.model_fields[field]).get("option") or "--" + field.replace("_", "-"))


def _scaled(bound: Any, scale: int) -> Any:
    return bound / scale if scale != 1 else bound


def _click_type(info: FieldInfo, scale: int = 1) -> tuple[Any, bool]:
    """(click type, multiple) for a field's annotation and bounds (bounds divided by `scale`)."""
    annotation = info.annotation
    if _extra(info).get("file"):
        return click.Path(dir_okay=False, exists=_extra(info)["file"] == "existing"), False
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is Literal:
        return click.Choice([str(a) for a in get_args(annotation)], case_sensitive=False), False
    if get_origin(annotation) is tuple:
        return click.STRING, True
    bounds: dict[str, Any] = {}
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            bounds["min"] = _scaled(meta.ge, scale)
        elif isinstance(meta, annotated_types.Gt):
            bounds.update(min=_scaled(meta.gt, scale), min_open=True)
        elif isinstance(meta, annotated_types.Le):
            bounds["max"] = _scaled(meta.le, scale)
    if annotation is bool:
        return click.BOOL, False
    if scale != 1:
        return click.FloatRange(**bounds) if bounds else click.FLOAT, False
    if annotation is int:
        return click.IntRange(**bounds) if bounds else click.INT, False
    if annotation is float:
        return click.FloatRange(**bounds) if bounds else click.FLOAT, False
    return click.STRING, False


class SettingOption(click.Option):
    """A click option derived from a settings field; `setting` names it, so a test can tell it from a copy."""

    def __init__(self, *args: Any, setting: tuple[type[BaseModel], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting = setting


def field_option(model: type[BaseModel], field: str, default: tuple[Any, str] | None = None) -> Callable[[F], F]:
    """The click option of one field; `default` = (value, what it means) replaces the field's for one command."""
    info = model.model_fields[field]
    extra = _extra(info)
    scale = int(extra.get("scale") or 1)
    click_type, multiple = _click_type(info, scale)
    value = info.default if default is None else default[0]
    if scale != 1 and isinstance(value, int | float):
        value = value / scale
    help_text = info.description or ""
    if default is not None:
        help_text += f" Default: {default[1]}."
    # A command that gives its own default makes a required field optional.
    required = bool(extra.get("required")) and default is None
    names = [n for n in (extra.get("short"), option_name(model, field), extra.get("param") or field) if n]
    kwargs: dict[str, Any] = {"help": help_text, "envvar": extra.get("envvar"), "metavar": extra.get("metavar")}
    kwargs.update(cls=SettingOption, setting=(model, field))
    if scale != 1:
        kwargs["callback"] = lambda _ctx, _param, given: None if given is None else round(given * scale)
    if click_type is click.BOOL:
        return click.option(*names, is_flag=True, default=bool(value), **kwargs)
    return click.option(
        *names,
        type=click_type,
        multiple=multiple,
        required=required,
        default=None if required else tuple(value) if multiple else value,
        show_default=value not in (None, ()) and default is None,
        **kwargs,
    )


def options(
    model: type[BaseModel],
    *,
    exclude: Iterable[str] = (),
    defaults: Mapping[str, tuple[Any, str]] | None = None,
) -> Callable[[F], F]:
    """Decorate a click command with one option per field of `model` (in field order)."""
    skipped = set(exclude)
    fields = [name for name in model.model_fields if name not in skipped]
    decorators = [field_option(model, name, (defaults or {}).get(name)) for name in fields]

    def apply(command: F) -> F:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply
