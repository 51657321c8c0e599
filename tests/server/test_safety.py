"""Socket safety, one server per socket, stale sockets, peer uid checks, config errors."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.support import Memoryd, RawClient


def test_modes_on_disk(memoryd: Any) -> None:
    directory = memoryd.socket.parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(memoryd.socket.lstat().st_mode)
    assert stat.S_IMODE(memoryd.socket.lstat().st_mode) == 0o600
    lock = memoryd.socket.with_name("memoryd.sock.lock")
    assert lock.exists()
    assert lock.read_text().strip() == str(memoryd.proc.pid)


def test_socket_mode_has_no_window(short_tmp: Path) -> None:
    """bind() runs under umask 0177: the file is 0600 from the start, not chmod-ed later."""
    from sidecar.server import bind_socket

    sock = bind_socket(short_tmp / "s.sock")
    try:
        assert stat.S_IMODE((short_tmp / "s.sock").lstat().st_mode) == 0o600
    finally:
        sock.close()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_refuses_writable_socket_dir(short_tmp: Path, mode: int) -> None:
    run = short_tmp / "run"
    run.mkdir()
    run.chmod(mode)
    server = Memoryd(short_tmp, check_ready=False)
    assert server.proc.wait(timeout=60) == 2
    failed = msgspec.json.decode(server.proc.stdout.readline())
    assert failed["method"] == "system.failed"
    assert failed["params"]["error"]["kind"] == "config"
    assert "writable" in failed["params"]["error"]["message"]
    assert not server.socket.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown a directory to another user")
def test_refuses_socket_dir_owned_by_another_user(short_tmp: Path) -> None:
    run = short_tmp / "run"
    run.mkdir(mode=0o700)
    os.chown(run, 65534, 65534)
    server = Memoryd(short_tmp, check_ready=False)
    assert server.proc.wait(timeout=60) == 2
    assert b"owned by uid 65534" in server.log()


def test_second_instance_is_refused_and_first_keeps_serving(memoryd_factory: Any,
                                                            short_tmp: Path) -> None:
    first = memoryd_factory()
    second = Memoryd(short_tmp, check_ready=False)
    assert second.proc.wait(timeout=60) == 3
    failed = msgspec.json.decode(second.proc.stdout.readline())
    assert failed["params"]["error"]["kind"] == "already_running"
    assert failed["params"]["error"]["socket"] == str(first.socket)
    assert b"another memoryd is serving" in second.log()
    # the live server's socket was not touched
    assert first.call("system.hello")["result"]["pid"] == first.proc.pid


def test_stale_socket_is_removed(memoryd_factory: Any, short_tmp: Path) -> None:
    run = short_tmp / "run"
    run.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(run / "memoryd.sock"))
    stale.close()  # the file stays, nobody listens
    with pytest.raises(ConnectionRefusedError):
        RawClient(run / "memoryd.sock")
    server = memoryd_factory()
    assert server.call("system.hello")["result"]["pid"] == server.proc.pid


def test_refuses_a_non_socket_at_the_path(short_tmp: Path) -> None:
    run = short_tmp / "run"
    run.mkdir(mode=0o700)
    (run / "memoryd.sock").write_text("precious")
    server = Memoryd(short_tmp, check_ready=False)
    assert server.proc.wait(timeout=60) == 2
    assert (run / "memoryd.sock").read_text() == "precious"


@pytest.mark.parametrize("target_exists", [True, False])
def test_lock_file_symlink_is_not_followed(short_tmp: Path, target_exists: bool) -> None:
    run = short_tmp / "run"
    run.mkdir(mode=0o700)
    target = short_tmp / "victim"
    if target_exists:
        target.write_text("precious")
    (run / "memoryd.sock.lock").symlink_to(target)
    server = Memoryd(short_tmp, check_ready=False)
    assert server.proc.wait(timeout=60) == 2
    failed = msgspec.json.decode(server.proc.stdout.readline())
    assert failed["params"]["error"]["kind"] == "config"
    assert "symbolic link" in failed["params"]["error"]["message"]
    # neither created nor truncated through the link
    assert target.read_text() == "precious" if target_exists else not target.exists()
    assert (run / "memoryd.sock.lock").is_symlink()


def test_socket_path_too_long(short_tmp: Path) -> None:
    deep = short_tmp / ("d" * 120)
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--spawned", "--socket",
         str(deep / "memoryd.sock"), "--data-dir", str(short_tmp / "data")],
        capture_output=True, timeout=60)
    assert proc.returncode == 2
    failed = msgspec.json.decode(proc.stdout.splitlines()[0])
    assert "107" in failed["params"]["error"]["message"]


def _connect_as(uid: int, path: Path, method: str = "system.hello") -> bytes:
    """Connect as another uid (a real process with that uid), call ``method`` and return
    the first line."""
    code = (
        "import os, socket, sys\n"
        f"os.setgid({uid}); os.setuid({uid})\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect({str(path)!r})\n"
        "try:\n"
        f"    s.sendall(b'{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"{method}\"}}\\n')\n"
        "except BrokenPipeError:\n"
        "    pass  # a refused peer may be cut off before it sends\n"
        "data = b''\n"
        "while not data.endswith(b'\\n'):\n"
        "    chunk = s.recv(65536)\n"
        "    if not chunk: break\n"
        "    data += chunk\n"
        "sys.stdout.buffer.write(data)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as another uid")
def test_other_uid_refused_unless_allowed(memoryd_factory: Any, short_tmp: Path) -> None:
    server = memoryd_factory()
    # Open the file-system gates so only memoryd's SO_PEERCRED check stands in the way.
    short_tmp.chmod(0o711)
    server.socket.parent.chmod(0o711)
    server.socket.chmod(0o666)
    reply = msgspec.json.decode(_connect_as(65534, server.socket))
    assert reply["error"]["data"]["kind"] == "invalid_request"
    assert "uid 65534" in reply["error"]["message"]
    server.stop()

    root2 = short_tmp / "allowed"
    root2.mkdir()
    allowed = memoryd_factory(root=root2, env={"MEMORYD_ALLOWED_UIDS": "[65534]"})
    root2.chmod(0o711)
    allowed.socket.parent.chmod(0o711)
    allowed.socket.chmod(0o666)
    reply = msgspec.json.decode(_connect_as(65534, allowed.socket))
    assert reply["result"]["pid"] == allowed.proc.pid
    # an allowed uid still may not stop memoryd: system.shutdown is for its own uid only
    refused = msgspec.json.decode(_connect_as(65534, allowed.socket, "system.shutdown"))
    assert refused["error"]["data"]["kind"] == "validation"
    assert allowed.call("system.hello")["result"]["pid"] == allowed.proc.pid


def test_shutdown_from_same_uid(memoryd: Any) -> None:
    with memoryd.connect() as c:
        assert c.result("system.shutdown") == {}
    assert memoryd.proc.wait(timeout=30) == 0
    assert not memoryd.socket.exists()


def test_invalid_config_names_the_key(short_tmp: Path) -> None:
    config = short_tmp / "memoryd.toml"
    config.write_text('max_in_flight = "lots"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--spawned", "--config", str(config),
         "--socket", str(short_tmp / "run" / "s.sock")],
        capture_output=True, timeout=60)
    assert proc.returncode == 2
    failed = msgspec.json.decode(proc.stdout.splitlines()[0])
    assert failed["params"]["error"]["kind"] == "config"
    assert "max_in_flight" in failed["params"]["error"]["message"]
    assert len(proc.stdout.splitlines()) == 1


def test_config_precedence_and_masking(short_tmp: Path) -> None:
    config = short_tmp / "memoryd.toml"
    config.write_text('collection = "from_file"\nmax_in_flight = 7\nqdrant_api_key = "s3cret"\n'
                      '[embedding]\nprovider = "openai"\napi_key = "sk-very-secret"\n')
    env = {**os.environ, "MEMORYD_MAX_IN_FLIGHT": "9", "MEMORYD_EMBEDDING__MODEL": "m-env",
           "MEMORYD_BIN": "/opt/memoryd"}  # another tool's variable: ignored, with a warning
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "config", "show", "--config", str(config)],
        capture_output=True, timeout=60, env=env, check=True)
    shown = msgspec.json.decode(proc.stdout)
    assert shown["collection"] == "from_file"  # file over default
    assert shown["max_in_flight"] == 9  # env over file
    assert shown["embedding"]["model"] == "m-env"
    assert shown["qdrant_api_key"] == "***"
    assert shown["embedding"]["api_key"] == "***"
    assert b"secret" not in proc.stdout
    assert b"ignoring environment variable MEMORYD_BIN" in proc.stderr


def test_missing_explicit_config_file(short_tmp: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "config", "show", "--config",
         str(short_tmp / "nope.toml")], capture_output=True, timeout=60)
    assert proc.returncode == 2
    assert b"does not exist" in proc.stderr


def test_cli_call_and_health(memoryd: Any) -> None:
    base = [sys.executable, "-m", "sidecar"]
    sock = ["--socket", str(memoryd.socket)]
    ok = subprocess.run([*base, "call", *sock, "system.hello"], capture_output=True,
                        timeout=60)
    assert ok.returncode == 0
    assert msgspec.json.decode(ok.stdout)["pid"] == memoryd.proc.pid
    bad = subprocess.run([*base, "call", *sock, "system.hello", '{"x":1}'],
                         capture_output=True, timeout=60)
    assert bad.returncode == 1
    assert msgspec.json.decode(bad.stdout)["data"]["kind"] == "validation"
    health = subprocess.run([*base, "health", *sock], capture_output=True, timeout=60)
    assert health.returncode == 0
    memoryd.stop()
    down = subprocess.run([*base, "health", *sock], capture_output=True, timeout=60)
    assert down.returncode == 1


def _serve_once(short_tmp: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--spawned", "--socket",
         str(short_tmp / "run" / "s.sock"), "--data-dir", str(short_tmp / "data"), *args],
        capture_output=True, timeout=60, env={**os.environ, "XDG_CONFIG_HOME": str(short_tmp)})


def test_collection_name_cannot_leave_the_data_dir(short_tmp: Path) -> None:
    # The embedded store keeps a collection in a directory of that name under the data dir.
    config = short_tmp / "memoryd.toml"
    config.write_text('collection = "../outside"\n')
    proc = _serve_once(short_tmp, "--config", str(config))
    assert proc.returncode == 2
    failed = msgspec.json.decode(proc.stdout.splitlines()[0])
    assert failed["params"]["error"]["kind"] == "config"
    assert "collection" in failed["params"]["error"]["message"]
    assert not (short_tmp / "outside").exists()


def test_reembed_state_naming_a_path_outside_is_refused(short_tmp: Path) -> None:
    # reembed.json's old collections are deleted by `reembed --drop-old`: a name that is a
    # path must stop memoryd at start, not reach rmtree later.
    victim = short_tmp / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    data = short_tmp / "data"
    data.mkdir()
    (data / "reembed.json").write_text(
        '{"base": "agent_memory", "old": ["../../victim"], "replaced": ["../../victim"]}')
    proc = _serve_once(short_tmp)
    failed = msgspec.json.decode(proc.stdout.splitlines()[0])
    assert failed["method"] == "system.failed"
    assert "reembed.json is unreadable" in failed["params"]["error"]["message"]
    assert "$.old[0]" in failed["params"]["error"]["message"]
    assert (victim / "keep").exists()


def test_collection_name_refuses_control_characters(short_tmp: Path) -> None:
    # (a pattern's $ would also match before a final newline)
    config = short_tmp / "memoryd.toml"
    config.write_text('collection = "memories\\n"\n')
    proc = _serve_once(short_tmp, "--config", str(config))
    assert proc.returncode == 2
    assert b"collection" in proc.stdout.splitlines()[0]
