"""Prompt search: APO-style beam search over a `PromptTemplate` resource, scored by rollouts' rewards.

python -m algorithms.prompt_search --help

The seed template is scored on the validation set. Each round expands the beam: every parent is run
on train batches through the workers, an LLM critiques each batch's results and rewrites the
template, and the new candidates plus the beam are scored on one validation batch; the best
`beam_width` stay. The leader is then scored on the whole validation set and becomes the best
prompt if it beats the best so far. Critique and edit go to any OpenAI-compatible model.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning_queue import LLM, LLMProxy, PromptTemplate, TraceToMessages, with_llm_proxy, with_store
from lightning_queue.algorithm import Algorithm, batch_iter_over_dataset
from lightning_queue.store.base import LightningStore
from lightning_queue.types import NamedResources

from ..evaluation import load_checker
from ..progress import Progress
from .edits import PromptEditor, Proposal, placeholders
from .evaluator import Candidate, Evaluation, PromptEvaluator

if TYPE_CHECKING:
    from openai import AsyncOpenAI

logger = logging.getLogger(__name__)


@dataclass
class PromptSearchConfig:
    beam_width: int = 4  # templates kept after each round
    branch_factor: int = 4  # candidates proposed per parent per round
    beam_rounds: int = 3  # rounds (the CLI's --max-iterations)
    train_batch_size: int = 4  # tasks run per critique
    val_batch_size: int = 16  # tasks the beam and candidates are ranked on each round
    critique_samples: int = 4  # results of a train batch shown to the critic
    critique_model: str | None = None  # None: the model of the LLM the rollouts use
    edit_model: str | None = None  # None: the critique model
    temperature: float = 1.0  # critique and edit sampling; higher gives more varied candidates
    max_tokens: int = 512  # per critique or edit reply
    rollout_temperature: float = 0.0  # sampling of the agent's own calls, when the proxy is published here
    rollout_max_tokens: int | None = None
    rollout_timeout: float = 600.0  # per batch; unfinished rollouts count as reward 0
    max_minutes: float | None = None  # checked before each round
    run_initial_validation: bool = True
    max_prompt_chars: int = 4000
    llm_timeout: float = 120.0  # per critique or edit call, for the client built here
    template_name: str | None = None  # which PromptTemplate resource to search; None: the first
    metrics_path: str | None = None  # JSONL, one record per round
    # The task's checker (`module:name`, see algorithms/evaluation.py): accuracy of the seed and best prompts.
    checker: str | None = None
    progress: bool | None = None  # None: a progress bar on a terminal only
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("beam_width", "branch_factor", "train_batch_size", "val_batch_size", "critique_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.beam_rounds < 0:
            raise ValueError(f"beam_rounds must be >= 0, got {self.beam_rounds!r}")


class PromptSearch(Algorithm):
    """Beam search over one f-string `PromptTemplate` of the initial resources.

    Needs `initial_resources` holding the template (and the LLM the agent uses, unless an
    `LLMProxy` is set: then the proxy is published as `main_llm`), a train and a val dataset.
    `client` is an `openai.AsyncOpenAI` for the critique and edit calls; without one, they go
    through the proxy (not attributed to any rollout) or to the LLM resource's endpoint.
    """

    def __init__(self, config: PromptSearchConfig | None = None, *, client: AsyncOpenAI | None = None) -> None:
        super().__init__()
        self.config = config or PromptSearchConfig()
        self.client = client
        self.seed: Candidate | None = None
        self.best: Candidate | None = None
        self.history: list[dict[str, Any]] = []

    def get_best_prompt(self) -> PromptTemplate:
        if self.best is None:
            raise ValueError("PromptSearch has no best prompt yet: run it first (Trainer.fit)")
        return PromptTemplate(template=self.best.template, engine="f-string")

    @with_llm_proxy(allow_unattributed=True)
    @with_store
    async def run(
        self, store: LightningStore, llm_proxy: LLMProxy | None, train_dataset: Any = None, val_dataset: Any = None
    ) -> dict[str, Any]:
        if not train_dataset or not val_dataset:
            raise ValueError(
                "PromptSearch needs a non-empty train_dataset (for critiques) and val_dataset (for scores)"
            )
        cfg = self.config
        resources, name, seed_text = self._resources(llm_proxy)
        client, owned = self._client(llm_proxy, resources)
        try:
            editor = PromptEditor(
                client,
                critique_model=self._critique_model(llm_proxy, resources),
                edit_model=cfg.edit_model or self._critique_model(llm_proxy, resources),
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
                max_prompt_chars=cfg.max_prompt_chars,
            )
            with Progress(cfg.beam_rounds, "prompt search", enabled=cfg.progress) as progress:
                evaluator = PromptEvaluator(
                    store,
                    resources,
                    name,
                    adapter=self._adapter(),
                    rollout_timeout=cfg.rollout_timeout,
                    progress=progress,
                )
                search = _BeamSearch(self, evaluator, editor, progress, seed_text)
                return await search.run(list(train_dataset), list(val_dataset))
        finally:
            if owned:
                await client.close()

    # --- wiring ----------------------------------------------------------------------------------
    def _resources(self, llm_proxy: LLMProxy | None) -> tuple[NamedResources, str, str]:
        resources = dict(self.get_initial_resources() or {})
        templates = {k: v for k, v in resources.items() if isinstance(v, PromptTemplate)}
        name = self.config.template_name or next(iter(templates), None)
        if name is None or name not in templates:
            raise ValueError(
                f"PromptSearch needs a PromptTemplate resource named {name!r} in initial_resources, found "
                f"{sorted(templates)}: pass initial_resources={{'prompt': PromptTemplate(...)}} to the Trainer"
            )
        seed = templates[name]
        if seed.engine != "f-string":
            raise ValueError(f"PromptSearch edits f-string templates; resource {name!r} uses engine {seed.engine!r}")
        placeholders(seed.template)  # a seed that does not parse fails here, not in every worker
        if not any(isinstance(r, LLM) for r in resources.values()):
            if llm_proxy is None:
                raise ValueError("PromptSearch needs an LLM resource in initial_resources or an LLM proxy to publish")
            sampling: dict[str, Any] = {"temperature": self.config.rollout_temperature}
            if self.config.rollout_max_tokens is not None:
                sampling["max_tokens"] = self.config.rollout_max_tokens
            resources = {"main_llm": llm_proxy.as_resource(sampling_parameters=sampling), **resources}
        return resources, name, seed.template

    def _llm(self, resources: NamedResources) -> LLM | None:
        return next((r for r in resources.values() if isinstance(r, LLM)), None)

    def _critique_model(self, llm_proxy: LLMProxy | None, resources: NamedResources) -> str:
        if self.config.critique_model:
            return self.config.critique_model
        llm = self._llm(resources)
        if llm is None:
            raise ValueError("PromptSearch needs critique_model when no LLM resource names one")
        return llm.model

    def _client(self, llm_proxy: LLMProxy | None, resources: NamedResources) -> tuple[AsyncOpenAI, bool]:
        if self.client is not None:
            return self.client, False
        from openai import AsyncOpenAI

        if llm_proxy is not None:
            # Un-prefixed calls: forwarded, not recorded (run() starts the proxy with allow_unattributed).
            base_url, api_key = f"{llm_proxy.endpoint}/v1", llm_proxy.auth_token
        else:
            llm = self._llm(resources)
            if llm is None:
                raise ValueError("PromptSearch needs client=AsyncOpenAI(...) when there is neither a proxy nor an LLM")
            base_url, api_key = llm.endpoint, llm.api_key
        client = AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", timeout=self.config.llm_timeout)
        return client, True

    def _adapter(self) -> TraceToMessages:
        try:
            adapter = self.get_adapter()
        except ValueError:
            return TraceToMessages()
        if not isinstance(adapter, TraceToMessages):
            raise ValueError(f"PromptSearch reads conversations with TraceToMessages, got {type(adapter).__name__}")
        return adapter


class _BeamSearch:
    """The state of one run: versions handed out, the beam, the best so far, the clock."""

    def __init__(
        self, owner: PromptSearch, evaluator: PromptEvaluator, editor: PromptEditor, progress: Progress, seed: str
    ) -> None:
        self.owner = owner
        self.cfg = owner.config
        self.evaluator = evaluator
        self.editor = editor
        self.progress = progress
        self.rng = random.Random(self.cfg.seed)
        self._versions = itertools.count()
        self.started = time.monotonic()
        self.seed = self.best = self._candidate(seed)
        owner.seed = owner.best = self.seed
        self.checker = load_checker(self.cfg.checker) if self.cfg.checker else None
        # Every template proposed so far: one dropped from the beam is not worth scoring again.
        self.seen = {self.seed.template: self.seed.version}

    def _candidate(self, template: str, parent: Candidate | None = None, critique: str | None = None) -> Candidate:
        return Candidate(f"prompt-v{next(self._versions)}", template, parent.version if parent else None, critique)

    async def run(self, train: list[Any], val: list[Any]) -> dict[str, Any]:
        cfg = self.cfg
        seed = self.seed
        if cfg.run_initial_validation:
            self.evaluator.begin_phase()
            seed.val_score = await self._validate(seed, val)
            self._log({"iteration": 0, "seed": seed.version, "seed_val_score": seed.val_score})
        beam = [seed]
        train_batches = batch_iter_over_dataset(train, cfg.train_batch_size, seed=cfg.seed)
        val_batches = batch_iter_over_dataset(val, cfg.val_batch_size, seed=cfg.seed + 1)
        stopped = "max_iterations"
        for round_number in range(1, cfg.beam_rounds + 1):
            if cfg.max_minutes is not None and time.monotonic() - self.started > cfg.max_minutes * 60:
                logger.warning("stopping before round %d: max_minutes %.1f reached", round_number, cfg.max_minutes)
                stopped = "max_minutes"
                break
            beam = await self._round(round_number, beam, train_batches, val_batches, val)
        best = self.best
        if best.val_score is None:  # only without initial validation and no rounds
            best.val_score = await self._validate(best, val)
        return {
            "seed": asdict(seed),
            "best": asdict(best),
            "improvement": None if seed.val_score is None else best.val_score - seed.val_score,
            "iterations": self.owner.history,
            "rollouts": self.evaluator.rollouts_total,
            "stopped": stopped,
            "seconds": round(time.monotonic() - self.started, 2),
        }

    async def _round(
        self,
        round_number: int,
        beam: list[Candidate],
        train_batches: Iterator[list[Any]],
        val_batches: Iterator[list[Any]],
        val: list[Any],
    ) -> list[Candidate]:
        cfg = self.cfg
        started = time.monotonic()
        rollouts_before = self.evaluator.rollouts_total
        # Every beam member gets expanded when the beam is full; a short beam repeats its members.
        parents = [beam[i % len(beam)] for i in range(cfg.beam_width) for _ in range(cfg.branch_factor)]
        self.evaluator.begin_phase()
        expansions = await asyncio.gather(*(self._expand(parent, next(train_batches)) for parent in parents))
        train_rewards = [r.reward or 0.0 for evaluation, _ in expansions for r in evaluation.results]
        fresh: list[Candidate] = []
        rejections: list[dict[str, str | None]] = []
        for (_evaluation, proposal), parent in zip(expansions, parents, strict=True):
            reason = proposal.rejected
            if reason is None and proposal.edit in self.seen:
                reason = f"duplicate of {self.seen[proposal.edit]}"
            if reason is not None or proposal.edit is None:
                reason = reason or "the editor gave no template"
                logger.info("round %d: edit of %s rejected: %s", round_number, parent.version, reason)
                rejections.append({"parent": parent.version, "reason": reason, "edit": _clip(proposal.edit, 300)})
                continue
            candidate = self._candidate(proposal.edit, parent, proposal.critique)
            self.seen[candidate.template] = candidate.version
            fresh.append(candidate)
        pool = beam + fresh
        batch = next(val_batches)
        self.evaluator.begin_phase()
        scores = await asyncio.gather(*(self.evaluator.evaluate(c, batch, "val") for c in pool))
        # Stable sort: on a tie the incumbent stays ahead of its challengers.
        ranked = sorted(zip(pool, scores, strict=True), key=lambda pair: -pair[1].score)
        new_beam = [c for c, _ in ranked[: cfg.beam_width]]
        leader = new_beam[0]
        if leader.val_score is None:
            self.evaluator.begin_phase()
            leader.val_score = await self._validate(leader, val)
        best = self.best
        if best.val_score is None or leader.val_score > best.val_score:
            self.owner.best = self.best = best = leader
        record = {
            "iteration": round_number,
            "seconds": round(time.monotonic() - started, 2),
            "rollouts": self.evaluator.rollouts_total - rollouts_before,
            "train_reward_mean": sum(train_rewards) / len(train_rewards) if train_rewards else None,
            "proposed": len(parents),
            "accepted": len(fresh),
            "rejected": len(rejections),
            "rejections": rejections,
            "candidates": [
                {"version": c.version, "parent": c.parent, "template": c.template, "critique": _clip(c.critique)}
                for c in fresh
            ],
            "beam": [{"version": c.version, "val_batch_score": e.score} for c, e in ranked[: cfg.beam_width]],
            "leader": leader.version,
            "leader_val_score": leader.val_score,
            "best": best.version,
            "best_val_score": best.val_score,
            "best_template": best.template,
        }
        self._log(record)
        self.progress.advance(f"round {round_number}: best {best.val_score:.3f} ({best.version})")
        return new_beam

    async def _validate(self, candidate: Candidate, val: list[Any]) -> float:
        """Score the candidate on the whole validation set (returned), and record its accuracy by the checker."""
        evaluation = await self.evaluator.evaluate(candidate, val, "val")
        candidate.val_record = evaluation.held_out(self.checker).record()
        return evaluation.score

    async def _expand(self, parent: Candidate, batch: Sequence[Any]) -> tuple[Evaluation, Proposal]:
        """Run the parent on a train batch, show some results to the critic, and ask for an edit."""
        evaluation = await self.evaluator.evaluate(parent, batch, "train")
        shown = self.rng.sample(evaluation.results, min(self.cfg.critique_samples, len(evaluation.results)))
        return evaluation, await self.editor.propose(parent.template, shown)

    def _log(self, record: dict[str, Any]) -> None:
        self.owner.history.append(record)
        logger.info("%s", {k: v for k, v in record.items() if k not in ("rejections", "candidates", "best_template")})
        if self.cfg.metrics_path:
            path = Path(self.cfg.metrics_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"time": time.time(), **record}) + "\n")


def _clip(text: str | None, limit: int = 500) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 3] + "..."
