"""`python -m workers.examples`: its --redis-url and --namespace are RedisSettings', checked before connecting."""

from __future__ import annotations

import pytest

from lightning_queue.store.settings import RedisSettings
from workers import examples


@pytest.mark.parametrize(
    ("argv", "named"),
    [(["--redis-url", "ftp://u:hunter2@h/0"], "ftp://u:***@h/0"), (["--namespace", "no spaces"], "'no spaces'")],
)
def test_a_bad_redis_url_or_namespace_is_refused_by_name(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        examples.main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and named in err and "hunter2" not in err


def test_a_bad_url_in_the_environment_is_refused_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LQ_REDIS_URL", "http://h/0")
    with pytest.raises(SystemExit):
        examples.main([])
    assert "'http://h/0'" in capsys.readouterr().err


def test_the_help_is_redis_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        examples.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--redis-url" in out and "--namespace" in out
    assert " ".join(str(RedisSettings.model_fields["url"].description).split()) in out
