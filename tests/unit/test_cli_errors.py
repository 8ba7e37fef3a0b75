"""How a user-facing error reaches the terminal or a log."""

from __future__ import annotations

import io

import typer
from rich.console import Console

from mainsail.cli import common


def test_an_error_is_one_line_whatever_the_width_so_its_phrases_can_be_searched(
    monkeypatch,
) -> None:
    # Piped stderr is an 80-column console: a long path used to push "did you mean" across a
    # hard line break, wherever the path happened to end (a test failed on a longer tmp path).
    out = io.StringIO()
    monkeypatch.setattr(common, "err_console", Console(file=out, width=80, color_system=None))
    path = "/tmp/" + "p" * 70 + "/churn.parquet"
    message = f"target column 'churnd' is not in {path}; did you mean 'churned'?; [x]"
    assert isinstance(common.fail(message), typer.Exit)
    assert out.getvalue() == f"error: {message}\n"  # one line, the brackets not Rich markup


def test_promote_names_a_feedback_store_it_cannot_open_and_a_forever_without_watch(
    tmp_path,
) -> None:
    from typer.testing import CliRunner

    from mainsail.cli.main import app

    runner = CliRunner()
    missing = tmp_path / "no-such-dir"
    args = ["promote", "configs/churn.yaml", "--set", "promotion.metrics_port=null"]
    opened = runner.invoke(app, [*args, "--watch", "--set", f"stack.data_dir={missing}"])
    assert opened.exit_code == 2  # `fail`: a usage or input error, no traceback
    assert "Traceback" not in opened.output
    assert f"the feedback store sqlite:///{missing}/feedback.db cannot be opened" in " ".join(
        opened.output.split()
    )
    alone = runner.invoke(app, [*args, "--forever"])
    assert alone.exit_code == 2 and "--forever keeps a --watch going" in alone.output
    # --candidate marks what --publish makes: refused before an hour of training without it.
    unpublished = runner.invoke(app, ["run", "configs/churn.yaml", "--candidate"])
    assert unpublished.exit_code == 2
    assert "--candidate marks the version --publish makes" in unpublished.output


def test_a_forever_watch_prints_errors_and_reasons_with_brackets_as_they_are(
    monkeypatch,
) -> None:
    # A look's error (a driver's, an HTTP client's) may hold "[/...]", which Rich would read as
    # a closing tag and raise on: the controller pod would crash on the message of an error it
    # was meant to ride out.
    from typer.testing import CliRunner

    from mainsail.cli.main import app
    from mainsail.promotion import controller as module
    from mainsail.promotion.ab import Decision

    class Watching:
        def watch(self, interval_s, *, until_final, timeout_s, report, on_error, stop):
            assert until_final is False and on_error is not None
            on_error(ConnectionError("refused [/x] [Errno 111]"))
            report(Decision("keep_testing", "waiting [/y]", None))

    monkeypatch.setattr(module, "build_controller", lambda *a, **k: Watching())
    args = ["promote", "configs/churn.yaml", "--watch", "--forever"]
    result = CliRunner().invoke(app, [*args, "--set", "promotion.metrics_port=null"])
    assert result.exit_code == 0, result.output
    assert "look failed: ConnectionError: refused [/x] [Errno 111]" in result.output
    assert "keep_testing: waiting [/y]" in result.output
