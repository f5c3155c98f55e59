"""The model server's admin route (`POST /v1/load`): a token, a checkpoint root nothing escapes, and
no public bind without a token. Runs on a stand-in model: what is checked happens before any weights load."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from click.testing import CliRunner

from lightning_queue.model_server import LoadedModel, ModelServer
from lightning_queue.model_server import engine as engine_module
from lightning_queue.model_server.admin import AdminConfigError, read_or_create_token_file, resolve_inside
from lightning_queue.model_server.cli import serve_model_command

TOKEN = "test-admin-token-0123456789"


def stand_in_model(path: Path) -> LoadedModel:
    # The engine keeps these until a request generates; admin requests never do.
    return LoadedModel(
        model=cast(Any, None),
        tokenizer=cast(Any, None),
        path=path,
        name="stand-in",
        eos_token_ids=frozenset(),
        context_length=16,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "iter-1").mkdir(parents=True)
    (checkpoints / "iter-1" / "config.json").write_text("{}")
    return checkpoints


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths the engine was asked to load (instead of loading weights)."""
    seen: list[Path] = []

    def fake_load(path: str | os.PathLike[str], **kwargs: Any) -> LoadedModel:
        seen.append(Path(path))
        return stand_in_model(Path(path))

    monkeypatch.setattr(engine_module, "load_model", fake_load)
    return seen


@pytest.fixture
async def server(root: Path, loads: list[Path]) -> AsyncIterator[ModelServer]:
    async with ModelServer(stand_in_model(root), threads=1, admin_token=TOKEN, checkpoint_root=root) as served:
        yield served


async def post_load(server: ModelServer, path: str, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.url}/load", json={"path": path}, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_load_without_the_token_is_refused_before_the_path_is_looked_at(
    server: ModelServer, root: Path, loads: list[Path]
) -> None:
    for token in (None, "wrong-token-0123456789", TOKEN + "x"):
        status, body = await post_load(server, "/etc", token=token)
        assert status == 401, body
        assert "Bearer" in body["error"]["message"] and "/etc" not in body["error"]["message"]
    status, _ = await post_load(server, str(root / "iter-1"), token=None)
    assert status == 401
    assert loads == []


async def test_load_with_the_token_inside_the_root_loads_the_real_path(
    server: ModelServer, root: Path, loads: list[Path]
) -> None:
    status, body = await post_load(server, str(root / "iter-1"))
    assert status == 200, body
    status, body = await post_load(server, "iter-1")  # relative to the root
    assert status == 200, body
    assert loads == [(root / "iter-1").resolve()] * 2


@pytest.mark.parametrize(
    "escape", ["/etc", "../", "iter-1/../..", "/nonexistent-dir/x", "link-out", "iter-1/../link-out"]
)
async def test_paths_outside_the_root_get_one_answer_that_says_nothing_about_them(
    server: ModelServer, root: Path, loads: list[Path], escape: str
) -> None:
    (root / "link-out").symlink_to("/etc")
    status, body = await post_load(server, escape)
    assert status == 403, body
    message = body["error"]["message"]
    assert message == f"checkpoint path {escape!r} is not inside this server's checkpoint root"
    assert body["error"]["code"] == "outside_checkpoint_root"
    assert loads == []


async def test_a_checkpoint_whose_files_link_outside_the_root_is_refused(
    server: ModelServer, root: Path, loads: list[Path]
) -> None:
    (root / "iter-2").mkdir()
    (root / "iter-2" / "config.json").symlink_to("/etc/hostname")
    status, body = await post_load(server, "iter-2")
    assert status == 403 and "hostname" not in body["error"]["message"]
    assert loads == []


async def test_without_an_admin_token_load_is_off(root: Path, loads: list[Path]) -> None:
    async with ModelServer(stand_in_model(root), threads=1) as server:
        status, body = await post_load(server, str(root / "iter-1"), token=None)
    assert status == 403 and body["error"]["code"] == "admin_disabled"
    assert loads == []


def test_a_public_bind_without_a_token_is_refused(root: Path) -> None:
    with pytest.raises(AdminConfigError, match=r"'0\.0\.0\.0' without an admin token"):
        ModelServer(stand_in_model(root), host="0.0.0.0")
    with pytest.raises(AdminConfigError, match="checkpoint root"):
        ModelServer(stand_in_model(root), host="0.0.0.0", admin_token=TOKEN)
    ModelServer(stand_in_model(root), host="0.0.0.0", admin_token=TOKEN, checkpoint_root=root)
    ModelServer(stand_in_model(root), host="::1")


def test_cli_refuses_a_public_bind_without_a_token_and_a_token_without_a_root(tmp_path: Path) -> None:
    result = CliRunner().invoke(serve_model_command, ["--host", "0.0.0.0", "--model", str(tmp_path)])
    assert result.exit_code != 0 and "without an admin token" in result.output
    result = CliRunner().invoke(serve_model_command, ["--admin-token-file", str(tmp_path / "token")])
    assert result.exit_code != 0 and "--checkpoint-root" in result.output


