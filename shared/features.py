"""Features over windows of sensor readings, computed with numpy only: the same code scores on the edge and trains in
the cloud.

A window is ``n`` consecutive readings of ``c`` sensors, an array of shape ``(n, c)``; a batch of windows has shape
``(w, n, c)``. Every feature is computed per sensor, over the window, in float64, and returned as float32 in
sensor-major order: all features of the first sensor, then all of the second, ... (``feature_names`` gives the
column names, ``"<sensor>.<feature>"``). The input must be finite: NaN or infinity is an ``InputError``.

Statistics (``x`` is one sensor's readings in the window, ``N`` their number):

- ``mean``: the arithmetic mean.
- ``std``: the population standard deviation (divisor ``N``, numpy's ``ddof=0``).
- ``rms``: ``sqrt(mean(x**2))`` of the raw readings (not de-meaned).
- ``peak``: ``max(|x|)`` of the raw readings.
- ``crest``: ``peak / rms``; it is 1.0 when ``rms`` is 0 (an all-zero window), the value of every constant window,
  so the feature stays in its natural range ``[1, sqrt(N)]``.
- ``kurtosis``: Fisher's excess kurtosis with the biased moments, ``m4 / m2**2 - 3`` where
  ``m_k = mean((x - mean(x))**k)``; the default of ``scipy.stats.kurtosis`` (``fisher=True, bias=True``). A window
  with no variance (``m2 <= (eps * mean)**2``, scipy's own test) has kurtosis 0.0 where scipy says NaN: a model needs
  a number, and 0 is a normal distribution's.

Spectral bands, written ``band:<lo>-<hi>``: the mean-square power of the window between two frequencies given as
fractions of the Nyquist frequency, ``0 <= lo < hi <= 1`` with at most six decimals (``band:0-0.25``,
``band:0.25-0.5``). Fractions, not hertz, because the readings of a PLC poll or an MQTT device are not sampled at
an exact rate: the model schema states the nominal interval between readings (``Δ``), which makes a fraction ``f``
the frequency ``f / (2·Δ)`` Hz, and checks the frames against it. Per sensor:

1. detrend: subtract the window's mean (a constant detrend);
2. window: multiply by a periodic Hann window ``w[k] = 0.5 - 0.5·cos(2πk/N)`` (scipy's ``get_window("hann", N)``);
3. ``Y = rfft(y)``; the one-sided power of bin ``k`` is ``c_k·|Y_k|**2 / (N·Σw**2)`` with ``c_k = 2`` except for
   the DC bin and (``N`` even) the Nyquist bin, where ``c_k = 1``;
4. bin ``k`` lies at ``2k/N`` of Nyquist; a band sums the bins with ``lo <= 2k/N < hi`` (``hi = 1`` includes the
   Nyquist bin).

So a band's value is the integral of the one-sided power spectral density over the band (``scipy.signal.periodogram``
with ``window="hann"``, ``detrend="constant"``, ``scaling="density"``, times the bin width ``fs/N``), and the bands
``0-…-1`` of one partition sum to ``Σy**2 / Σw**2``, the window's variance as the Hann window weighs it. A band
must hold at least one bin for the window length: ``window_length_problems`` says which do not.

Two derived kinds make inputs a model learns from easily when readings span decades (currents of a standby
appliance and a heater, say):

- ``relband:<lo>-<hi>``: the band's share of the window's power, ``band / Σ bands over 0-1`` (the band's value
  divided by ``Σy**2 / Σw**2``), a number in ``[0, 1]`` that does not depend on the scale of the readings; 0.0 for a
  window with no variance (the kurtosis test above).
- ``log:<feature>``: ``log10(value + 1e-12)`` of ``std``, ``rms``, ``peak``, ``crest``, a ``band`` or a ``relband``
  (never negative): magnitudes spread over decades become evenly spaced inputs, and the floor keeps a silent window
  finite (-12).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from shared.errors import InputError

__all__ = ["LOG_FLOOR", "MIN_WINDOW", "STATISTICS", "Band", "Log", "batch_features", "feature_names", "frame_features",
           "normalise_feature", "parse_feature", "sliding_windows", "window_features", "window_length_problems"]

STATISTICS = ("mean", "std", "rms", "peak", "crest", "kurtosis")
MIN_WINDOW = 2  # readings in a window: one reading has no spread and no spectrum
_BAND_RE = re.compile(r"^(band|relband):([0-9](?:\.[0-9]{1,6})?)-([0-9](?:\.[0-9]{1,6})?)$")
LOG_FLOOR = 1e-12  # added before log10: a silent window's magnitude is 0
_LOGGABLE = ("std", "rms", "peak", "crest")  # never negative; mean and kurtosis can be
_CHUNK_VALUES = 1 << 22  # float64 values per chunk of windows (32 MiB): long histories in bounded memory
_EPS = float(np.finfo(np.float64).eps)


class Band(NamedTuple):
    """A spectral band, its edges as fractions of the Nyquist frequency."""

    lo: float
    hi: float
    relative: bool = False  # relband: the band's share of the window's power

    @property
    def name(self) -> str:
        return f"{'relband' if self.relative else 'band'}:{_decimal(self.lo)}-{_decimal(self.hi)}"

    def bins(self, length: int) -> range:
        """The rfft bins of a window of ``length`` readings that fall in this band."""
        top = length // 2  # the last bin (Nyquist when length is even)
        # bin k lies at 2k/length of Nyquist; edges have six decimals, so integers decide lo <= 2k/length < hi exactly
        first = _ceil_div(_micro(self.lo) * length, 2_000_000)
        stop = top + 1 if self.hi >= 1.0 else _ceil_div(_micro(self.hi) * length, 2_000_000)
        return range(first, min(stop, top + 1))


class Log(NamedTuple):
    """``log10(value + LOG_FLOOR)`` of a feature that is never negative."""

    of: str | Band

    @property
    def name(self) -> str:
        return f"log:{self.of.name if isinstance(self.of, Band) else self.of}"


Feature = str | Band | Log


def _name(feature: Feature) -> str:
    return feature if isinstance(feature, str) else feature.name


def _micro(value: float) -> int:
    return round(value * 1_000_000)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _decimal(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


def parse_feature(name: str) -> Feature:
    """A feature name as a statistic's name, a ``Band`` or a ``Log``; ``InputError`` for anything else."""
    if isinstance(name, str) and name.startswith("log:"):
        inner = _parse_plain(name[4:]) if not name.startswith("log:log:") else None
        if inner is None or (isinstance(inner, str) and inner not in _LOGGABLE):
            raise InputError(f"feature {name!r}: log: takes one of {', '.join(_LOGGABLE)}, a band or a relband "
                             "(never negative), e.g. 'log:rms' or 'log:band:0-0.25'")
        return Log(inner)
    parsed = _parse_plain(name)
    if parsed is None:
        raise InputError(f"unknown feature {name!r}: expected one of {', '.join(STATISTICS)}, a band such as "
                         "'band:0-0.25' (edges as fractions of the Nyquist frequency), a 'relband:0-0.25' or "
                         "'log:' before std, rms, peak, crest or a band")
    return parsed


