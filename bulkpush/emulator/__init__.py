"""The local API emulator (work in progress)."""

from __future__ import annotations

from bulkpush.emulator.config import EmulatorConfig, Faults

__all__ = ["EmulatorConfig", "Faults"]
