"""The comparison helper itself must be able to fail."""

import math

import pytest

from tests.compare import assert_same_rows, same_value


def test_equalities_of_the_contract():
    assert same_value(1, 1.0) and same_value(math.nan, math.nan) and same_value("NaN", math.nan)
    assert same_value('{"a": [1, NaN]}', {"a": [1.0, math.nan]})
    assert_same_rows([{"_step": 1, "a": {"b": 1}}], [{"_step": 1, "a.b": 1.0, "c": None}])
    assert_same_rows([{"_step": 1, "h": '{"_type":"histogram","values":[1]}'}],
                     [{"_step": 1, "h": {"_type": "histogram", "values": [1.0]}}])


@pytest.mark.parametrize(
    "got,want",
    [
        ([{"_step": 1, "a": 1.0}], [{"_step": 1, "a": 1.5}]),
        ([{"_step": 1, "a": math.nan}], [{"_step": 1, "a": 0.0}]),
        ([{"_step": 1, "a": True}], [{"_step": 1, "a": 1}]),
        ([{"_step": 1}], [{"_step": 1}, {"_step": 2}]),
        ([{"_step": 1, "a": "x"}], [{"_step": 1}]),
    ],
)
def test_differences_are_caught(got, want):
    with pytest.raises(AssertionError):
        assert_same_rows(got, want)
