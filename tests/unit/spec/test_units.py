import pytest

from orch.spec.units import format_duration, parse_bytes, parse_duration

DURATIONS = [
    ("10s", 10.0),
    ("1m30s", 90.0),
    ("1h", 3600.0),
    ("500ms", 0.5),
    ("1.5h", 5400.0),
    ("2h45m10s", 9910.0),
    ("100us", 0.0001),
    ("100µs", 0.0001),
    ("10ns", 1e-8),
    ("0", 0.0),
    ("0s", 0.0),
    (30, 30.0),
    (1.5, 1.5),
]


@pytest.mark.parametrize("text, seconds", DURATIONS)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "5 minutes", "1d", "s", "1m30", "-5s", "1.2.3s", True, -1])
def test_bad_duration_says_how_to_write_one(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0s"), (0.5, "500ms"), (10, "10s"), (90, "1m30s"), (3600, "1h0m0s"), (5400, "1h30m0s"), (1.5, "1.5s"), (0.0001, "100µs"), (1e-8, "10ns")],
)
def test_format_duration_is_go_duration_string(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


SIZES = [
    ("100b", 100),
    ("1024k", 1 << 20),
    ("512m", 512 << 20),
    ("512M", 512 << 20),
    ("1g", 1 << 30),
    ("1gb", 1 << 30),
    ("1.5GB", 3 << 29),
    ("2 MiB", 2 << 20),
    ("1t", 1 << 40),
    ("4096", 4096),
    (1024, 1024),
]


@pytest.mark.parametrize("text, size", SIZES)
def test_parse_bytes(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "lots", "1x", "m", "-1m", "1.5.5g", True, -3])
def test_bad_size_says_how_to_write_one(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_bytes(text)
