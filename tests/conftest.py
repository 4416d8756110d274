"""Shared fixtures: a started emulator, and a factory for emulators with other settings."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bulkpush.emulator import Emulator, EmulatorConfig

TEST_TOKEN = "test-token"

EmulatorFactory = Callable[[EmulatorConfig], Awaitable[Emulator]]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """A started emulator accepting the token ``test-token``, with the published limits."""
    async with Emulator(EmulatorConfig(tokens=frozenset({TEST_TOKEN}))) as emu:
        yield emu


@pytest.fixture
async def emulator_factory() -> AsyncIterator[EmulatorFactory]:
    """Start emulators with any :class:`EmulatorConfig`; all are stopped after the test."""
    started: list[Emulator] = []

    async def make(config: EmulatorConfig) -> Emulator:
        emu = Emulator(config)
        await emu.start()
        started.append(emu)
        return emu

    yield make
    for emu in reversed(started):
        await emu.aclose()


async def bulkpush_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``python -m bulkpush ARGS`` in a fresh process: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkpush", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