def _parse_plain(name: str) -> str | Band | None:
    if name in STATISTICS:
        return name
    match = _BAND_RE.match(name) if isinstance(name, str) else None
    if match is None:
        return None
    lo, hi = float(match.group(2)), float(match.group(3))
    if not 0.0 <= lo < hi <= 1.0:
        raise InputError(f"band {name!r}: needs 0 <= lo < hi <= 1 (fractions of the Nyquist frequency)")
    return Band(lo, hi, match.group(1) == "relband")


def normalise_feature(name: str) -> str:
    """The one spelling of a feature: ``band:0.10-0.250`` is ``band:0.1-0.25``."""
    return _name(parse_feature(name))


def feature_names(sensors: Sequence[str], features: Sequence[str]) -> list[str]:
    """The columns ``batch_features`` returns, sensor-major: ``["temp.mean", "temp.std", "vib.mean", ...]``."""
    names = [normalise_feature(f) for f in features]
    return [f"{sensor}.{feature}" for sensor in sensors for feature in names]


def window_length_problems(length: int, features: Iterable[str]) -> list[str]:
    """Why windows of ``length`` readings cannot carry these features (an empty list when they can)."""
    if length < MIN_WINDOW:
        return [f"a window needs at least {MIN_WINDOW} readings (got {length})"]
    problems = []
    for feature in features:
        parsed = parse_feature(feature)
        if isinstance(parsed, Log):
            parsed = parsed.of
        if isinstance(parsed, Band) and not parsed.bins(length):
            problems.append(f"{parsed.name} holds no frequency bin of a {length}-reading window "
                            f"(bins are {2 / length:.6g} of Nyquist apart); widen the band or lengthen the window")
    return problems


def _finite(values: npt.ArrayLike, ndim: int, what: str) -> npt.NDArray[np.float64]:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: expected numbers ({exc})") from None
    if array.ndim != ndim:
        raise InputError(f"{what}: expected {ndim} dimensions, got shape {array.shape}")
    if not np.isfinite(array).all():
        where = np.argwhere(~np.isfinite(array))[0]
        raise InputError(f"{what}: readings must be finite numbers (got {array[tuple(where)]} at index "
                         f"{tuple(int(i) for i in where)})")
    return array


