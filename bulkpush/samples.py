"""Realistic sample catalogs, for the demo, the tests and the benchmarks.

Products look like a retailer's feed: an id, title, description, brand,
price and sale price, availability, GTIN, category path, image links, and a
handful of attributes; about 1 KB each (``size="regular"``) or about 200
bytes (``size="small"``). Deterministic for a seed.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Iterator
from typing import Any, Literal

import orjson

__all__ = ["BROKEN_KINDS", "iter_products", "write_catalog"]

_BRANDS = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay"]
_CATEGORIES = [
    "Apparel & Accessories > Clothing > Shirts & Tops",
    "Apparel & Accessories > Shoes",
    "Electronics > Audio > Headphones",
    "Home & Garden > Kitchen & Dining > Cookware",
    "Sporting Goods > Outdoor Recreation > Camping",
    "Toys & Games > Puzzles",
    "Health & Beauty > Personal Care > Hair Care",
]
_COLORS = ["black", "white", "red", "navy", "olive", "grey", "sand", "teal"]
_SIZES = ["XS", "S", "M", "L", "XL", "XXL"]
_WORDS = [
    "durable",
    "lightweight",
    "breathable",
    "classic",
    "modern",
    "premium",
    "organic",
    "cotton",
    "recycled",
    "waterproof",
    "adjustable",
    "ergonomic",
    "compact",
    "everyday",
    "essential",
    "soft",
    "stretch",
    "slim",
    "relaxed",
    "vintage",
    "handmade",
    "sustainable",
    "insulated",
    "quick-dry",
    "travel",
]

_SYLLABLES = [c + v for c in "bcdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


@functools.cache
def _text() -> list[str]:
    """A long text for descriptions, drawn once (on first use: 0.2 s).

    Words come from a vocabulary of 3,000 made-up words with Zipf frequencies,
    like real prose; a description is a run of it. That is varied enough that
    gzip does not find whole descriptions again (a few hundred repeated texts
    compress far better than real catalogs do) and cheap per product: building
    each description word by word would make generating a large catalog
    slower than pushing it.
    """
    pool = random.Random(12345)
    vocabulary = sorted(
        {"".join(pool.choices(_SYLLABLES, k=pool.randint(1, 4))) for _ in range(3_200)}
    )[:3_000]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    return pool.choices(vocabulary, weights=weights, k=100_000)


# The deliberately broken products the demo mixes in, one kind each.
BROKEN_KINDS = (
    "syntax",  # invalid JSON
    "missing_id",
    "empty_id",
    "nested",  # a nested object: the API does not support it
    "too_large",  # over the API's 1 MB product limit
)


def _product(i: int, rng: random.Random, size: Literal["regular", "small"]) -> dict[str, Any]:
    brand = rng.choice(_BRANDS)
    price = round(rng.uniform(2, 400), 2)
    pid = f"SKU-{i:09d}"
    if size == "small":
        return {
            "id": pid,
            "title": f"{brand} {rng.choice(_WORDS)} item {i}",
            "price": f"{price:.2f} EUR",
            "availability": rng.choice(["in stock", "out of stock", "preorder"]),
            "brand": brand,
        }
    text = _text()
    start = rng.randrange(len(text) - 70)
    words = " ".join(text[start : start + rng.randint(45, 65)]).capitalize() + "."
    color = rng.choice(_COLORS)
    return {
        "id": pid,
        "title": f"{brand} {rng.choice(_WORDS)} {rng.choice(_WORDS)} {color} {i}",
        "description": words,
        "brand": brand,
        "price": f"{price:.2f} EUR",
        "sale_price": f"{price * 0.8:.2f} EUR",
        "availability": rng.choice(["in stock", "out of stock", "preorder"]),
        "condition": "new",
        "gtin": f"{rng.randrange(10**12, 10**13)}",
        "mpn": f"{brand[:3].upper()}-{rng.randrange(10**6):06d}",
        "google_product_category": rng.choice(_CATEGORIES),
        "link": f"https://shop.example.com/p/{pid.lower()}",
        "image_link": f"https://cdn.example.com/img/{pid.lower()}.jpg",
        "additional_image_link": f"https://cdn.example.com/img/{pid.lower()}-2.jpg",
        "color": color,
        "size": rng.choice(_SIZES),
        "material": rng.choice(["cotton", "polyester", "steel", "wood", "leather"]),
        "shipping_weight": f"{rng.uniform(0.1, 5):.2f} kg",
        "stock": rng.randrange(0, 500),
        "rating": round(rng.uniform(1, 5), 1),
    }


def _broken(kind: str, i: int) -> bytes:
    pid = f"SKU-{i:09d}"
    if kind == "syntax":
        return f'{{"id":"{pid}","title":"Broken product {i}","price":15", "size":"XL"}}'.encode()
    if kind == "missing_id":
        return orjson.dumps({"sku": pid, "title": f"Product without id {i}"})
    if kind == "empty_id":
        return orjson.dumps({"id": "", "title": f"Product with an empty id {i}"})
    if kind == "nested":
        return orjson.dumps({"id": pid, "title": f"Nested {i}", "shipping": {"country": "DE"}})
    if kind == "too_large":
        return orjson.dumps({"id": pid, "title": "Huge", "description": "x" * 1_100_000})
    raise ValueError(kind)


def iter_products(
    n: int,
    *,
    seed: int = 0,
    size: Literal["regular", "small"] = "regular",
    broken: int = 0,
) -> Iterator[bytes]:
    """``n`` NDJSON lines (no newline); ``broken`` of them spread evenly, cycling through
    :data:`BROKEN_KINDS`."""
    rng = random.Random(seed)
    every = n // broken if broken else 0
    made = 0
    for i in range(n):
        if every and i % every == every // 2 and made < broken:
            yield _broken(BROKEN_KINDS[made % len(BROKEN_KINDS)], i)
            made += 1
        else:
            yield orjson.dumps(_product(i, rng, size))


def write_catalog(
    path: str | os.PathLike[str],
    n: int,
    *,
    seed: int = 0,
    size: Literal["regular", "small"] = "regular",
    broken: int = 0,
) -> int:
    """Write an NDJSON catalog; return its size in bytes."""
    total = 0
    with open(path, "wb") as fh:
        batch: list[bytes] = []
        for line in iter_products(n, seed=seed, size=size, broken=broken):
            batch.append(line)
            if len(batch) >= 10_000:
                data = b"\n".join(batch) + b"\n"
                fh.write(data)
                total += len(data)
                batch.clear()
        if batch:
            data = b"\n".join(batch) + b"\n"
            fh.write(data)
            total += len(data)
    return total
