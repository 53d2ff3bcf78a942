"""Formulas against hostile expressions and readings: every bad case is a refusal or a flagged point."""

from __future__ import annotations

import pytest

from cloud.process.formulas import Formula, FormulaError
from tests.cloud.apiclient import Api, auth
from tests.cloud.process.test_vsensor_engine import api, define, frame, send, wait_points

__all__ = ["api"]


@pytest.mark.parametrize("expression", ["9**9**9", "x.__class__", "[i for i in (1, 2)]", "(lambda: 1)()",
                                        "'a' * 10", "y + 1", "__import__('os')", "(" * 240 + "x" + ")" * 240,
                                        "-" * 300 + "x"])
def test_expressions_outside_the_limits_are_refused_or_flagged(expression: str) -> None:
    try:
        formula = Formula(expression, ["x"], windowed=False)
    except FormulaError:
        return
    value, flag = formula.evaluate({"x": 3.0})
    assert value is None and flag


@pytest.mark.parametrize("expression", ["floor(x) * floor(x) * floor(x)", "round(x) * round(x)",
                                        "ceil(x) * 10**64 * 10**64 * 10**64 * 10**64 * 10**64 * 10**64"])
def test_an_integer_result_too_large_for_a_float_is_flagged_not_raised(expression: str) -> None:
    value, flag = Formula(expression, ["x"], windowed=False).evaluate({"x": 1e200})
    assert value is None
    assert "not a finite number" in flag


async def test_a_formula_that_overflows_does_not_stop_the_other_bindings(api: Api) -> None:
    await send(api, 1, [frame(0, x=1.0, y=2.0)])
    await define(api, {"name": "cube", "device": "press-1",
                       "spec": {"kind": "formula", "expression": "floor(x) * floor(x) * floor(x)", "output": "x3"}})
    await define(api, {"name": "dbl", "device": "press-1",
                       "spec": {"kind": "formula", "expression": "y * 2", "output": "y2"}})
    await wait_points(api, "dbl", 1)
    await send(api, 2, [frame(1, x=1e200, y=3.0), frame(2, x=2.0, y=4.0)])
    assert [p["value"] for p in await wait_points(api, "dbl", 3)] == [4.0, 6.0, 8.0]
    cube = await wait_points(api, "cube", 3)
    assert [p["value"] for p in cube] == [1.0, None, 8.0]
    assert "not a finite number" in cube[1]["flag"]
    r = await api.client.get("/api/v1/process/bindings/cube", headers=auth(api.viewer))
    assert r.json()["flagged"] == 1


@pytest.mark.parametrize("kind", ["tumbling", "rolling"])
async def test_a_window_shorter_than_a_millisecond_is_refused(api: Api, kind: str) -> None:
    # readings are dated to the microsecond: a shorter window would round to no width at all
    await send(api, 1, [frame(0, x=1.0)])
    body = await define(api, {"name": "tiny", "device": "press-1", "spec": {
        "kind": "formula", "expression": "mean(x)", "output": "m", "window": {"kind": kind, "seconds": 1e-9}}}, 422)
    (problem,) = body["detail"]
    assert problem["path"].endswith("window.seconds") and "0.001" in problem["message"], body


@pytest.mark.parametrize("expression", ["abs(x ** 0.5)", "abs(x ** 1.5) + 1", "hypot(1, 0) * abs(x ** 0.25)"])
def test_a_fractional_power_of_a_negative_input_is_flagged_not_taken_through_complex_numbers(expression: str) -> None:
    # Python answers (-4) ** 0.5 with a complex number; abs() of it would be stored as if sqrt(-4) were 2
    value, flag = Formula(expression, ["x"], windowed=False).evaluate({"x": -4.0})
    assert value is None
    assert "negative" in flag
    assert Formula(expression, ["x"], windowed=False).evaluate({"x": 4.0})[1] == ""
