"""The real ``meshlet`` command, as a user runs it, against a real control plane.

One control plane serves the module; each test works in its own namespace. The CLI finds it the
way a user's shell would: ``MESHLET_HOME`` pointing at the control plane's state directory.
``meshlet connect`` is tested against a stand-in agent (a Unix socket speaking the handshake),
so that its relay and error reporting are checked without starting a whole mesh.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlet.testing.mesh import ControlPlaneProcess
from meshlet.wire.handshake import ReplyCode, RequestParser, encode_reply

pytestmark = pytest.mark.integration

MESHLET = Path(sys.executable).with_name("meshlet")


def meshlet_argv() -> list[str]:
    """The installed console script when there is one, else the module."""
    if MESHLET.exists():
        return [str(MESHLET)]
    found = shutil.which("meshlet")
    return [found] if found else [sys.executable, "-m", "meshlet.cli"]


def manifest(namespace: str, *, timeout: str = "5m", weight: int = 90) -> str:
    return f"""\
apiVersion: ext.burningxflame.github.com/v1
kind: Meshlet
metadata: {{namespace: {namespace}, name: echo}}
spec:
  server:
    selector: {{meshless/meshlet: echo}}
    services: [{{name: echo, idleTimeout: {timeout}}}]
    canary: [{{version: v1, weight: {weight}}}, {{version: v2, weight: 10}}]
---
apiVersion: ext.burningxflame.github.com/v1
kind: Meshlet
metadata: {{namespace: {namespace}, name: client}}
spec:
  client: [{{namespace: {namespace}, meshlet: echo, service: echo}}]
