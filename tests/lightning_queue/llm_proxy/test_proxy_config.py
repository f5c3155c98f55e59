"""Model lists in our shape and Agent-Lightning's, `--model` specs and YAML files."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_queue.llm_proxy import UpstreamModel, load_config_file, parse_model_spec
from lightning_queue.llm_proxy.config import normalize_model_list, safe_url


def test_model_spec_with_every_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    model = parse_model_spec(
        "policy=http://127.0.0.1:8000/v1/,model=Qwen/Qwen3-0.6B,key_env=MY_KEY,token_ids,timeout=30"
    )

    assert model == UpstreamModel(
        name="policy",
        base_url="http://127.0.0.1:8000/v1",
        model="Qwen/Qwen3-0.6B",
        api_key="sk-from-env",
        extra_body={"return_token_ids": True},
        timeout=30.0,
    )
    assert parse_model_spec("m=http://h/v1,key=sk-1").api_key == "sk-1"
    assert parse_model_spec("m=http://h/v1").model == "m"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-url", "expected NAME=URL"),
        ("m=ftp://h/v1", "http"),
        ("m=http://h/v1,colour=red", "unknown option 'colour'"),
        ("m=http://h/v1,key_env=LQ_TEST_UNSET_VAR", "not set"),
        ("m=http://h/v1,timeout=-1", "positive"),
        ("m=http://h/v1,token_ids=maybe", "true or false"),
    ],
)
def test_bad_model_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_model_spec(spec)


def test_agent_lightning_model_lists_are_understood() -> None:
    [model] = normalize_model_list(
        [
            {
                "model_name": "policy",
                "litellm_params": {"model": "hosted_vllm/Qwen/Qwen3-0.6B", "api_base": "http://127.0.0.1:8000/v1"},
            }
        ]
    )
    assert model.name == "policy" and model.model == "Qwen/Qwen3-0.6B"
    assert model.extra_body == {"return_token_ids": True}
    with pytest.raises(ValueError, match="unsupported litellm_params"):
        normalize_model_list([{"model_name": "m", "litellm_params": {"model": "x", "api_base": "http://h", "rpm": 3}}])


def test_config_file_in_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "sk-yaml")
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        "  - name: policy\n"
        "    base_url: http://127.0.0.1:8000/v1\n"
        "    model: smol\n"
        "    api_key_env: UPSTREAM_KEY\n"
        "    extra_body: {return_token_ids: true}\n"
        "  - name: judge\n"
        "    base_url: https://api.example.com/v1\n"
    )
    policy, judge = load_config_file(path)
    assert (policy.model, policy.api_key, dict(policy.extra_body)) == ("smol", "sk-yaml", {"return_token_ids": True})
    assert (judge.name, judge.model, judge.api_key) == ("judge", "judge", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [", "not valid YAML"),
        ("- a\n", "expected a mapping"),
        ("models: []\n", "non-empty list"),
        ("servers: []\n", "unknown top-level keys"),
        ("models:\n  - name: a\n", "base_url is required"),
        ("models:\n  - {name: a, base_url: 'http://h', colour: red}\n", "unknown keys"),
    ],
)
def test_bad_config_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config_file(path)


def test_keys_and_url_credentials_stay_out_of_reprs_and_messages() -> None:
    model = UpstreamModel(name="m", base_url="http://h/v1", model="x", api_key="sk-hidden")
    assert "sk-hidden" not in repr(model)
    assert safe_url("http://user:pw@host:1/v1") == "http://***@host:1/v1"
    with pytest.raises(ValueError) as raised:
        UpstreamModel(name="m", base_url="ftp://user:pw@host/v1", model="x")
    assert "pw" not in str(raised.value)
