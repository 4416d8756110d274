"""The token: from a file (--token-file, not visible in ps), never in a repr or output."""

from __future__ import annotations

import os
from pathlib import Path

from bulkpush import Secret
from bulkpush.cli import ApiArgs
from bulkpush.emulator import Emulator, EmulatorConfig

from .conftest import bulkpush_cli as cli

TOKEN = "tok-FILE-s3cr3t"


def test_api_args_never_show_the_token() -> None:
    args = ApiArgs(Secret(TOKEN), "http://127.0.0.1:1", None, False, None)
    assert TOKEN not in repr(args) and TOKEN not in str(args)


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


async def test_token_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BULKPUSH_TOKEN"}
    good = write(tmp_path / "token", TOKEN + "\n")
    empty = write(tmp_path / "empty", "\n")
    async with Emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emu:
        emu.create_stream("from a file")
        env["BULKPUSH_API_URL"] = emu.url
        code, out, err = await cli("streams", "list", "--token-file", good, env=env)
        assert code == 0, err
        assert "from a file" in out and TOKEN not in out + err
        # The file wins over a wrong --token.
        code, out, err = await cli(
            "streams", "list", "--token", "nope", "--token-file", good, env=env
        )
        assert code == 0, err
        code, out, err = await cli("streams", "list", "--token-file", empty, env=env)
        assert code == 2 and "--token-file" in err and "no token" in err
        missing = str(tmp_path / "missing")
        code, out, err = await cli("streams", "list", "--token-file", missing, env=env)
        assert code == 2 and "--token-file" in err and "Traceback" not in err
        code, out, err = await cli("streams", "list", env=env)
        assert code == 2 and "--token-file" in err
