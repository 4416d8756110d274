"""A local emulator of the Productsup Stream API and the Platform API subset a push needs.

It behaves as the Productsup Stream API and Platform API references
document ("API Standards", "Uploading Data", "Invalid batch", "Rate limiting",
...): JSON:API answers, validation messages, rate limits with their headers,
stream statuses, batches and a simulated site import, plus fault injection
and inspection endpoints. See ``docs/emulator.md``.

Start it in-process::

    async with Emulator(EmulatorConfig(port=0)) as emu:
        emu.url  # "http://127.0.0.1:PORT"

or from the command line: ``bulkpush emulator --port 8080``. It imports
nothing of the client but :mod:`bulkpush.limits`.
"""

from __future__ import annotations

from bulkpush.emulator.config import EmulatorConfig, Faults
from bulkpush.emulator.server import Emulator, build_app
from bulkpush.emulator.state import LoggedRequest

__all__ = ["Emulator", "EmulatorConfig", "Faults", "LoggedRequest", "build_app"]
