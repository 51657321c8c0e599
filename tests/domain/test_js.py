import pytest

from sidecar.domain import js


@pytest.mark.parametrize(("text", "expected"), [
    ("", 0), ("abc", 3), ("é", 1), ("😀", 2), ("a😀b", 4), ("日本", 2),
])
def test_length_counts_utf16_units(text: str, expected: int) -> None:
    assert js.length(text) == expected


@pytest.mark.parametrize(("text", "start", "end", "expected"), [
    ("hello", 0, 3, "hel"),
    ("hello", -2, None, "lo"),
    ("hello", 3, 1, ""),
    ("a😀b", 0, 3, "a😀"),
    ("a😀b", 0, 2, "a\ufffd"),   # cut inside the pair: the lone half becomes U+FFFD
    ("a😀b", 2, None, "\ufffdb"),
    ("😀😀", -2, None, "😀"),
    ("abc", 0, 99, "abc"),
])
def test_slice(text: str, start: int, end: int | None, expected: str) -> None:
    assert js.slice_(text, start, end) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("  a b \n", "a b"),
    ("\ufeff\u00a0x\u3000\u2028", "x"),
    ("\x1cx\x1f", "\x1cx\x1f"),  # not JavaScript whitespace, though Python's strip drops it
    ("\x85x", "\x85x"),
    ("\u200bx", "\u200bx"),      # zero-width space is not whitespace either
])
def test_trim(text: str, expected: str) -> None:
    assert js.trim(text) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (0, "0"), (5, "5"), (-3, "-3"), (5.0, "5"), (0.5, "0.5"), (-0.0, "0"), (1e21, "1e+21"),
    (1e20, "100000000000000000000"), (1.5e-5, "0.000015"), (1e-7, "1e-7"),
    (123.456, "123.456"), (2.5e25, "2.5e+25"), (1e-6, "0.000001"), (float("nan"), "NaN"),
    (float("inf"), "Infinity"), (True, "true"),
])
def test_number_to_string(value: float, expected: str) -> None:
    assert js.number_to_string(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (None, "null"), ("zee", "zee"), (3, "3"), ([1, None, "a"], "1,,a"), ({}, "[object Object]"),
])
def test_to_string(value: object, expected: str) -> None:
    assert js.to_string(value) == expected


@pytest.mark.parametrize(("items", "n", "expected"), [
    ([1, 2, 3], 2, [2, 3]), ([1, 2, 3], 5, [1, 2, 3]), ([1, 2, 3], 0, [1, 2, 3]),
])
def test_take_last(items: list[int], n: int, expected: list[int]) -> None:
    assert js.take_last(items, n) == expected


@pytest.mark.parametrize(("counts", "expected"), [
    ({"zee": 2, "stanley": 1}, '{"zee":2,"stanley":1}'),
    ({"zee": 1, "10": 2, "2": 3}, '{"2":3,"10":2,"zee":1}'),  # integer keys first, ascending
    ({"01": 1, "1": 1}, '{"1":1,"01":1}'),                    # "01" is not an index
    ({'a"b': 1, "é": 2}, '{"a\\"b":1,"é":2}'),
])
def test_stringify_counts(counts: dict[str, int], expected: str) -> None:
    assert js.stringify_counts(counts) == expected
