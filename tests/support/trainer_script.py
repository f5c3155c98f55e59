"""An Agent-Lightning style training script, run as a file: `python trainer_script.py URL NS MODEL_URL MODEL LOG`.

Its agent and hook are classes of `__main__` built with arguments, so worker processes could never
import them by name; the Trainer must hand them over. Prints the `dev()` summary as JSON.
"""

import json
import os
import sys
from typing import Any

from openai import AsyncOpenAI

import lightning_queue as agl


class CalcAgent(agl.LitAgent[dict[str, Any]]):
    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    async def rollout_async(self, task: dict[str, Any], resources: Any, rollout: Any) -> float:
        llm = resources["main_llm"]  # the proxy: each attempt calls through its own URL (as in Agent-Lightning)
        base_url = llm.get_base_url(rollout.rollout_id, rollout.attempt.attempt_id)
        client = AsyncOpenAI(base_url=base_url, api_key=llm.api_key or "none", max_retries=0, timeout=20.0)
        question = f"{self.marker} {task['target']} {self.marker}"
        reply = await client.chat.completions.create(
            model=llm.model, messages=[{"role": "user", "content": question}], max_tokens=32
        )
        # The stand-in model echoes the question: the reward says the call went through.
        return 1.0 if question in (reply.choices[0].message.content or "") else 0.0


class RecordHook(agl.Hook):
    def __init__(self, path: str) -> None:
        self.path = path

    async def on_rollout_end(self, *, agent: Any, runner: Any, rollout: Any, spans: Any) -> None:
        self.record({"rollout_id": rollout.rollout_id, "pid": os.getpid(), "spans": len(spans)})

    def record(self, call: dict[str, Any]) -> None:
        with open(self.path, "a") as log:
            log.write(json.dumps(call) + "\n")


if __name__ == "__main__":
    url, namespace, model_url, model, log_path = sys.argv[1:6]
    trainer = agl.Trainer(
        n_runners=2,
        store={"type": "agentlightning.RedisLightningStore", "url": url, "namespace": namespace},
        llm_proxy={
            "type": "agentlightning.LLMProxy",
            "model_list": [{"name": "policy", "base_url": model_url, "model": model}],
        },
        hooks=[RecordHook(log_path)],
        strategy="shm",
        stop_timeout=3,
    )
    summary = trainer.dev(CalcAgent("###"), [{"target": i} for i in range(4)])
    print(json.dumps({"pid": os.getpid(), "summary": summary}), flush=True)
