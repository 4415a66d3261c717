"""A tiny counter-free PRNG (splitmix64) for the compiled simulator.

Own generator rather than numba's ``np.random``: the byte stream of a simulated day must not
change with the numba or numpy version, and one ``uint64`` of state per stream is easy to seed
from ``(venue, symbol, date, seed, stage)``.
"""

from __future__ import annotations

import zlib

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_INV53 = 1.0 / 9007199254740992.0


@njit(cache=True, inline="always")
def next_u64(st: np.ndarray) -> np.uint64:
    z = st[0] + _GOLDEN
    st[0] = z
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def uniform(st: np.ndarray) -> float:
    """Uniform in [0, 1)."""
    return float(next_u64(st) >> np.uint64(11)) * _INV53


@njit(cache=True, inline="always")
def uniform_pos(st: np.ndarray) -> float:
    """Uniform in (0, 1]: safe under ``log``."""
    return 1.0 - uniform(st)


@njit(cache=True)
def normal(st: np.ndarray) -> float:
    u1 = uniform_pos(st)
    u2 = uniform(st)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@njit(cache=True)
def exponential(st: np.ndarray) -> float:
    return -np.log(uniform_pos(st))


@njit(cache=True)
def student_t_unit(st: np.ndarray, nu: float) -> float:
    """Student-t with integer ``nu`` > 2 degrees of freedom, scaled to unit variance.

    The chi-square is a sum of ``nu`` squared normals: exact, and cheap for the small ``nu``
    (3-6) used here.
    """
    z = normal(st)
    k = int(nu)
    chi = 0.0
    for _ in range(k):
        g = normal(st)
        chi += g * g
    return z / np.sqrt(chi / k) * np.sqrt((k - 2.0) / k)


@njit(cache=True)
def poisson(st: np.ndarray, lam: float) -> int:
    if lam <= 0.0:
        return 0
    if lam < 30.0:
        limit = np.exp(-lam)
        k = 0
        p = uniform_pos(st)
        while p > limit:
            k += 1
            p *= uniform_pos(st)
        return k
    x = lam + np.sqrt(lam) * normal(st) + 0.5
    return max(0, int(x))


@njit(cache=True)
def geometric0(st: np.ndarray, mean: float) -> int:
    """Geometric on {0, 1, 2, ...} with the given mean."""
    if mean <= 0.0:
        return 0
    p = 1.0 / (1.0 + mean)
    return int(np.log(uniform_pos(st)) / np.log(1.0 - p))


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from strings and ints, stable across Python runs (no ``hash()``)."""
    words = []
    for part in parts:
        if isinstance(part, str):
            words.append(zlib.crc32(part.encode()))
        else:
            words.append(int(part) & 0xFFFFFFFF)
            words.append((int(part) >> 32) & 0xFFFFFFFF)
    ss = np.random.SeedSequence(words)
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def state(seed: int) -> np.ndarray:
    return np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