"""


class Cli:
    """Runs ``meshlet`` with an environment pointing at one control plane."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def __call__(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*meshlet_argv(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    process = ControlPlaneProcess(tmp_path_factory.mktemp("cli-cp"))
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def cli(cp: ControlPlaneProcess, tmp_path: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLET_")}
    env.update({"MESHLET_HOME": str(cp.state_dir), "COLUMNS": "200", "NO_COLOR": "1"})
    return Cli(env, tmp_path)


def assert_clean_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit status 1, an ``error:`` line naming every needle, and no traceback."""
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_apply_get_describe_delete_round_trip(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "apps.yaml"
    path.write_text(manifest("round-trip"))

    first = cli("apply", "-f", str(path))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "meshlet.ext.burningxflame.github.com/echo created",
        "meshlet.ext.burningxflame.github.com/client created",
    ]
    again = cli("apply", "-f", "-", stdin=path.read_text())
    assert again.stdout.splitlines() == [
        "meshlet.ext.burningxflame.github.com/echo unchanged",
        "meshlet.ext.burningxflame.github.com/client unchanged",
    ]
    path.write_text(manifest("round-trip", weight=80))
    changed = cli("apply", "-f", str(tmp_path))
    assert "meshlet.ext.burningxflame.github.com/echo configured" in changed.stdout

    table = cli("get", "meshlets", "-n", "round-trip")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:2] == ["NAME", "SERVICES"] and header.split()[-1] == "AGE"
    assert sorted(row.split()[0] for row in rows) == ["client", "echo"]
    assert "v1:80,v2:10" in table.stdout

    everywhere = cli("get", "ms", "-A")
    assert everywhere.stdout.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert "echo.echo.round-trip" in everywhere.stdout

    as_yaml = cli("get", "ml", "echo", "-n", "round-trip", "-o", "yaml")
    assert "kind: Meshlet" in as_yaml.stdout and "idleTimeout: 5m" in as_yaml.stdout
    as_json = cli("get", "ml", "echo", "-n", "round-trip", "-o", "json")
    assert '"name": "echo"' in as_json.stdout

    described = cli("describe", "meshlet", "echo", "-n", "round-trip")
    assert described.returncode == 0, described.stderr
    assert described.stdout.splitlines()[0].split() == ["Name:", "echo"]
    assert "idleTimeout: 5m" in described.stdout

    deleted = cli("delete", "ml", "client", "-n", "round-trip")
    assert deleted.stdout.strip() == "meshlet.ext.burningxflame.github.com/client deleted"
    by_file = cli("delete", "-f", str(path))
    assert "meshlet.ext.burningxflame.github.com/echo deleted" in by_file.stdout
    assert_clean_failure(by_file, "'client' not found")
    empty = cli("get", "ml", "-n", "round-trip")
    assert empty.returncode == 0 and empty.stdout == ""
    assert "No resources found in round-trip namespace." in empty.stderr


def test_invalid_manifest_prints_every_field_path_and_stores_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(manifest("invalid"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(manifest("invalid", timeout="1d").replace("weight: 10", "weight: -1"))

    result = cli("apply", "-f", str(good), "-f", str(bad))

    assert_clean_failure(result, "nothing was sent")
    problems = [line for line in result.stderr.splitlines() if line.startswith(str(bad))]
    assert any(
        "document 1 (Meshlet invalid/echo)" in p and "spec.server.services[0].idleTimeout" in p
        for p in problems
    ), result.stderr
    assert any("spec.server.canary[1].weight" in p for p in problems), result.stderr
    listed = cli("get", "ml", "-n", "invalid")
    assert listed.stdout == "", "an invalid apply must store nothing"


def test_bad_token_is_a_one_line_401(cli: Cli) -> None:
    result = cli("get", "ml", "-A", "--token", "mlt_not-a-real-token")
    assert_clean_failure(result, "401")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_control_plane_says_so(cli: Cli, cp: ControlPlaneProcess) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = cli("get", "ml", env={"MESHLET_CP": f"https://127.0.0.1:{port}"})
    assert_clean_failure(result, "cannot reach the control plane", f"127.0.0.1:{port}")


def test_missing_configuration_tells_what_to_set(cli: Cli, tmp_path: Path) -> None:
    result = cli("get", "ml", env={"MESHLET_HOME": str(tmp_path / "nowhere")})
    assert_clean_failure(result, "client.json does not exist", "MESHLET_CP")


def test_unknown_kind_and_missing_object_are_clean_errors(cli: Cli) -> None:
    assert_clean_failure(cli("get", "gadgets"), "unknown resource type 'gadgets'")
    assert_clean_failure(cli("describe", "wl", "ghost", "-n", "demo"), "'ghost' not found")


def test_token_create_node_prints_a_pinned_token(cli: Cli, cp: ControlPlaneProcess) -> None:
    result = cli("token", "create", "node", "node-x")
    assert result.returncode == 0, result.stderr
    token, _, pin = result.stdout.strip().partition("#sha256:")
    assert token.startswith("mlt_") and len(pin) == 64
    assert f"--cp {cp.url}" in result.stderr


class StandInAgent:
    """A client socket that answers one handshake with ``code``; after OK it reads the client
    until end of file (half-close), then answers everything upper-cased and closes."""

    def __init__(self, workload_dir: Path, code: ReplyCode) -> None:
        (workload_dir / "client").mkdir(parents=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(workload_dir / "client" / "meshless"))
        self.listener.listen(1)
        self.code = code
        self.service_id: str | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            parser = RequestParser()
            service = None
            while service is None:
                service = parser.feed(conn.recv(1))
            self.service_id = str(service)
            conn.sendall(encode_reply(self.code))
            if self.code is not ReplyCode.OK:
                return
            received = parser.rest
            while chunk := conn.recv(4096):
                received += chunk
            conn.sendall(received.upper())

    def close(self) -> None:
        self.thread.join(timeout=10)
        self.listener.close()


def test_connect_relays_stdin_half_closes_and_prints_the_reply(cli: Cli, tmp_path: Path) -> None:
    agent = StandInAgent(tmp_path / "w", ReplyCode.OK)
    try:
        result = cli(
            "connect", "echo.echo.demo", "--workload-dir", str(tmp_path / "w"), stdin="hi\nthere\n"
        )
    finally:
        agent.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "HI\nTHERE\n"
    assert agent.service_id == "echo.echo.demo"


def test_connect_refusal_names_the_reply_code(cli: Cli, tmp_path: Path) -> None:
    agent = StandInAgent(tmp_path / "w", ReplyCode.ACCESS_DENIED)
    try:
        result = cli(
            "connect", "secret.vault.demo", stdin="", env={"MESHLET_DIR": str(tmp_path / "w")}
        )
    finally:
        agent.close()
    assert_clean_failure(result, "ACCESS_DENIED (5)", "spec.client")


def test_connect_without_agent_explains_where_it_looked(cli: Cli, tmp_path: Path) -> None:
    result = cli("connect", "echo.echo.demo", "-d", str(tmp_path / "none"), stdin="")
    assert_clean_failure(result, str(tmp_path / "none" / "client" / "meshless"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_up_refuses_a_busy_port_and_names_it(cli: Cli, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = cli("up", "--home", str(tmp_path / "home"), "--cp-port", str(port))
    assert_clean_failure(result, f"127.0.0.1:{port} (control plane)", "--cp-port")
    assert not (tmp_path / "home" / "logs").exists(), "nothing may start when a port is busy"


class Output:
    """Collects a child's output lines in a thread, so a test can wait for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.stream = process.stdout
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.stream:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, process: subprocess.Popen[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if process.poll() is not None or time.monotonic() > deadline:
                self.thread.join(timeout=5)
                pytest.fail(f"{needle!r} never appeared; output:\n{self.text}")
            time.sleep(0.1)


def processes_mentioning(text: str) -> list[int]:
    """Pids of running processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks leftover processes in /proc")
def test_up_serves_the_demo_canary_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ports = {name: free_port() for name in ("cp", "tunnel", "admin", "upstream")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLET_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1"})
    argv = [*meshlet_argv(), "up", "--home", str(home)]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    up = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env
    )
    output = Output(up)
    try:
        output.wait_for("Ctrl-C stops everything", up, timeout=120)
        assert "demo check" in output.text and "ok: sent 'hello meshlet'" in output.text

        cli = Cli({**env, "MESHLET_HOME": str(home / "cp")}, tmp_path)
        client_dir = home / "run" / "local" / "demo" / "client"
        replies = [
            cli("connect", "echo.echo.demo", "-d", str(client_dir), stdin="hi\n").stdout
            for _ in range(5)
        ]
        assert set(replies) <= {"v1: hi\n", "v2: hi\n"}, replies

        with socket.create_connection(("127.0.0.1", ports["upstream"]), timeout=10) as sock:
            sock.sendall(b"over tcp\n")
            reply = sock.makefile("rb").readline()
        assert reply in (b"v1: over tcp\n", b"v2: over tcp\n")

        listed = cli("get", "ml", "-A")
        assert {"client", "echo"} <= {row.split()[1] for row in listed.stdout.splitlines()[1:]}
        assert "canary" in (home / "demo.yaml").read_text()

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0, output.text
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        output.thread.join(timeout=5)
        output.stream.close()
    assert "stopped." in output.text
    assert processes_mentioning(str(home)) == [], "meshlet up left processes running"
