"""Window features against independent references: hand-computed cases, scipy.stats, scipy.signal and Parseval."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
import scipy.signal
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shared.errors import InputError
from shared.features import (
    STATISTICS,
    Band,
    batch_features,
    feature_names,
    frame_features,
    normalise_feature,
    sliding_windows,
    window_features,
    window_length_problems,
)

ALL = [*STATISTICS, "band:0-0.5", "band:0.5-1"]


def _one(values: list[float], features: list[str]) -> dict[str, float]:
    row = window_features(np.asarray(values, dtype=float)[:, np.newaxis], features)
    return dict(zip(features, row.tolist(), strict=True))


def test_an_alternating_signal_by_hand() -> None:
    # de-meaned x = [1, -1, 1, -1]; Hann [0, .5, 1, .5] gives y = [0, -.5, 1, -.5]: |Y1| = 1, |Y2| = 2, Σw² = 1.5
    got = _one([1, -1, 1, -1], [*STATISTICS, "band:0-0.5", "band:0.5-1", "band:0-1"])
    assert got == pytest.approx({"mean": 0, "std": 1, "rms": 1, "peak": 1, "crest": 1, "kurtosis": -2,
                                 "band:0-0.5": 0, "band:0.5-1": 1, "band:0-1": 1}, abs=1e-7)
    # bin 1 (half of Nyquist, leaked by the Hann window) holds 2·1/6, the Nyquist bin 4/6
    assert _one([1, -1, 1, -1], ["band:0.5-0.75"])["band:0.5-0.75"] == pytest.approx(1 / 3)


def test_one_spike_by_hand() -> None:
    # x = [0, 0, 0, 4]: mean 1, centred [-1, -1, -1, 3], m2 = 3, m4 = 21, rms = 2
    got = _one([0, 0, 0, 4], list(STATISTICS))
    assert got == pytest.approx({"mean": 1, "std": 3 ** 0.5, "rms": 2, "peak": 4, "crest": 2,
                                 "kurtosis": 21 / 9 - 3})


def test_a_sine_puts_its_power_in_its_band() -> None:
    n = 256
    x = 3.0 * np.sin(2 * np.pi * 0.25 * np.arange(n) / 2)  # a quarter of Nyquist, a whole number of periods
    got = _one(x.tolist(), ["band:0-0.2", "band:0.2-0.3", "band:0.3-1", "rms"])
    assert got["band:0.2-0.3"] == pytest.approx(9 / 2, rel=1e-6)  # mean square of a sine of amplitude 3
    assert got["band:0-0.2"] < 1e-9 and got["band:0.3-1"] < 1e-9
    assert got["rms"] == pytest.approx(3 / 2 ** 0.5, rel=1e-6)


@pytest.mark.parametrize("n", [2, 3, 7, 64, 101, 1000])
@pytest.mark.parametrize("draw", ["normal", "laplace", "uniform", "spiky"])
def test_statistics_match_numpy_and_scipy(n: int, draw: str) -> None:
    rng = np.random.default_rng(n)
    x = {"normal": rng.normal(5, 2, (n, 3)), "laplace": rng.laplace(0, 1, (n, 3)),
         "uniform": rng.uniform(-1, 1, (n, 3)), "spiky": rng.normal(0, 1, (n, 3)) ** 5}[draw]
    row = window_features(x, list(STATISTICS)).reshape(3, len(STATISTICS))
    rms = np.sqrt((x ** 2).mean(axis=0))
    expected = np.stack([x.mean(axis=0), x.std(axis=0), rms, np.abs(x).max(axis=0), np.abs(x).max(axis=0) / rms,
                         scipy.stats.kurtosis(x, axis=0, fisher=True, bias=True)], axis=1)
    np.testing.assert_allclose(row, expected, rtol=2e-6, atol=1e-6)


def _reference_band(x: np.ndarray, lo: float, hi: float) -> float:
    """The band's power from scipy's periodogram, bins chosen with exact fractions of Nyquist."""
    n = len(x)
    freqs, density = scipy.signal.periodogram(x, fs=2.0, window="hann", detrend="constant", scaling="density")
    lo_f, hi_f = Fraction(str(lo)), Fraction(str(hi))
    keep = [lo_f <= Fraction(2 * k, n) < hi_f or (hi_f == 1 and k == n // 2) for k in range(len(freqs))]
    return float(density[keep].sum() * 2.0 / n)  # density times the bin width fs / n


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 300), seed=st.integers(0, 2**32 - 1),
       edges=st.lists(st.integers(0, 1000), min_size=2, max_size=2, unique=True))
def test_band_powers_match_scipy_periodogram(n: int, seed: int, edges: list[int]) -> None:
    lo, hi = sorted(e / 1000 for e in edges)
    band = Band(lo, hi)
    if not band.bins(n):
        assert window_length_problems(n, [band.name])
        return
    x = np.random.default_rng(seed).normal(0, 1, n) + np.linspace(0, 3, n)
    got = float(window_features(x[:, np.newaxis], [band.name])[0])
    assert got == pytest.approx(_reference_band(x, lo, hi), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize(("n", "bands"), [
    (2, ["band:0-0.5", "band:0.5-1"]),
    (9, ["band:0-0.3", "band:0.3-0.5", "band:0.5-1"]),
    (64, ["band:0-0.1", "band:0.1-0.35", "band:0.35-0.8", "band:0.8-1"]),
    (255, ["band:0-0.1", "band:0.1-0.35", "band:0.35-0.8", "band:0.8-1"]),
])
def test_bands_that_cover_the_spectrum_sum_to_the_windowed_variance(n: int, bands: list[str]) -> None:
    x = np.random.default_rng(n).normal(0, 1, n)
    hann = scipy.signal.get_window("hann", n)
    y = scipy.signal.detrend(x, type="constant") * hann
    row = window_features(x[:, np.newaxis], bands)
    assert float(row.astype(np.float64).sum()) == pytest.approx(float((y ** 2).sum() / (hann ** 2).sum()), rel=1e-5)


def test_a_constant_window() -> None:
    got = _one([2.5] * 16, ALL)
    assert got == pytest.approx({"mean": 2.5, "std": 0, "rms": 2.5, "peak": 2.5, "crest": 1, "kurtosis": 0,
                                 "band:0-0.5": 0, "band:0.5-1": 0}, abs=1e-12)
    # where scipy answers NaN, the model gets a normal distribution's 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns of catastrophic cancellation here
        assert np.isnan(scipy.stats.kurtosis(np.full(16, 2.5)))
    # an inexact constant (0.1 does not sum exactly) is still flat
    assert _one([0.1] * 10, ["kurtosis", "std"]) == pytest.approx({"kurtosis": 0, "std": 0}, abs=1e-12)


def test_an_all_zero_window_has_crest_factor_one() -> None:
    assert _one([0.0] * 8, ["rms", "peak", "crest", "kurtosis"]) == {"rms": 0, "peak": 0, "crest": 1, "kurtosis": 0}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_reading_that_is_not_finite_is_refused_with_where_it_is(bad: float) -> None:
    windows = np.zeros((3, 8, 2))
    windows[1, 5, 1] = bad
    with pytest.raises(InputError, match=r"finite numbers .*index \(1, 5, 1\)"):
        batch_features(windows, ALL)
    with pytest.raises(InputError, match="finite"):
        frame_features([[1.0, bad]])


def test_readings_that_are_not_numbers_are_refused() -> None:
    with pytest.raises(InputError, match="expected numbers"):
        window_features([["a"], ["b"]], ["mean"])
    with pytest.raises(InputError, match="3 dimensions"):
        batch_features(np.zeros((4, 2)), ["mean"])


def test_readings_beyond_float32_are_refused_not_turned_into_infinity() -> None:
    with pytest.raises(InputError, match="float32's range"):
        window_features([[1e200], [-1e200]], ["rms"])
    with pytest.raises(InputError, match="float32's range"):
        frame_features([[1e300]])


def test_a_single_reading_is_a_frame_not_a_window() -> None:
    assert frame_features([[1.5, -2, True]]).tolist() == [[1.5, -2.0, 1.0]]
    assert frame_features([[1.5, -2]]).dtype == np.float32
    with pytest.raises(InputError, match="at least 2 readings"):
        window_features([[1.0]], ["mean"])


def test_a_band_narrower_than_the_window_resolves_is_refused() -> None:
    # a 4-reading window has bins at 0, 0.5 and 1 of Nyquist: nothing in 0.1-0.2
    assert window_length_problems(4, ["mean", "band:0.1-0.2"]) == [
        "band:0.1-0.2 holds no frequency bin of a 4-reading window (bins are 0.5 of Nyquist apart); "
        "widen the band or lengthen the window"]
    with pytest.raises(InputError, match="band:0.1-0.2 holds no frequency bin"):
        window_features(np.zeros((4, 1)), ["band:0.1-0.2"])
    assert window_length_problems(20, ["band:0.1-0.2"]) == []  # bin 1 lies at exactly 0.1


@pytest.mark.parametrize(("name", "canonical"), [("band:0.10-0.250", "band:0.1-0.25"), ("band:0-1", "band:0-1"),
                                                 ("band:0.000001-1.0", "band:0.000001-1"), ("crest", "crest")])
def test_feature_names_have_one_spelling(name: str, canonical: str) -> None:
    assert normalise_feature(name) == canonical


@pytest.mark.parametrize("name", ["Mean", "band:0.5-0.2", "band:0.5-0.5", "band:0-2", "band:0.1234567-1",
                                  "band:-1-0", "band:1e-3-1", "band:", "", "variance"])
def test_unknown_features_are_refused(name: str) -> None:
    with pytest.raises(InputError):
        normalise_feature(name)
    with pytest.raises(InputError):
        window_features(np.zeros((8, 1)), [name])


def test_columns_are_sensor_major_and_named() -> None:
    names = feature_names(["temp", "vib"], ["mean", "peak", "band:0.5-1.0"])
    assert names == ["temp.mean", "temp.peak", "temp.band:0.5-1", "vib.mean", "vib.peak", "vib.band:0.5-1"]
    window = np.array([[20.0, -3.0], [22.0, 1.0], [24.0, 0.5], [26.0, 0.0]])
    row = dict(zip(names, window_features(window, ["mean", "peak", "band:0.5-1.0"]).tolist(), strict=True))
    assert row["temp.mean"] == 23 and row["temp.peak"] == 26 and row["vib.peak"] == 3


def test_sliding_windows_start_at_the_first_reading_and_step() -> None:
    readings = np.arange(20.0).reshape(10, 2)
    windows = sliding_windows(readings, 4, 3)
    assert windows.shape == (3, 4, 2)
    assert windows[1].tolist() == readings[3:7].tolist() and windows[2].tolist() == readings[6:10].tolist()
    with pytest.raises(InputError, match="needs 11 readings"):
        sliding_windows(readings, 11, 1)
    with pytest.raises(InputError, match="at least 1"):
        sliding_windows(readings, 4, 0)


_windows = st.tuples(st.integers(1, 6), st.integers(2, 40), st.integers(1, 3)).flatmap(
    lambda shape: hnp.arrays(np.float64, shape, elements=st.floats(-1e6, 1e6, allow_nan=False)))


@settings(max_examples=150, deadline=None)
@given(windows=_windows, chunk=st.integers(1, 7),
       features=st.lists(st.sampled_from([*STATISTICS, "band:0-0.5", "band:0.5-1", "band:0-1"]), min_size=1,
                         max_size=9, unique=True))
def test_the_batch_path_equals_the_one_window_path(windows: np.ndarray, chunk: int, features: list[str]) -> None:
    batch = batch_features(windows, features, chunk_windows=chunk)
    assert batch.dtype == np.float32 and batch.shape == (len(windows), windows.shape[2] * len(features))
    one_by_one = np.stack([window_features(w, features) for w in windows])
    np.testing.assert_array_equal(batch, one_by_one)


def test_a_long_history_in_chunks_equals_it_whole() -> None:
    history = np.random.default_rng(7).normal(0, 1, (5000, 2))
    windows = sliding_windows(history, 64, 16)
    np.testing.assert_array_equal(batch_features(windows, ALL, chunk_windows=5), batch_features(windows, ALL))


@pytest.mark.parametrize("factor", [1e200, 1e-300, 1e-310])
def test_shape_features_do_not_depend_on_the_scale_of_the_readings(factor: float) -> None:
    x = np.random.default_rng(3).laplace(0, 1, (32, 1))
    shape = ["crest", "kurtosis"]
    np.testing.assert_allclose(window_features(x * factor, shape), window_features(x, shape), rtol=1e-5)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(4, 300), seed=st.integers(0, 2**32 - 1),
       edges=st.lists(st.integers(0, 1000), min_size=2, max_size=2, unique=True))
def test_relative_bands_are_the_share_of_scipys_periodogram(n: int, seed: int, edges: list[int]) -> None:
    lo, hi = sorted(e / 1000 for e in edges)
    band = Band(lo, hi, relative=True)
    if not band.bins(n):
        assert window_length_problems(n, [band.name])
        return
    x = np.random.default_rng(seed).normal(0, 1, n) * 1e3 + np.linspace(0, 3, n)
    got = float(window_features(x[:, np.newaxis], [band.name])[0])
    assert got == pytest.approx(_reference_band(x, lo, hi) / _reference_band(x, 0, 1), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_log_features_are_log10_of_the_scipy_values_above_the_floor(scale: float) -> None:
    x = np.random.default_rng(7).normal(0, 1, 128) * scale
    names = ["log:std", "log:rms", "log:peak", "log:crest", "log:band:0.1-0.4", "log:relband:0-0.2"]
    got = window_features(x[:, np.newaxis], names).astype(np.float64)
    want = [scipy.stats.tstd(x, ddof=0), np.sqrt(np.mean(x ** 2)), np.max(np.abs(x)),
            np.max(np.abs(x)) / np.sqrt(np.mean(x ** 2)), _reference_band(x, 0.1, 0.4),
            _reference_band(x, 0, 0.2) / _reference_band(x, 0, 1)]
    assert got == pytest.approx(np.log10(np.asarray(want) + 1e-12), abs=1e-5)


def test_a_silent_window_has_the_log_floor_and_no_band_share() -> None:
    got = _one([0.0] * 32, ["log:rms", "log:band:0-0.5", "relband:0-0.5", "log:relband:0.5-1"])
    assert got == pytest.approx({"log:rms": -12, "log:band:0-0.5": -12, "relband:0-0.5": 0,
                                 "log:relband:0.5-1": -12})
    assert _one([3.0] * 32, ["relband:0-1"]) == {"relband:0-1": 0.0}  # a constant has no spectrum to share


def test_relative_bands_do_not_depend_on_the_scale_of_the_readings() -> None:
    x = np.random.default_rng(3).normal(0, 1, 64)[:, np.newaxis]
    names = ["relband:0-0.25", "relband:0.25-1"]
    small, large = window_features(x * 1e-5, names), window_features(x * 1e5, names)
    assert small == pytest.approx(large, rel=1e-5)
    assert float(small.astype(np.float64).sum()) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize(("name", "canonical"), [("log:band:0.10-0.250", "log:band:0.1-0.25"),
                                                 ("relband:0-1.0", "relband:0-1"), ("log:rms", "log:rms")])
def test_derived_feature_names_have_one_spelling(name: str, canonical: str) -> None:
    assert normalise_feature(name) == canonical


@pytest.mark.parametrize("name", ["log:mean", "log:kurtosis", "log:log:rms", "log:", "log:band:0.5-0.2",
                                  "relband:0-2", "Log:rms", "logband:0-1"])
def test_derived_features_that_are_not_defined_are_refused(name: str) -> None:
    with pytest.raises(InputError):
        normalise_feature(name)


def test_a_logged_band_too_narrow_for_the_window_is_refused() -> None:
    assert window_length_problems(4, ["log:band:0.1-0.2"]) and window_length_problems(4, ["relband:0.1-0.2"])
