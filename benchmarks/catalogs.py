"""Generated, realistic catalogs for the benchmarks, cached on disk.

``catalog(n, kind)`` returns the path of an NDJSON file of ``n`` products
written by :func:`bulkpush.samples.write_catalog`: ``kind="regular"`` products
are about 1 KB (20 attributes: titles, descriptions, prices, URLs, GTINs),
``kind="small"`` about 125 bytes (5 attributes; ``bulkpush.samples`` calls
them "about 200 bytes"), ``kind="small200"`` about 200 bytes (the small
products plus a product link and a GTIN, written here). Files are cached under the cache directory
(``benchmarks/.cache`` unless ``BULKPUSH_BENCH_CACHE`` or ``--cache`` says),
named by kind, size and seed, so repeated runs do not regenerate them. A file
is written under a temporary name and renamed, so a run that is killed never
leaves a half-written catalog behind, and two runs may share the cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import orjson

from bulkpush.samples import iter_products, write_catalog

Kind = Literal["regular", "small", "small200"]

DEFAULT_CACHE = Path(__file__).resolve().parent / ".cache"
SEED = 1
# Part of the cache key: bump it when bulkpush.samples changes what it writes
# (2: descriptions drawn from a long Zipf text instead of 512 repeated ones).
GENERATION = 2


def cache_dir() -> Path:
    """Where catalogs are kept: ``$BULKPUSH_BENCH_CACHE`` or ``benchmarks/.cache``."""
    return Path(os.environ.get("BULKPUSH_BENCH_CACHE") or DEFAULT_CACHE)


def catalog(n: int, kind: Kind = "regular", *, seed: int = SEED) -> Path:
    """The path of a cached NDJSON catalog of ``n`` products, generated when absent."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{kind}-{n}-seed{seed}-g{GENERATION}.ndjson"
    if path.exists():
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # In a child process: generating takes ~100 MB that the suite's own process
        # should not keep (a child's ru_maxrss starts from its parent's peak).
        subprocess.run(
            [sys.executable, "-m", "benchmarks.catalogs", str(tmp), str(n), kind, str(seed)],
            check=True,
            cwd=DEFAULT_CACHE.parent.parent,
        )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write one catalog (what catalog() runs).")
    parser.add_argument("path")
    parser.add_argument("n", type=int)
    parser.add_argument("kind", choices=["regular", "small", "small200"])
    parser.add_argument("seed", type=int)
    args = parser.parse_args(argv)
    if args.kind == "small200":
        _write_small200(args.path, args.n, args.seed)
    else:
        write_catalog(args.path, args.n, seed=args.seed, size=args.kind)


def _write_small200(path: str, n: int, seed: int) -> None:
    """About 200 bytes a product: a small product with its link and GTIN."""
    with open(path, "wb") as fh:
        batch: list[bytes] = []
        for i, line in enumerate(iter_products(n, seed=seed, size="small")):
            product = orjson.loads(line)
            product["link"] = f"https://shop.example.com/p/{product['id'].lower()}"
            product["gtin"] = f"{4_000_000_000_000 + (i * 7919 + seed) % 10**12}"
            batch.append(orjson.dumps(product))
            if len(batch) >= 10_000:
                fh.write(b"\n".join(batch) + b"\n")
                batch = []
        if batch:
            fh.write(b"\n".join(batch) + b"\n")


def describe(path: Path) -> dict[str, float | int | str]:
    """Products, size and mean product size of a cached catalog (for the results)."""
    kind, n, _ = path.stem.split("-", 2)
    size = path.stat().st_size
    return {
        "kind": kind,
        "products": int(n),
        "mb": round(size / 1e6, 3),
        "mean_product_bytes": round(size / int(n) - 1, 1),
    }


if __name__ == "__main__":
    main()
