"""Help texts, the README's usage lines and the CLI's wording agree with what the code does."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from bulkpush import _validation as validation
from bulkpush.cli import cli
from bulkpush.emulator import Emulator, EmulatorConfig
from bulkpush.report import render_summary

from .conftest import bulkpush_cli as run

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
TOKEN = "help-token"

# Help texts that open with a literal value rather than a sentence.
LITERAL_OPENINGS = ("gzip ", "full: ", "sqlite:///", "0 ")


def commands(
    command: click.Command = cli, path: tuple[str, ...] = ("bulkpush",)
) -> Iterator[tuple[str, click.Command]]:
    """Every command of the tree, with its full name."""
    yield " ".join(path), command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from commands(sub, (*path, name))


def options() -> Iterator[tuple[str, click.Option]]:
    for name, command in commands():
        for param in command.params:
            if isinstance(param, click.Option):
                yield f"{name} {param.opts[0]}", param


def test_the_tree_is_walked() -> None:
    names = {name for name, _ in commands()}
    assert {"bulkpush push", "bulkpush emulator", "bulkpush jobs list", "bulkpush worker"} <= names
    assert len(names) > 12


def test_every_option_has_a_help_text() -> None:
    missing = [name for name, option in options() if not (option.help or "").strip()]
    assert missing == []


def test_every_help_text_starts_like_a_sentence() -> None:
    odd = [
        f"{name}: {option.help!r}"
        for name, option in options()
        if option.help
        and not option.help[0].isupper()
        and not option.help.startswith(LITERAL_OPENINGS)
    ]
    assert odd == []


def test_every_command_has_a_help_text_and_its_help_runs() -> None:
    for name, command in commands():
        assert command.help, name
        args = name.split()[1:]
        result = CliRunner().invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_the_named_options_say_what_they_do() -> None:
    helps = {name: option.help or "" for name, option in options()}
    assert helps["bulkpush jobs show --json"].startswith("Print")
    assert "delete from" in helps["bulkpush delete --stream"]
    assert "JSON" in helps["bulkpush jobs list --json"]
    assert "Confirm" in helps["bulkpush streams delete --yes"]
    for flag in (
        "--referenced-min-bytes",
        "--max-streams",
        "--process-duration",
        "--request-log-size",
        "--error-status",
    ):
        assert helps[f"bulkpush emulator {flag}"], flag


def test_quiet_help_and_readme_say_what_quiet_does() -> None:
    helps = {name: option.help or "" for name, option in options()}
    assert "no summary" in helps["bulkpush push --quiet"]
    paragraph = README[README.index("A human summary") :].split("\n\n")[0]
    assert "unless `--quiet`" in paragraph


def test_the_readme_usage_shows_every_format_choice() -> None:
    fmt = next(o for name, o in options() if name == "bulkpush push --format")
    assert isinstance(fmt.type, click.Choice)
    choices = "|".join(str(c) for c in fmt.type.choices)
    assert choices.endswith("rejects")
    assert f"[--format {choices}]" in README


def test_the_readme_documents_streams_delete_yes() -> None:
    usage = README[README.index("## Command line") : README.index("## Library")]
    assert re.search(r"bulkpush streams delete ID --yes", usage)


def test_the_nested_rejection_names_the_flag() -> None:
    assert "--flatten" in validation.MSG_NESTED
    assert "the flatten option" not in validation.MSG_NESTED


def summary_of(**changes: Any) -> str:
    d: dict[str, Any] = {
        "read": 3,
        "accepted": 1,
        "rejected": 1,
        "not_sent": 1,
        "requests": 1,
        "retries": 0,
        "throttled": 0,
        "bytes_read": 100,
        "bytes_sent": 80,
        "duration_s": 1.0,
        "batches": ["b1"],
        "stream": "124773",
        "errors": [],
    }
    d.update(changes)
    return render_summary(d)


def test_the_summary_agrees_in_number() -> None:
    s = summary_of(
        stopped="the API said 403",
        rejects_file="rejects.ndjson",
        rejects_written=1,
        unattributed_total=1,
        unattributed=[
            {"count": 1, "message": "m", "source": "c.ndjson", "first_line": i, "last_line": i}
            for i in range(1, 3)
        ],
    )
    assert "1 product not sent." in s
    assert "Rejects file: rejects.ndjson (1 product)" in s
    assert "Not named by the API: 1 rejected product (" in s
    assert "products)" not in s
    many = summary_of(rejects_file="r.ndjson", rejects_written=2, not_sent=2, stopped="x")
    assert "(2 products)" in many and "2 products not sent." in many
    more = summary_of(
        unattributed_total=6,
        unattributed=[
            {"count": 1, "message": "m", "source": "c.ndjson", "first_line": i, "last_line": i}
            for i in range(1, 7)
        ],
    )
    assert "... and 1 more request\n" in more + "\n"


def test_an_empty_id_is_said_so() -> None:
    def example(pid: Any) -> str:
        errors = [
            {
                "stage": "client",
                "message": validation.MSG_EMPTY_ID,
                "occurrences": 1,
                "examples": [{"source": "c.ndjson", "line": 4, "id": pid}],
            }
        ]
        return next(ln for ln in summary_of(errors=errors).splitlines() if "e.g." in ln)

    assert example("").endswith("c.ndjson:4 (empty id)")
    assert example("sku-1").endswith("c.ndjson:4 (id sku-1)")
    assert example(0).endswith("c.ndjson:4 (id 0)")
    assert example(None).endswith("c.ndjson:4")


@pytest.mark.timeout(120)
async def test_quiet_push_prints_no_summary_and_deletes_agree_in_number(tmp_path: Path) -> None:
    async with Emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emu:
        sid = emu.create_stream("help", "chunked")
        env = {**os.environ, "BULKPUSH_TOKEN": TOKEN, "BULKPUSH_API_URL": emu.url}
        catalog = tmp_path / "c.ndjson"
        catalog.write_text('{"id": "a", "t": "x"}\n{"id": "b", "t": "y"}\n')
        code, out, err = await run("push", str(catalog), "--stream", sid, "-q", env=env)
        assert (code, out, err) == (0, "", "")
        code, out, _ = await run("push", str(catalog), "--stream", sid, env=env)
        assert code == 0 and "accepted" in out  # without -q: the summary
        ids = tmp_path / "ids.txt"
        ids.write_text("a\n")
        code, out, err = await run("delete", "--stream", sid, "--ids", str(ids), env=env)
        assert code == 0, err
        assert out == f"the API deleted 1 of 1 product id of stream {sid} in 1 request\n"
        code, out, err = await run("delete", "--stream", sid, "a", "b", env=env)
        assert code == 0, err
        # "a" is gone already: the API deleted one of the two.
        assert out == f"the API deleted 1 of 2 product ids of stream {sid} in 1 request\n"
