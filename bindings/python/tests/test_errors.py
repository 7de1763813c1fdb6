"""Every rkl_status has its constant and its exception class."""
import ctypes
import os
import re

import pytest

import rkl

HEADER = os.path.join(os.path.dirname(__file__), "..", "..", "..", "include", "rkl.h")


def header_statuses():
    """{name without RKL_: number} of the rkl_status enum in include/rkl.h."""
    with open(HEADER, encoding="utf-8") as f:
        text = f.read()
    body = re.search(r"enum rkl_status\b[^{]*\{(.*?)\};", text, re.S).group(1)
    return {name: int(number) for name, number in re.findall(r"\bRKL_(\w+) = (\d+),", body)}


STATUSES = header_statuses()


def test_the_header_numbers_every_status_from_0_to_26():
    assert sorted(STATUSES.values()) == list(range(27))


@pytest.mark.parametrize("name", sorted(STATUSES, key=STATUSES.get))
def test_every_status_has_a_constant_and_an_exception(name):
    number = STATUSES[name]
    assert getattr(rkl, name) == number
    text = rkl.status_str(number)
    assert text and text != "unknown status"
    if number == rkl.OK:
        assert rkl.error_class(number) is rkl.RklError  # no exception for success
        return
    cls = rkl.error_class(number)
    assert issubclass(cls, rkl.RklError) and cls is not rkl.RklError
    assert cls.status == number
    assert cls.__doc__.startswith(f"RKL_{name}:"), cls.__doc__
    assert cls.__name__ in rkl.__all__ and getattr(rkl, cls.__name__) is cls
    e = cls(number, text)
    assert (e.status, e.message, str(e)) == (number, text, text)
    assert issubclass(cls, rkl.CacheError) == (16 <= number <= 21 or number == 26)


def test_each_status_has_its_own_class_and_text():
    failures = [n for n in STATUSES.values() if n != rkl.OK]
    assert len({rkl.error_class(n) for n in failures}) == len(failures)
    assert len({rkl.status_str(n) for n in STATUSES.values()}) == len(STATUSES)
    assert rkl.status_str(27) == rkl.status_str(-1) == "unknown status"
    assert rkl.error_class(27) is rkl.RklError


def test_error_for_takes_the_library_message_or_the_status_text():
    # After a success the thread has no message: the status text stands in.
    p = rkl.OpenParams()
    assert rkl._open_params_init(p, 0) == rkl.INVALID_ARGUMENT
    e = rkl.error_for(rkl.INVALID_ARGUMENT)
    assert "struct_size" in e.message and isinstance(e, ValueError)
    assert rkl._open_params_init(p, ctypes.sizeof(p)) == rkl.OK
    for number in range(1, 27):
        e = rkl.error_for(number)
        assert type(e) is rkl.error_class(number) and e.status == number
        assert str(e) == rkl.status_str(number)


@pytest.mark.parametrize("cls, builtin", [
    (rkl.ModelNotFoundError, FileNotFoundError),
    (rkl.CacheNotFoundError, FileNotFoundError),
    (rkl.CacheInvalidError, ValueError),
    (rkl.CacheMismatchError, ValueError),
    (rkl.RuntimeCrashedError, RuntimeError),
    (rkl.RuntimeTimeoutError, TimeoutError),
    (rkl.StreamTimeoutError, TimeoutError),
    (rkl.NotSupportedError, NotImplementedError),
    (rkl.RklIOError, OSError),
    (rkl.ResourceExhaustedError, OSError),
])
def test_builtin_bases(cls, builtin):
    assert issubclass(cls, builtin)
    e = cls(cls.status, "message")
    assert isinstance(e, builtin) and str(e) == "message" and e.status == cls.status
