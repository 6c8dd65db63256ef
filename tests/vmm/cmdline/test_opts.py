"""QemuOpts and JSON option syntax, with QEMU's messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.vmm.cmdline.opts import (
    opt_bool,
    opt_uint,
    parse_bool,
    parse_props,
    parse_size,
    parse_uint,
    split_opts,
    take_str,
)


def test_implied_key_bare_flags_and_no_prefix() -> None:
    assert split_opts("unix:/s,server,nowait", "spec") == [
        ("spec", "unix:/s"),
        ("server", "on"),
        ("wait", "off"),
    ]


@given(st.lists(st.text(alphabet="ab=,", max_size=6), min_size=1, max_size=5))
def test_split_opts_round_trips_escaped_commas(values: list[str]) -> None:
    escaped = ",".join(f"k{i}=" + v.replace(",", ",,") for i, v in enumerate(values))
    assert split_opts(escaped) == [(f"k{i}", v) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("text", "bits", "value"),
    [("0x10", 32, 16), ("010", 32, 8), ("0", 8, 0), ("-1", 64, (1 << 64) - 1), ("255", 8, 255)],
)
def test_integers_take_c_prefixes(text: str, bits: int, value: int) -> None:
    assert parse_uint("n", text, bits) == value


@pytest.mark.parametrize(
    ("text", "bits", "message"),
    [
        ("x", 32, "Parameter 'n' expects integer"),
        ("", 32, "Parameter 'n' expects integer"),
        ("256", 8, "Parameter 'n' expects uint8_t"),
        (str(1 << 64), 64, "Parameter 'n' expects integer"),
    ],
)
def test_bad_integers(text: str, bits: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_uint("n", text, bits)


def test_sizes_and_booleans() -> None:
    assert parse_size("size", "1.5G") == 3 << 29
    assert parse_size("size", "214", default_shift=20) == 214 << 20
    assert parse_bool("b", "y") is True
    assert parse_bool("b", "off") is False
    with pytest.raises(ValueError, match="expects 'on' or 'off'"):
        parse_bool("b", "1")


def test_json_and_key_value_props() -> None:
    props, typed = parse_props('{"driver":"file","read-only":true,"n":3}', "driver")
    assert typed
    assert take_str(props, "driver") == "file"
    assert opt_bool(props, "read-only", typed) is True
    assert opt_uint(props, "n", typed, 8) == 3
    plain, typed = parse_props("file,read-only=on,n=0x3", "driver")
    assert not typed
    assert (opt_bool(plain, "read-only", typed), opt_uint(plain, "n", typed, 8)) == (True, 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "JSON parse error"),
        ('{"a":1}', "Parameter 'driver' is missing"),
        ('{"driver":1}', "Invalid parameter type for 'driver', expected: string"),
    ],
)
def test_bad_props(text: str, message: str) -> None:
    def parse() -> str:
        props, _ = parse_props(text, "driver")
        return take_str(props, "driver")

    with pytest.raises(ValueError, match=message):
        parse()


def test_typed_values_are_checked_by_type() -> None:
    props, typed = parse_props('{"b":"on","n":-1}', None)
    with pytest.raises(ValueError, match="expected: boolean"):
        opt_bool(props, "b", typed)
    with pytest.raises(ValueError, match="expects uint8_t"):
        opt_uint(props, "n", typed, 8)
