"""``jobs submit`` refuses a source it cannot read; ``jobs list/show/cancel`` refuse a
SQLite queue whose directory does not exist instead of creating it. Exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bulkpush.cli import cli

pytestmark = pytest.mark.timeout(60)


def test_submit_refuses_a_missing_source(tmp_path: Path) -> None:
    queue = tmp_path / "data" / "jobs.db"
    missing = tmp_path / "missing.ndjson"
    result = CliRunner().invoke(
        cli, ["jobs", "submit", str(missing), "--stream", "1", "--queue", f"sqlite:///{queue}"]
    )
    assert result.exit_code == 2, result.output
    assert f"bulkpush: error: cannot read {missing}: no such file" in result.output
    assert not queue.parent.exists()  # nothing queued, nothing created


def test_submit_refuses_a_directory_as_a_source(tmp_path: Path) -> None:
    queue = tmp_path / "jobs.db"
    result = CliRunner().invoke(
        cli, ["jobs", "submit", str(tmp_path), "--stream", "1", "--queue", f"sqlite:///{queue}"]
    )
    assert result.exit_code == 2, result.output
    assert f"cannot read {tmp_path}: it is a directory" in result.output


def test_submit_still_creates_the_queue_directory(tmp_path: Path) -> None:
    source = tmp_path / "c.ndjson"
    source.write_text('{"id": "1", "title": "one"}\n')
    queue = tmp_path / "new" / "dir" / "jobs.db"
    result = CliRunner().invoke(
        cli, ["jobs", "submit", str(source), "--stream", "1", "--queue", f"sqlite:///{queue}"]
    )
    assert result.exit_code == 0, result.output
    assert queue.exists()


@pytest.mark.parametrize(
    "command", [["list"], ["list", "--json"], ["show", "some-job"], ["cancel", "some-job"]]
)
def test_read_only_commands_refuse_a_queue_in_a_missing_directory(
    tmp_path: Path, command: list[str]
) -> None:
    folder = tmp_path / "no" / "such" / "dir"
    queue = folder / "x.db"
    result = CliRunner().invoke(cli, ["jobs", *command, "--queue", f"sqlite:///{queue}"])
    assert result.exit_code == 2, result.output
    assert (
        f"bulkpush: error: no queue at {queue}: the directory {folder} does not exist"
        in result.output
    )
    assert not (tmp_path / "no").exists()


def test_the_default_queue_is_not_created_by_jobs_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BULKPUSH_QUEUE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    result = CliRunner().invoke(cli, ["jobs", "list"])
    assert result.exit_code == 2, result.output
    assert "no queue at" in result.output
    assert not (tmp_path / "data").exists()


def test_read_only_commands_open_an_existing_queue(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["jobs", "list", "--queue", f"sqlite:///{tmp_path / 'q.db'}"])
    assert result.exit_code == 0, result.output
    assert result.output == ""
