"""`lq proxy`: options, errors, and a real process that records calls into Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

from click.testing import CliRunner
from openai import AsyncOpenAI

from lightning_queue import RedisLightningStore
from lightning_queue.cli import main
from lightning_queue.llm_proxy.cli import proxy_command
from lightning_queue.testing import StandInModelServer


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(main, ["proxy", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--config", "--host", "--port", "--auth-token", "LQ_PROXY_TOKEN", "--redis-url"):
        assert option in result.output


def test_without_models_it_says_how_to_give_them() -> None:
    result = CliRunner().invoke(proxy_command, ["--redis-url", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 1 and "--model NAME=URL" in result.output


def test_a_bad_model_spec_is_a_usage_error() -> None:
    result = CliRunner().invoke(proxy_command, ["--model", "x=ftp://h", "--redis-url", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 1 and "http(s) URL" in result.output


async def test_lq_proxy_serves_records_and_stops_on_sigterm(redis_url: str) -> None:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    store = RedisLightningStore(redis_url, namespace=namespace)
    async with StandInModelServer(api_key="sk-cli") as upstream:
        env = {**os.environ, "LQ_PROXY_TOKEN": "tok-cli"}
        command = [sys.executable, "-m", "lightning_queue.cli", "proxy", "--redis-url", redis_url]
        command += ["--namespace", namespace, "--model", f"policy={upstream.url},key=sk-cli,token_ids"]
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
            assert line.startswith("lq proxy: serving policy at http://127.0.0.1:"), line
            endpoint = line.rsplit(" ", 1)[1].strip()
            attempt = await store.start_rollout(input=None)
            base = f"{endpoint}/rollout/{attempt.rollout_id}/attempt/{attempt.attempt.attempt_id}/v1"
            async with AsyncOpenAI(base_url=base, api_key="tok-cli", max_retries=0) as client:
                answer = await client.chat.completions.create(
                    model="policy", messages=[{"role": "user", "content": "hi"}]
                )
            [span] = await store.query_spans(attempt.rollout_id)
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), timeout=15)
    await store.purge()
    await store.aclose()
    assert answer.choices[0].message.content == "You said: hi"
    assert span.attributes["response_token_ids"]
    assert code == 0
