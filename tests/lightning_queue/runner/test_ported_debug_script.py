"""A debug script in the shape of Agent-Lightning's apo_debug.py (runner and hook modes), with its imports
changed to `lightning_queue`, runs as `python script.py` and stores the agent's reward."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import argparse
    import asyncio

    import lightning_queue as agl
    from lightning_queue import configure_logger
    from lightning_queue.litagent import LitAgent
    from lightning_queue.runner import LitAgentRunner
    from lightning_queue.store import InMemoryLightningStore
    from lightning_queue.types import Dataset, Hook, PromptTemplate, Rollout


    @agl.rollout
    def room_agent(task: str, prompt_template: PromptTemplate) -> float:
        prompt = prompt_template.format(any_question=task)
        return 1.0 if "sky" in prompt else 0.0


    async def debug(with_hook: bool) -> None:
        runner = LitAgentRunner[str]()
        store = InMemoryLightningStore(thread_safe=True)
        resource = PromptTemplate(template="You are a helpful assistant. {any_question}", engine="f-string")

        class DebugHook(Hook):
            async def on_trace_end(self, *, agent: LitAgent[str], runner, tracer, rollout: Rollout) -> None:
                print("hook saw", rollout.input)

        with runner.run_context(agent=room_agent, store=store, hooks=[DebugHook()] if with_hook else None):
            done = await runner.step("Why is the sky blue?", resources={"main_prompt": resource})
        spans = await store.query_spans(done.rollout_id)
        print("status", done.status, "reward", agl.find_final_reward(spans.items))
        await store.close()


    if __name__ == "__main__":
        configure_logger()
        parser = argparse.ArgumentParser()
        parser.add_argument("--mode", choices=["runner", "hook"], default="runner")
        args = parser.parse_args()
        tasks: Dataset[str] = ["Why is the sky blue?"]  # the type the trainer mode would take
        asyncio.run(debug(with_hook=args.mode == "hook"))
    """
)


@pytest.mark.parametrize("mode", ["runner", "hook"])
def test_the_ported_apo_debug_script_runs_as_a_file(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "apo_debug_ported.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), "--mode", mode],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "status succeeded reward 1.0" in result.stdout
    assert ("hook saw Why is the sky blue?" in result.stdout) == (mode == "hook")
