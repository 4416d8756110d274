from __future__ import annotations

import subprocess
import sys

import bulkpush
from bulkpush import errors
from bulkpush.limits import STREAM_API


def test_version_and_help_run() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bulkpush", "--version"], capture_output=True, text=True, check=True
    )
    assert bulkpush.__version__ in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "bulkpush", "--help"], capture_output=True, text=True, check=True
    )
    assert "Usage" in out.stdout


def test_every_error_derives_from_the_root() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.BulkpushError), name
        assert (cls.__doc__ or "").startswith("Raised when"), name


def test_published_limits() -> None:
    assert STREAM_API.max_products_per_request == 10_000
    assert STREAM_API.products_rate_per_s == 30
    assert STREAM_API.batches_rate_per_s == 100
    assert STREAM_API.other_rate_per_s == 5
    assert STREAM_API.max_line_bytes == 2_097_152
