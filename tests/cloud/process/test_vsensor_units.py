"""Units at the binding on their own (pint): conversions against their defining factors, refusals naming the key."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.process.units import UnitsError, check_unit, converter


def test_fahrenheit_to_celsius_is_affine() -> None:
    f = np.array([-40.0, 32.0, 212.0, 176.0, 98.6])
    assert converter("degF", "degC", "p")(f) == pytest.approx((f - 32) * 5 / 9)
    assert converter("degC", "K", "p")(np.array([0.0, -273.15])) == pytest.approx([273.15, 0.0])


def test_psi_to_bar_and_other_scale_factors() -> None:
    # 1 psi = 0.45359237 kg * 9.80665 m/s2 / (0.0254 m)^2 = 6894.757... Pa
    psi_in_pa = 0.45359237 * 9.80665 / 0.0254**2
    assert converter("psi", "bar", "p")(np.array([1.0, 14.5038]))[0] == pytest.approx(psi_in_pa / 1e5, rel=1e-12)
    assert converter("psi", "bar", "p")(np.array([14.5038]))[0] == pytest.approx(1.0, abs=1e-5)
    assert converter("kW", "W", "p")(np.array([1.5])) == pytest.approx([1500.0])
    assert converter("L/min", "m**3/h", "p")(np.array([1000.0])) == pytest.approx([60.0])
    same = converter("bar", "bar", "p")
    values = np.array([1.0, 2.0])
    assert same(values) is values  # no conversion at all, not a multiplication by 1.0


def test_incompatible_units_are_refused_naming_both_and_their_dimensions() -> None:
    with pytest.raises(UnitsError) as refused:
        converter("bar", "degC", "spec.inputs.p.unit")
    (problem,) = refused.value.problems
    assert problem.path == "spec.inputs.p.unit"
    assert "'bar'" in problem.message and "'degC'" in problem.message and "temperature" in problem.message
    with pytest.raises(UnitsError, match="cannot be converted"):
        converter("kW", "kWh", "x")


def test_unknown_units_are_refused() -> None:
    for text in ("furlongs_per_fortnightx", "", "m/", "__class__"):
        with pytest.raises(UnitsError) as refused:
            check_unit(text, "spec.inputs.x.unit")
        assert refused.value.problems[0].path == "spec.inputs.x.unit"
    assert check_unit("degC", "x") == "degC"


@pytest.mark.parametrize("text", ["(", "m)", "dimensionless/0", "degC**\"'0"])
def test_a_malformed_unit_is_refused_not_raised_as_a_parser_error(text: str) -> None:
    with pytest.raises(UnitsError) as refused:
        check_unit(text, "spec.inputs.x.unit")
    assert refused.value.problems[0].path == "spec.inputs.x.unit"
    assert repr(text) in refused.value.problems[0].message


@pytest.mark.parametrize(("source", "target"), [("m**400", "mm**400"), ("m**1000000", "km**1000000")])
def test_a_conversion_whose_factor_is_not_a_usable_number_is_refused_when_defined(source: str, target: str) -> None:
    # 1000**400 overflows a float; 1000**-1000000 underflows to 0: either would turn every reading into an
    # exception or a silent 0 later, so the binding is refused now
    with pytest.raises(UnitsError) as refused:
        converter(source, target, "spec.inputs.x.unit")
    assert refused.value.problems[0].path == "spec.inputs.x.unit"
    assert "factor" in refused.value.problems[0].message
