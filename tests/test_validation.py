from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkpush import _validation as v
from bulkpush._records import Record
from bulkpush._validation import ValidationOptions, Validator, flatten
from bulkpush.errors import ConfigError

FULL = Validator()
LIGHT = Validator(ValidationOptions(level="light"))
FLAT = Validator(ValidationOptions(flatten=True))


def r(raw: bytes) -> Record:
    return Record("cat.ndjson", 7, 100, raw)


def message(validator: Validator, raw: bytes) -> str | None:
    rejection = validator(r(raw))
    if rejection is None:
        return None
    assert rejection.stage == "client"
    assert rejection.record.line == 7
    return rejection.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"id":"a1","title":"x"}', None),
        (b'{"id":12,"title":"x"}', None),
        (b'{"id":1.5,"title":"x"}', None),
        (b'{"id":"a1"}', None),  # id counts as an attribute: not "all empty"
        (b'{"id":0,"title":""}', None),
        (b'{"id":"a1","title":"x"', v.MSG_SYNTAX),
        (b'{"id":"a1",}', v.MSG_SYNTAX),
        (b"nope", v.MSG_SYNTAX),
        (b'{"id":"a\xff"}', v.MSG_BAD_ENCODING),
        (b'{"id":"a\x01b"}', v.MSG_CONTROL_CHARACTER),
        (b'{"id":"a\tb"}', v.MSG_CONTROL_CHARACTER),
        (b'["id"]', v.MSG_NOT_OBJECT),
        (b'"id"', v.MSG_NOT_OBJECT),
        (b"12", v.MSG_NOT_OBJECT),
        (b"{}", v.MSG_EMPTY_ATTRIBUTES),
        (b'{"id":"","title":null}', v.MSG_EMPTY_ATTRIBUTES),
        (b'{"title":""}', v.MSG_EMPTY_ATTRIBUTES),
        (b'{"title":"x"}', v.MSG_MISSING_ID),
        (b'{"id":null,"title":"x"}', v.MSG_MISSING_ID),
        (b'{"id":"","title":"x"}', v.MSG_EMPTY_ID),
        (b'{"id":true,"title":"x"}', v.MSG_ID_TYPE),
        (b'{"id":false,"title":"x"}', v.MSG_ID_TYPE),
        (b'{"id":["a"],"title":"x"}', v.MSG_ID_TYPE),
        (b'{"id":{"a":1},"title":"x"}', v.MSG_ID_TYPE),
        (b'{"id":"a","b":{"c":1}}', v.MSG_NESTED),
        (b'{"id":"a","b":[1,2]}', v.MSG_NESTED),
    ],
)
def test_full_validation_rules(raw: bytes, expected: str | None) -> None:
    assert message(FULL, raw) == expected


def test_valid_record_gets_its_id_as_a_string() -> None:
    for raw, pid in [(b'{"id":"a1","t":1}', "a1"), (b'{"id":12,"t":1}', "12")]:
        record = r(raw)
        assert FULL(record) is None
        assert record.id == pid
        assert record.raw == raw  # not re-serialised


def test_product_over_the_size_limit() -> None:
    raw = b'{"id":"a","d":"' + b"x" * 1_000_000 + b'"}'
    assert message(FULL, raw) == v.MSG_TOO_LARGE
    assert message(LIGHT, raw) == v.MSG_TOO_LARGE
    small = Validator(ValidationOptions(max_product_bytes=20))
    assert message(small, b'{"id":"a","d":"xxxxxxxxxx"}') == v.MSG_TOO_LARGE
    assert message(small, b'{"id":"a","d":"x"}') is None


def test_line_breaks_between_tokens_are_removed_in_full_and_refused_in_light() -> None:
    record = r(b'{"id":"a",\r\n "t":1}')
    assert FULL(record) is None
    assert record.raw == b'{"id":"a","t":1}'
    assert message(LIGHT, b'{"id":"a",\n "t":1}') == v.MSG_LINE_BREAK


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"id":"a","t":1}', None),
        (b'{"id":"a","t":1', v.MSG_NOT_OBJECT),
        (b'["id"]', v.MSG_NOT_OBJECT),
        (b'{"sku":"a"}', v.MSG_MISSING_ID),
        (b'{"id":"a","b":{"c":1}}', None),  # light leaves the rest to the API
    ],
)
def test_light_validation(raw: bytes, expected: str | None) -> None:
    record = r(raw)
    assert message(LIGHT, raw) == expected
    assert LIGHT(record) is not None or record.id is None


def test_flatten_objects_and_arrays() -> None:
    record = r(b'{"id":"a","b":{"c":1,"d":{"e":"x"}},"l":[1,{"m":2}],"z":{},"y":[]}')
    assert FLAT(record) is None
    assert orjson.loads(record.raw) == {"id": "a", "b.c": 1, "b.d.e": "x", "l.0": 1, "l.1.m": 2}
    assert record.id == "a"
    custom = Validator(ValidationOptions(flatten=True, separator="_"))
    record = r(b'{"id":"a","b":{"c":1}}')
    assert custom(record) is None
    assert orjson.loads(record.raw) == {"id": "a", "b_c": 1}


def test_flatten_refuses_a_key_collision() -> None:
    assert message(FLAT, b'{"id":"a","b.c":1,"b":{"c":2}}') == v.MSG_FLATTEN_COLLISION
    with pytest.raises(ValueError):
        flatten({"b": {"c": 1}, "b.c": 2})


def test_flatten_that_grows_past_the_limit() -> None:
    small = Validator(ValidationOptions(flatten=True, max_product_bytes=40))
    raw = b'{"id":"a","b":{"c":[1,2,3,4,5]}}'
    assert len(raw) <= 40
    assert message(small, raw) == v.MSG_TOO_LARGE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"level": "heavy"},
        {"separator": ""},
        {"max_product_bytes": 3_000_000},
        {"max_product_bytes": 0},
        {"level": "light", "flatten": True},
    ],
)
def test_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ValidationOptions(**kwargs)  # type: ignore[arg-type]


def test_messages_are_stable_constants() -> None:
    names = [n for n in v.__all__ if n.startswith("MSG_")]
    values = [getattr(v, n) for n in names]
    assert len(set(values)) == len(values)
    assert all(isinstance(m, str) and m for m in values)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_none_or_one_rejection(raw: bytes) -> None:
    for validator in (FULL, LIGHT, FLAT):
        record = r(raw)
        result = validator(record)
        if result is None:
            assert b"\n" not in record.raw
            if validator is not LIGHT:
                assert isinstance(orjson.loads(record.raw), dict)
                assert record.id is not None
        else:
            assert result.record is record


json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4), json_values, max_size=6))
def test_any_object_is_judged_consistently(obj: dict[str, object]) -> None:
    raw = orjson.dumps(obj)
    record = r(raw)
    result = FULL(record)
    pid = obj.get("id")
    nested = any(isinstance(x, dict | list) for x in obj.values())
    if all(x is None or x == "" for x in obj.values()):
        assert result is not None and result.message == v.MSG_EMPTY_ATTRIBUTES
    elif pid is None or isinstance(pid, bool) or not isinstance(pid, str | int) or pid == "":
        assert result is not None
    elif nested:
        assert result is not None and result.message == v.MSG_NESTED
        record = r(raw)
        flat_result = FLAT(record)
        if flat_result is None:
            flat = orjson.loads(record.raw)
            assert not any(isinstance(x, dict | list) for x in flat.values())
    else:
        assert result is None and record.id == str(pid)
