"""Client configuration resolution of the CLI: flags, then environment, then client.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshlet.cli.errors import ConfigError
from meshlet.cli.settings import ClientFile, ClientSettings, resolve_client_settings

FILE = ClientFile(server="https://file:1", token="mlt_file", ca_file=Path("/file/ca.crt"))


class Loader:
    """A fake client.json reader that records which path it was asked for."""

    def __init__(self, result: ClientFile | None = FILE) -> None:
        self.result = result
        self.paths: list[Path] = []

    def __call__(self, path: Path) -> ClientFile:
        self.paths.append(path)
        if self.result is None:
            raise ConfigError(f"{path} does not exist")
        return self.result


def test_flags_win_and_client_json_is_not_read_when_everything_is_given() -> None:
    loader = Loader()
    settings = resolve_client_settings(
        cp="https://flag:1",
        token="mlt_flag",
        ca_file=Path("flag.crt"),
        env={"MESHLET_CP": "https://env:1", "MESHLET_TOKEN": "mlt_env"},
        load_client_file=loader,
    )
    assert settings == ClientSettings("https://flag:1", "mlt_flag", Path("flag.crt"))
    assert loader.paths == []


def test_environment_is_used_when_flags_are_absent() -> None:
    env = {
        "MESHLET_CP": "https://env:1",
        "MESHLET_TOKEN": "mlt_env",
        "MESHLET_CA_FILE": "/env/ca.crt",
    }
    settings = resolve_client_settings(
        cp=None, token=None, ca_file=None, env=env, load_client_file=Loader()
    )
    assert settings == ClientSettings("https://env:1", "mlt_env", Path("/env/ca.crt"))


def test_each_setting_falls_back_to_client_json_on_its_own() -> None:
    settings = resolve_client_settings(
        cp=None,
        token="mlt_flag",
        ca_file=None,
        env={"MESHLET_CP": "https://env:1"},
        load_client_file=Loader(),
    )
    assert settings == ClientSettings("https://env:1", "mlt_flag", Path("/file/ca.crt"))


def test_client_json_comes_from_meshlet_home_defaulting_to_dot_meshlet_cp() -> None:
    loader = Loader()
    resolve_client_settings(cp=None, token=None, ca_file=None, env={}, load_client_file=loader)
    resolve_client_settings(
        cp=None, token=None, ca_file=None, env={"MESHLET_HOME": "/srv/cp"}, load_client_file=loader
    )
    assert loader.paths == [Path(".meshlet/cp/client.json"), Path("/srv/cp/client.json")]


def test_empty_environment_variables_count_as_unset() -> None:
    settings = resolve_client_settings(
        cp=None,
        token=None,
        ca_file=None,
        env={"MESHLET_CP": "", "MESHLET_TOKEN": "", "MESHLET_CA_FILE": ""},
        load_client_file=Loader(),
    )
    assert settings == ClientSettings(FILE.server, FILE.token, FILE.ca_file)


def test_missing_client_json_says_which_flags_are_missing_and_what_to_do() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_client_settings(
            cp="https://flag:1",
            token=None,
            ca_file=None,
            env={},
            load_client_file=Loader(None),
        )
    message = info.value.message
    assert "--token, --ca-file not given" in message
    assert message.startswith("no control plane configured: --token, --ca-file not given and ")
    assert "meshlet up" in message
    assert "MESHLET_HOME" in message


def test_a_ca_file_is_required() -> None:
    with pytest.raises(ConfigError, match="--ca-file"):
        resolve_client_settings(
            cp=None,
            token=None,
            ca_file=None,
            env={},
            load_client_file=Loader(ClientFile("https://f:1", "mlt_x", None)),
        )