def test_cli_warns_that_a_token_given_as_an_argument_shows_in_ps(tmp_path: Path) -> None:
    # A too-short token fails right after the warning, before any model loads.
    result = CliRunner().invoke(serve_model_command, ["--admin-token", "short", "--checkpoint-root", str(tmp_path)])
    assert "visible to every local user" in result.output and result.exit_code != 0
    result = CliRunner().invoke(
        serve_model_command, ["--checkpoint-root", str(tmp_path)], env={"LQ_MODEL_ADMIN_TOKEN": "short"}
    )
    assert "visible to every local user" not in result.output and "at least 16" in result.output


def test_token_file_is_created_owner_only_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "token"
    token = read_or_create_token_file(path)
    assert len(token) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_token_file(path) == token
    path.chmod(0o644)
    with pytest.raises(AdminConfigError, match="readable by other users"):
        read_or_create_token_file(path)


def test_resolve_inside_follows_symlinks_before_judging(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "inner-link").symlink_to(root / "a")
    assert resolve_inside(root, "inner-link") == Path(os.path.realpath(root / "a"))
    assert resolve_inside(root, str(root)) == Path(os.path.realpath(root))


def test_a_started_server_gets_root_and_token_through_its_environment_not_its_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from algorithms import serving

    started: list[tuple[list[str], dict[str, str]]] = []

    def fake_popen(command: list[str], **kwargs: Any) -> Any:
        started.append((command, kwargs["env"]))
        raise OSError("not started in this test")

    monkeypatch.setattr(serving.subprocess, "Popen", fake_popen)  # type: ignore[attr-defined]
    server = serving.ModelServerProcess(checkpoint_root=tmp_path)
    with pytest.raises(OSError, match="not started"):
        server.start()
    [(command, env)] = started
    assert server.admin_token is not None and len(server.admin_token) >= 32
    assert server.admin_token not in " ".join(command)
    assert command[command.index("--checkpoint-root") + 1] == str(tmp_path)
    assert env["LQ_MODEL_ADMIN_TOKEN"] == server.admin_token
    assert serving.ModelServerProcess().admin_token is None  # no root: hot loading stays off


@pytest.mark.model
@pytest.mark.slow
def test_the_algorithms_server_child_loads_their_checkpoints_with_its_token_and_nothing_else(tmp_path: Path) -> None:
    from algorithms.reloaders import LocalServerReloader
    from algorithms.serving import ModelServerProcess
    from lightning_queue.model_server import resolve_default_model_dir

    root = tmp_path / "checkpoints"
    # Hard links: a real checkpoint inside the root without copying half a gigabyte.
    shutil.copytree(resolve_default_model_dir(), root / "iter-1", copy_function=os.link)
    with ModelServerProcess(threads=1, checkpoint_root=root) as server:
        asyncio.run(LocalServerReloader(server.url, admin_token=server.admin_token).load(root / "iter-1"))
        with urllib.request.urlopen(server.url.removesuffix("/v1") + "/health", timeout=30) as response:
            assert json.loads(response.read())["version"] == 1
        with pytest.raises(RuntimeError, match="HTTP 401"):
            asyncio.run(LocalServerReloader(server.url).load(root / "iter-1"))
        with pytest.raises(RuntimeError, match=r"HTTP 403.*not inside"):
            asyncio.run(LocalServerReloader(server.url, admin_token=server.admin_token).load(tmp_path))


def test_an_external_server_is_reloaded_with_the_token_from_its_file(
    root: Path, loads: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Procfile's path: the algorithm reads the file `lq serve-model --admin-token-file` wrote."""
    from algorithms.launch import Upstream, serving
    from lightning_queue.model_server import ServerThread

    token_file = tmp_path / ".lq" / "token"
    token = read_or_create_token_file(token_file)
    monkeypatch.chdir(root)  # the algorithm names its checkpoints relative to its own directory
    with ServerThread(ModelServer(stand_in_model(root), threads=1, admin_token=token, checkpoint_root=root)) as url:
        upstream = Upstream(kind="external", base_url=url, admin_token_file=token_file)
        with serving(upstream, None, root) as (served_url, reloader):
            assert served_url == url
            asyncio.run(reloader.load(Path("iter-1")))
    assert loads == [(root / "iter-1").resolve()]


async def test_a_server_started_for_a_run_stops_once_the_process_that_started_it_is_gone() -> None:
    import asyncio
    import os

    from lightning_queue.model_server.cli import _stop_when_orphaned

    stop = asyncio.Event()
    watch = asyncio.create_task(_stop_when_orphaned(os.getppid(), stop))
    await asyncio.sleep(1.5)
    assert not stop.is_set()  # its parent is alive: it serves on
    watch.cancel()
    # A parent pid that is not ours any more (the run was killed and we were re-parented).
    await asyncio.wait_for(_stop_when_orphaned(os.getppid() + 1_000_000, stop), 5)
    assert stop.is_set()
