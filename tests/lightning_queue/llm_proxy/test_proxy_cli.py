"""`lq proxy`: options, errors, and a real process that records calls into Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from openai import AsyncOpenAI

from lightning_queue import RedisLightningStore
from lightning_queue.cli import main
from lightning_queue.llm_proxy import parse_model_spec
from lightning_queue.llm_proxy.cli import proxy_command
from lightning_queue.llm_proxy.config import model_from_mapping
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


def test_secret_warnings_name_the_safer_ways(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-file\n")
    inline = CliRunner().invoke(proxy_command, ["--auth-token", "tok-visible", "--model", "p=ftp://bad,key=sk-visible"])
    from_env = CliRunner(env={"LQ_PROXY_AUTH_TOKEN": "tok-env"}).invoke(proxy_command, ["--model", "p=ftp://bad"])
    both = CliRunner().invoke(
        proxy_command, ["--auth-token", "x", "--auth-token-file", str(token_file), "--model", "p=ftp://bad"]
    )

    assert inline.exit_code == 1 and "http(s) URL" in inline.output
    assert "--auth-token on the command line is readable" in inline.stderr
    assert "--auth-token-file PATH or the environment variable LQ_PROXY_AUTH_TOKEN" in inline.stderr
    assert "--model p: key= on the command line" in inline.stderr and "key_file=PATH" in inline.stderr
    assert "sk-visible" not in inline.output and "tok-visible" not in inline.output
    assert from_env.exit_code == 1 and "warning" not in from_env.stderr
    assert both.exit_code == 1 and "not both" in both.output


def test_keys_and_tokens_can_come_from_files(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("  sk-from-file  \n")
    empty = tmp_path / "empty"
    empty.write_text("\n")

    model = parse_model_spec(f"p=http://127.0.0.1:9/v1,key_file={key_file}")
    from_yaml = model_from_mapping({"name": "p", "base_url": "http://h/v1", "api_key_file": str(key_file)})

    assert model.api_key == "sk-from-file" and from_yaml.api_key == "sk-from-file"
    with pytest.raises(ValueError, match="is empty"):
        parse_model_spec(f"p=http://127.0.0.1:9/v1,key_file={empty}")
    with pytest.raises(ValueError, match="cannot read"):
        parse_model_spec(f"p=http://127.0.0.1:9/v1,key_file={tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="only one of"):
        parse_model_spec(f"p=http://127.0.0.1:9/v1,key=a,key_file={key_file}")
