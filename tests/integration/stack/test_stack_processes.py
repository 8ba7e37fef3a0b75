"""The stack's process machinery with small real processes (Python's http.server and friends):
start-up waits on health, fails with a clear error and leaves nothing running, `down` stops
exactly what `up` started, the process list is pluggable, and the config refuses clashes."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mainsail.config import ConfigError, ProjectConfig, parse_config
from mainsail.stack import providers
from mainsail.stack.manager import down, status, up
from mainsail.stack.process import ProcessSpec, StackError, read_state
from tests.support.stack import free_port

pytestmark = pytest.mark.integration


TEST_PROVIDERS = ("web", "api", "ok", "broken", "sleeper")


@pytest.fixture
def only_custom_providers() -> Iterator[None]:
    """Test providers are registered by each test and removed afterwards."""
    try:
        yield
    finally:
        for name in TEST_PROVIDERS:
            providers.unregister_provider(name)


def _cfg(tmp: Path, *parts: str, **stack: object) -> ProjectConfig:
    raw = {
        "name": "demo",
        "data": {"path": "x.parquet", "target": "y"},
        "stack": {
            "data_dir": str(tmp / "stack"),
            "startup_timeout_s": 5,
            "providers": list(parts),
            **stack,
        },
    }
    return parse_config(raw, base_dir=tmp)


def _http_server(name: str, port: int, delay: float = 0.0) -> ProcessSpec:
    code = (
        f"import time, http.server; time.sleep({delay}); "
        f"http.server.ThreadingHTTPServer(('127.0.0.1', {port}), "
        "http.server.SimpleHTTPRequestHandler).serve_forever()"
    )
    return ProcessSpec(
        name=name,
        argv=[sys.executable, "-c", code],
        port=port,
        health_url=f"http://127.0.0.1:{port}/",
    )


def test_up_status_down_with_registered_providers(
    tmp_path: Path, only_custom_providers: None
) -> None:
    ports = [free_port(), free_port()]
    providers.register_provider("web", lambda ctx: [_http_server("web", ports[0], 0.5)], order=2)
    providers.register_provider("api", lambda ctx: [_http_server("api", ports[1])], order=1)
    cfg = _cfg(tmp_path, "web", "api")
    started = up(cfg)
    try:
        assert [p.name for p in started] == ["api", "web"]  # by order
        rows = status(cfg)
        assert [(r["name"], r["port"], r["health"]) for r in rows] == [
            ("api", ports[1], "healthy"),
            ("web", ports[0], "healthy"),
        ]
        with pytest.raises(StackError, match="already running"):
            up(cfg)
    finally:
        results = down(cfg)
    assert results == [("web", "stopped"), ("api", "stopped")]
    assert not any(psutil.pid_exists(p.pid) and p.alive() for p in started)
    assert read_state(cfg.stack.data_dir.resolve()) == []
    assert down(cfg) == []  # nothing left to stop


def test_a_process_that_dies_fails_up_with_its_log_and_stops_the_others(
    tmp_path: Path, only_custom_providers: None
) -> None:
    port = free_port()
    providers.register_provider("ok", lambda ctx: [_http_server("ok", port)], order=1)
    broken = ProcessSpec(
        name="broken",
        argv=[sys.executable, "-c", "import sys; print('bad setting xyz'); sys.exit(3)"],
        health_url=f"http://127.0.0.1:{free_port()}/",
    )
    providers.register_provider("broken", lambda ctx: [broken], order=2)
    cfg = _cfg(tmp_path, "ok", "broken")
    with pytest.raises(StackError, match=r"broken exited during start-up[\s\S]*bad setting xyz"):
        up(cfg)
    assert read_state(cfg.stack.data_dir.resolve()) == []
    time.sleep(0.2)
    assert not any(
        c.laddr.port == port for c in psutil.net_connections("tcp") if c.status == "LISTEN"
    )


def test_a_process_that_never_gets_healthy_times_out_clearly(
    tmp_path: Path, only_custom_providers: None
) -> None:
    never = ProcessSpec(
        name="sleeper",
        argv=[sys.executable, "-c", "import time; time.sleep(60)"],
        health_url=f"http://127.0.0.1:{free_port()}/ready",
        startup_timeout_s=1.0,
    )
    providers.register_provider("sleeper", lambda ctx: [never])
    cfg = _cfg(tmp_path, "sleeper")
    with pytest.raises(
        StackError, match=r"sleeper not healthy after 1s \(http://.*/ready: no answer\)"
    ):
        up(cfg)
    assert read_state(cfg.stack.data_dir.resolve()) == []


def test_a_taken_port_is_reported_before_anything_starts(
    tmp_path: Path, only_custom_providers: None
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        providers.register_provider("web", lambda ctx: [_http_server("web", taken)])
        cfg = _cfg(tmp_path, "web")
        with pytest.raises(StackError, match=f"web: port {taken} on 127.0.0.1 is already in use"):
            up(cfg)
    assert not (cfg.stack.data_dir / "logs" / "web.log").exists()


def test_down_never_signals_a_reused_pid(tmp_path: Path, only_custom_providers: None) -> None:
    port = free_port()
    providers.register_provider("web", lambda ctx: [_http_server("web", port)])
    cfg = _cfg(tmp_path, "web")
    (running,) = up(cfg)
    state_file = cfg.stack.data_dir.resolve() / "state.json"
    text = state_file.read_text()
    # Pretend the recorded process started at another time: it is "someone else's" pid now.
    state_file.write_text(text.replace(str(running.create_time), str(running.create_time - 100)))
    assert down(cfg) == [("web", "not running")]
    assert psutil.Process(running.pid).is_running()
    psutil.Process(running.pid).terminate()
    psutil.Process(running.pid).wait(5)


def test_unknown_stack_part_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"unknown part\(s\) \['nope'\]; registered: .*router"):
        up(_cfg(tmp_path, "router", "nope"))


@pytest.mark.parametrize(
    ("stack", "message"),
    [
        (
            {"router": {"port": 8081}},
            "stack.champion.http uses port 8081, already used by stack.router.port",
        ),
        ({"router": {"weights": {"canary": 5}}}, "unknown variant(s) ['canary']"),
        ({"router": {"weights": {"champion": 0, "challenger": 0}}}, "at least one variant"),
        ({"router": {"token_env": "not a name"}}, "stack.router.token_env"),
        ({"champion": {"http": 1}}, "stack.champion.grpc: required key is missing"),
        ({"kubernetes": {"memory": "lots"}}, "stack.kubernetes.memory"),
    ],
)
def test_stack_config_errors_name_the_key(
    tmp_path: Path, stack: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path, **stack)
    assert message in str(err.value)


def test_feature_server_part_runs_feast_serve_on_the_configured_port(tmp_path: Path) -> None:
    repo = tmp_path / "feature_repo"
    repo.mkdir()
    raw = {
        "name": "demo",
        "data": {"path": "x.parquet", "target": "y"},
        "features": {"repo_dir": str(repo), "server_port": 6777},
        "stack": {"data_dir": str(tmp_path / "stack"), "feature_server": True},
    }
    cfg = parse_config(raw, base_dir=tmp_path)
    ctx = providers.StackContext(config=cfg, data_dir=tmp_path / "stack")
    with pytest.raises(StackError, match=r"feature_store.yaml does not exist"):
        providers._feature_server(ctx)
    (repo / "feature_store.yaml").write_text("project: demo\n")
    (spec,) = providers._feature_server(ctx)
    assert spec.argv[1:] == [
        "-c",
        str(repo),
        "serve",
        "-h",
        "127.0.0.1",
        "-p",
        "6777",
        "--no-access-log",
    ]
    assert spec.health_url == "http://127.0.0.1:6777/health"
    cfg.stack.feature_server = False
    assert providers._feature_server(ctx) == []
