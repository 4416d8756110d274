"""Every numeric flag is checked (finite, in range) and refused with its own name, exit 2.

``push`` and ``jobs submit`` run in-process through click's CliRunner (a value
let through would reach a closed port or the queue and exit otherwise);
``worker`` and ``emulator`` run as processes with a timeout, since a value
let through would make them serve until stopped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bulkpush.cli import cli

pytestmark = pytest.mark.timeout(120)

# A value let through would make push try this closed port, once.
PUSH_TAIL = ["--token", "t", "--api-url", "http://127.0.0.1:9", "--max-attempts", "1"]

BAD_PUSH_VALUES = [
    ("--rate", "nan"),
    ("--rate", "inf"),
    ("--rate", "0"),
    ("--rate", "-1"),
    ("--request-mb", "-5"),
    ("--request-mb", "0"),
    ("--request-mb", "nan"),
    ("--request-mb", "201"),
    ("--lock-deadline", "-1"),
    ("--lock-deadline", "nan"),
    ("--lock-deadline", "inf"),
    ("--gzip-level", "99"),
    ("--gzip-level", "-3"),
    ("--gzip-level", "x"),
    ("--max-products", "0"),
    ("--max-products", "10001"),
    ("--max-attempts", "0"),
    ("--max-attempts", "101"),
]


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "c.ndjson"
    path.write_text('{"id": "1", "title": "one"}\n')
    return path


def assert_refused(code: int, output: str, flag: str) -> None:
    assert code == 2, output
    assert flag in output, output
    assert "Traceback" not in output, output


@pytest.mark.parametrize(("flag", "value"), BAD_PUSH_VALUES)
def test_push_refuses_a_bad_number_naming_the_flag(catalog: Path, flag: str, value: str) -> None:
    args = ["push", str(catalog), "--stream", "1", *PUSH_TAIL, flag, value]
    result = CliRunner().invoke(cli, args)
    assert_refused(result.exit_code, result.output, flag)


SUBMIT_BAD_VALUES = [
    *BAD_PUSH_VALUES,
    ("--parts", "0"),
    ("--parts", "10001"),
    ("--max-in-flight", "0"),
    ("--max-in-flight", "257"),
]


@pytest.mark.parametrize(("flag", "value"), SUBMIT_BAD_VALUES)
def test_jobs_submit_refuses_a_bad_number_naming_the_flag(
    catalog: Path, tmp_path: Path, flag: str, value: str
) -> None:
    queue = f"sqlite:///{tmp_path / 'q' / 'jobs.db'}"
    args = ["jobs", "submit", str(catalog), "--stream", "1", "--queue", queue, flag, value]
    result = CliRunner().invoke(cli, args)
    assert_refused(result.exit_code, result.output, flag)


def test_the_messages_say_what_is_wrong(catalog: Path) -> None:
    def refusal(flag: str, value: str) -> str:
        args = ["push", str(catalog), "--stream", "1", *PUSH_TAIL, flag, value]
        return CliRunner().invoke(cli, args).output

    assert "Invalid value for '--rate': 'nan' is not a finite number." in refusal("--rate", "nan")
    assert "Invalid value for '--rate': 0.0 is not in the range x>0." in refusal("--rate", "0")
    assert "Invalid value for '--request-mb': -5.0 is not in the range 0<x<=200.0." in refusal(
        "--request-mb", "-5"
    )
    assert "target_bytes" not in refusal("--request-mb", "-5")
    assert "Invalid value for '--gzip-level': gzip level 99 is out of range" in refusal(
        "--gzip-level", "99"
    )


def test_good_numbers_still_pass(catalog: Path, tmp_path: Path) -> None:
    queue = f"sqlite:///{tmp_path / 'jobs.db'}"
    args = ["jobs", "submit", str(catalog), "--stream", "1", "--queue", queue]
    args += ["--rate", "12.5", "--request-mb", "20", "--lock-deadline", "0"]
    args += ["--gzip-level", "1", "--max-products", "10000", "--parts", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``bulkpush ARGS``; a command that starts serving instead of refusing fails here."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "bulkpush", *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"bulkpush {' '.join(args)} accepted the value and kept running: {exc}")


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--poll", "0"), ("--poll", "nan"), ("--lease-ttl", "-1"), ("--lease-ttl", "inf")],
)
def test_worker_refuses_a_bad_number_naming_the_flag(tmp_path: Path, flag: str, value: str) -> None:
    result = run("worker", "--queue", f"sqlite:///{tmp_path / 'jobs.db'}", flag, value)
    assert_refused(result.returncode, result.stderr, flag)


EMULATOR_BAD_VALUES = [
    ("--port", "-1"),
    ("--port", "65536"),
    ("--rate-products", "0"),
    ("--rate-products", "nan"),
    ("--rate-batches", "inf"),
    ("--rate-other", "-1"),
    ("--latency", "-1"),
    ("--latency", "nan"),
    ("--referenced-min-bytes", "-1"),
    ("--referenced-max-bytes", "-1"),
    ("--max-streams", "0"),
    ("--error-rate", "2"),
    ("--error-rate", "nan"),
    ("--drop-rate", "-0.1"),
    ("--fault-latency", "inf"),
    ("--throttle-storm", "-1"),
    ("--lock", "nan"),
    ("--process-duration", "-1"),
    ("--request-log-size", "0"),
    ("--seed", "x"),
]


@pytest.mark.parametrize(("flag", "value"), EMULATOR_BAD_VALUES)
def test_emulator_refuses_a_bad_number_naming_the_flag(flag: str, value: str) -> None:
    port = [] if flag == "--port" else ["--port", "0"]
    result = run("emulator", *port, flag, value)
    assert_refused(result.returncode, result.stderr, flag)


def test_emulator_error_rate_message_names_the_flag() -> None:
    result = run("emulator", "--port", "0", "--error-rate", "2")
    assert "Invalid value for '--error-rate': 2.0 is not in the range 0<=x<=1." in result.stderr
    assert "error_rate must" not in result.stderr


def test_emulator_referenced_bounds_are_checked_together() -> None:
    result = run(
        "emulator", "--port", "0", "--referenced-min-bytes", "5", "--referenced-max-bytes", "4"
    )
    assert_refused(result.returncode, result.stderr, "--referenced-min-bytes")
    assert "--referenced-min-bytes (5) must not exceed --referenced-max-bytes (4)" in result.stderr


# -- --flatten, --validation, --separator ------------------------------------------


@pytest.mark.parametrize("command", [["push"], ["jobs", "submit"]])
def test_flatten_with_light_validation_is_refused_in_flag_words(
    catalog: Path, tmp_path: Path, command: list[str]
) -> None:
    args = [*command, str(catalog), "--stream", "1", "--flatten", "--validation", "light"]
    args += PUSH_TAIL if command == ["push"] else ["--queue", f"sqlite:///{tmp_path / 'q.db'}"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "--flatten needs --validation full" in result.output
    assert "level='full'" not in result.output


@pytest.mark.parametrize("command", [["push"], ["jobs", "submit"]])
def test_separator_without_flatten_is_refused(
    catalog: Path, tmp_path: Path, command: list[str]
) -> None:
    queue = f"sqlite:///{tmp_path / 'q.db'}"
    tail = PUSH_TAIL if command == ["push"] else ["--queue", queue]
    result = CliRunner().invoke(
        cli, [*command, str(catalog), "--stream", "1", *tail, "--separator", "_"]
    )
    assert result.exit_code == 2, result.output
    assert "--separator needs --flatten" in result.output
    if command == ["jobs", "submit"]:
        result = CliRunner().invoke(
            cli, [*command, str(catalog), "--stream", "1", *tail, "--separator", "_", "--flatten"]
        )
        assert result.exit_code == 0, result.output


def test_an_empty_separator_is_refused_naming_the_flag(catalog: Path) -> None:
    args = ["push", str(catalog), "--stream", "1", *PUSH_TAIL, "--flatten", "--separator", ""]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "--separator must not be empty" in result.output