def frame_features(values: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Single-frame mode: each row of ``(n_frames, n_sensors)`` readings is the model's input, as float32."""
    return _float32(_finite(values, 2, "frames"), "frames")


def window_features(window: npt.ArrayLike, features: Sequence[str]) -> npt.NDArray[np.float32]:
    """The features of one ``(n, c)`` window: shape ``(c · len(features),)``, float32 (``batch_features`` of one)."""
    return batch_features(np.asarray(window)[np.newaxis], features)[0]


def batch_features(windows: npt.ArrayLike, features: Sequence[str], *,
                   chunk_windows: int | None = None) -> npt.NDArray[np.float32]:
    """The features of a batch of ``(w, n, c)`` windows: shape ``(w, c · len(features))``, float32.

    Windows are processed ``chunk_windows`` at a time (by default as many as fit in 32 MiB of float64), so that a
    ``sliding_windows`` view over a long history never needs a copy of every window at once.
    """
    parsed = [parse_feature(f) for f in features]
    if not parsed:
        raise InputError("no features asked for")
    array = _finite(windows, 3, "windows")
    count, length, sensors = array.shape
    problems = window_length_problems(length, [_name(p) for p in parsed])
    if problems:
        raise InputError("; ".join(problems))
    per_chunk = chunk_windows or max(1, _CHUNK_VALUES // max(1, length * sensors))
    out = np.empty((count, sensors, len(parsed)), dtype=np.float64)
    for start in range(0, count, per_chunk):
        # (w, c, n): each sensor's readings contiguous, so every reduction runs along the last axis
        chunk = np.ascontiguousarray(array[start:start + per_chunk].transpose(0, 2, 1))
        out[start:start + per_chunk] = _chunk_features(chunk, parsed)
    return _float32(out.reshape(count, sensors * len(parsed)), "features")


def _chunk_features(x: npt.NDArray[np.float64], parsed: list[Feature]) -> npt.NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # overflow is caught as non-finite output
        return _columns(x, parsed)


def _columns(x: npt.NDArray[np.float64], parsed: list[Feature]) -> npt.NDArray[np.float64]:
    length = x.shape[-1]
    # moments of the readings scaled to [-1, 1], then scaled back: no overflow or underflow on the way
    peak = np.max(np.abs(x), axis=-1)
    scale = np.where(peak > 0, peak, 1.0)
    scaled = x / scale[..., np.newaxis]
    scaled_mean = scaled.mean(axis=-1)
    deviation = scaled - scaled_mean[..., np.newaxis]
    scaled_m2 = np.mean(deviation ** 2, axis=-1)
    mean_square = np.mean(scaled ** 2, axis=-1)  # at least 1/N unless every reading is 0
    flat = scaled_m2 <= (_EPS * scaled_mean) ** 2  # scipy.stats.kurtosis's test for a window with no variance
    plain = [p.of if isinstance(p, Log) else p for p in parsed]
    power = _power(deviation * scale[..., np.newaxis]) if any(isinstance(p, Band) for p in plain) else None

    def column(feature: str | Band) -> npt.NDArray[np.float64]:
        if isinstance(feature, Band):
            assert power is not None
            bins = feature.bins(length)
            band = power[..., bins.start:bins.stop].sum(axis=-1)
            if not feature.relative:
                return band
            total = power.sum(axis=-1)
            return np.where(flat | (total <= 0), 0.0, band / np.where(total > 0, total, 1.0))
        if feature == "mean":
            return scaled_mean * scale
        if feature == "std":
            return np.sqrt(scaled_m2) * scale
        if feature == "rms":
            return np.sqrt(mean_square) * scale
        if feature == "peak":
            return peak
        if feature == "crest":
            return np.where(peak > 0, 1.0 / np.sqrt(np.where(peak > 0, mean_square, 1.0)), 1.0)
        # kurtosis, from the standardised deviations
        spread = np.sqrt(np.where(flat, 1.0, scaled_m2))[..., np.newaxis]
        return np.where(flat, 0.0, np.mean((deviation / spread) ** 4, axis=-1) - 3.0)

    columns = [np.log10(column(p.of) + LOG_FLOOR) if isinstance(p, Log) else column(p) for p in parsed]
    return np.stack(columns, axis=-1)


def _power(centred: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The one-sided power of every rfft bin of Hann-windowed, de-meaned windows (the module docstring, steps 2-3)."""
    length = centred.shape[-1]
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)
    spectrum = np.fft.rfft(centred * hann, axis=-1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2) / (length * float(np.sum(hann ** 2)))
    power[..., 1:length - length // 2] *= 2.0  # every bin but DC and (even length) Nyquist stands for two
    return power


def _float32(values: npt.NDArray[np.float64], what: str) -> npt.NDArray[np.float32]:
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    if not np.isfinite(out).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
        raise InputError(f"{what}: a value at index {where} is beyond float32's range ({values[where]!r}); "
                         "readings this large need scaling at the source")
    return out


def sliding_windows(values: npt.ArrayLike, length: int, step: int) -> npt.NDArray[Any]:
    """Windows of ``length`` readings every ``step`` readings over ``(t, c)`` readings: a ``(w, length, c)`` view.

    The first window starts at the first reading; readings after the last whole window are left out. Fewer than
    ``length`` readings is an ``InputError``.
    """
    array = np.asarray(values)
    if array.ndim != 2:
        raise InputError(f"readings: expected (readings, sensors), got shape {array.shape}")
    if length < 1 or step < 1:
        raise InputError(f"window length and step must be at least 1 (got {length} and {step})")
    if array.shape[0] < length:
        raise InputError(f"a window needs {length} readings (got {array.shape[0]})")
    view = np.lib.stride_tricks.sliding_window_view(array, length, axis=0)  # (t - length + 1, c, length)
    return view[::step].transpose(0, 2, 1)
