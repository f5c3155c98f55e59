"""An LLM critiques a prompt template from its results and rewrites it; edits that break the template are refused."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .evaluator import RolloutResult

if TYPE_CHECKING:
    from openai import AsyncOpenAI

CRITIC_SYSTEM = (
    "You help improve a prompt template that is sent to an AI assistant. You are shown the template and a "
    "few tasks the assistant did with it: the conversation and the reward it earned, from 0 (bad) to 1 "
    "(perfect). Find what in the template leads to low rewards and say, in a few sentences, what to change. "
    "Do not write the new template."
)

EDITOR_SYSTEM = (
    "You rewrite a prompt template following the feedback you are given. Reply with the complete new "
    "template between <prompt> and </prompt> and nothing else."
)

_TAGGED = re.compile(r"<prompt>(.*?)(?:</prompt>|$)", re.DOTALL | re.IGNORECASE)
_FENCED = re.compile(r"```[a-zA-Z]*\n(.*?)```", re.DOTALL)


def placeholders(template: str) -> set[str]:
    """The `{name}` fields of an f-string template; ValueError if it does not parse as one."""
    return {field for field, _conv, _spec in fields(template)}


def fields(template: str) -> set[tuple[str, str, str]]:
    """(name, conversion, format spec) of each replacement field; ValueError if it does not parse."""
    return {
        (field, conv or "", spec or "")
        for _text, field, spec, conv in string.Formatter().parse(template)
        if field is not None
    }


def problem_with_edit(edited: str, original: str, *, max_chars: int) -> str | None:
    """Why `edited` cannot replace `original`, or None if it can.

    The agent formats the template with the same keyword arguments as before, so the placeholders
    must be the same plain names: a lost one drops task data, an unknown one fails at format time,
    and `{x.attr}` / `{x[0]}` would reach into the objects the agent passes in. Conversions and format
    specs the parent does not use are refused too: `{text:>300000000}` would build 300 M characters.
    """
    if not edited.strip():
        return "the edit is empty"
    if edited.strip() == original.strip():
        return "the edit is identical to its parent"
    if len(edited) > max_chars:
        return f"the edit is {len(edited)} characters long, over the limit of {max_chars}"
    try:
        found = placeholders(edited)
    except ValueError as exc:
        return f"the edit is not a valid f-string template ({exc}); literal braces must be doubled"
    wanted = placeholders(original)
    odd = sorted(f for f in found if not f.isidentifier())
    if odd:
        return f"the edit uses fields {odd} that are not plain names"
    if missing := sorted(wanted - found):
        return f"the edit drops placeholders {missing}"
    if extra := sorted(found - wanted):
        return f"the edit adds placeholders {extra} the tasks do not provide"
    if styled := sorted(f for f in fields(edited) - fields(original) if f[1] or f[2]):
        shown = ", ".join(_show(*field) for field in styled)
        return f"the edit uses conversions or format specs ({shown}); write plain {{name}} fields"
    try:
        edited.format(**{name: "" for name in found})
    except (ValueError, IndexError, KeyError) as exc:
        return f"the edit does not format: {type(exc).__name__}: {exc}"
    return None


def _show(name: str, conv: str, spec: str) -> str:
    return "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"


def extract_template(reply: str) -> str:
    """The template inside `<prompt>` tags, else inside a fenced code block, else the whole reply."""
    tagged = _TAGGED.search(reply)
    if tagged is not None:
        return tagged.group(1).strip()
    fenced = _FENCED.search(reply)
    if fenced is not None:
        return fenced.group(1).strip()
    return reply.strip()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_results(results: Sequence[RolloutResult], *, max_chars: int = 600) -> str:
    """The results a critic reads: per task, its input, the last recorded conversation and the reward."""
    blocks = []
    for number, result in enumerate(results, start=1):
        reward = "none" if result.reward is None else f"{result.reward:.2f}"
        lines = [f"## Task {number}: reward {reward} ({result.status})"]
        lines.append("task: " + _clip(json.dumps(result.task, default=str, ensure_ascii=False), max_chars))
        if result.conversations:
            for message in result.conversations[-1].get("messages", []):
                content = message.get("content")
                text = content if isinstance(content, str) else json.dumps(content, default=str)
                lines.append(f"{message.get('role', '?')}: {_clip(text, max_chars)}")
        else:
            lines.append("(no LLM call was recorded)")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def critique_messages(template: str, results: Sequence[RolloutResult]) -> list[dict[str, str]]:
    user = (
        f"Template:\n<prompt>\n{template}\n</prompt>\n\nResults:\n{render_results(results)}\n\n"
        "What should change in the template to earn higher rewards?"
    )
    return [{"role": "system", "content": CRITIC_SYSTEM}, {"role": "user", "content": user}]


def edit_messages(template: str, critique: str) -> list[dict[str, str]]:
    names = sorted(placeholders(template))
    keep = ", ".join("{" + n + "}" for n in names)
    rules = (
        f"Keep the placeholders {keep} exactly as written; they are filled in for every task. "
        if names
        else "The template has no placeholders; do not add any. "
    )
    user = (
        f"Template:\n<prompt>\n{template}\n</prompt>\n\nFeedback:\n{critique}\n\n"
        f"{rules}Write any other curly brace twice, like {{{{ or }}}}. Reply with the new template in <prompt> tags."
    )
    return [{"role": "system", "content": EDITOR_SYSTEM}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class Proposal:
    """One critique and edit: the edited template (if the editor answered) and, if unusable, why."""

    critique: str | None
    edit: str | None
    rejected: str | None = None


class PromptEditor:
    """Asks an OpenAI-compatible model for a critique of a template, then for the edited template."""

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        critique_model: str,
        edit_model: str,
        temperature: float = 1.0,
        max_tokens: int = 512,
        max_prompt_chars: int = 4000,
    ) -> None:
        self.client = client
        self.critique_model = critique_model
        self.edit_model = edit_model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_prompt_chars = max_prompt_chars

    async def propose(self, template: str, results: Sequence[RolloutResult]) -> Proposal:
        """Critique then edit; every failure (API error, empty or unusable reply) becomes a rejection reason."""
        from openai import OpenAIError

        try:
            critique = await self._ask(self.critique_model, critique_messages(template, results))
        except OpenAIError as exc:
            return Proposal(None, None, f"the critique call failed: {type(exc).__name__}: {exc}")
        if not critique:
            return Proposal(None, None, "the critique reply was empty")
        try:
            reply = await self._ask(self.edit_model, edit_messages(template, critique))
        except OpenAIError as exc:
            return Proposal(critique, None, f"the edit call failed: {type(exc).__name__}: {exc}")
        edited = extract_template(reply)
        return Proposal(critique, edited, problem_with_edit(edited, template, max_chars=self.max_prompt_chars))

    async def _ask(self, model: str, messages: list[dict[str, str]]) -> str:
        reply: Any = await self.client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        )
        if not reply.choices:
            return ""
        return str(reply.choices[0].message.content or "").strip()
