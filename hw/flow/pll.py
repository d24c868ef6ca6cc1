"""PLL parameter search for the board shell's core clock (ECP5, iCE40, 7-series).

The ECP5 and iCE40 searches follow ``ecppll`` (Project Trellis) and ``icepll`` (IceStorm) step
by step, so the shell gets the same dividers as those tools would print; tests compare the two.
They are re-implemented rather than called so that generating a shell needs no tool at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .boards import Board, Family
from .errors import PllError


@dataclass(frozen=True)
class PllPlan:
    family: Family
    fin_mhz: float
    requested_mhz: float
    fout_mhz: float  # what the dividers actually give
    fvco_mhz: float
    params: dict[str, int] = field(default_factory=dict)


def plan_clock(board: Board, freq_mhz: float) -> PllPlan | None:
    """PLL settings for ``freq_mhz`` on ``board``, or None when the oscillator already runs at it."""
    if freq_mhz <= 0:
        raise PllError(f"the clock frequency must be positive, got {freq_mhz:g} MHz")
    if abs(freq_mhz - board.osc_mhz) < 1e-9:
        return None
    return plan_pll(board.family, board.osc_mhz, freq_mhz)


def plan_pll(family: Family, fin_mhz: float, fout_mhz: float) -> PllPlan:
    if family == "ecp5":
        return ecp5_pll(fin_mhz, fout_mhz)
    if family == "ice40":
        return ice40_pll(fin_mhz, fout_mhz)
    return xc7_pll(fin_mhz, fout_mhz)


# --- ECP5 EHXPLLL ----------------------------------------------------------------------------
# Ranges from the ECP5 datasheet, as ecppll uses them.
_ECP5_OUT = (10.0, 400.0)
_ECP5_PFD = (3.125, 400.0)
_ECP5_VCO = (400.0, 800.0)


def ecp5_pll(fin_mhz: float, fout_mhz: float) -> PllPlan:
    """EHXPLLL dividers with CLKOP as feedback; same choice as ``ecppll -i fin -o fout``."""
    _check_range("ECP5 EHXPLLL", fout_mhz, _ECP5_OUT)
    f32 = np.float32
    # ecppll computes in single precision; equal errors are broken by the VCO nearest 600 MHz,
    # so the float rounding decides ties and must be reproduced.
    fin, want = f32(fin_mhz), f32(fout_mhz)
    best: tuple[int, int, int, np.float32, np.float32] | None = None
    best_err = f32(np.inf)
    for refclk_div in range(1, 129):
        fpfd = fin / f32(refclk_div)
        if fpfd < _ECP5_PFD[0] or fpfd > _ECP5_PFD[1]:
            continue
        for feedback_div in range(1, 81):
            # fout does not depend on output_div; only visit output_divs whose VCO is in range.
            approx = float(fpfd) * feedback_div
            lo = max(1, math.floor(_ECP5_VCO[0] / approx))
            hi = min(128, math.ceil(_ECP5_VCO[1] / approx))
            for output_div in range(lo, hi + 1):
                fvco = fpfd * f32(feedback_div) * f32(output_div)
                if fvco < _ECP5_VCO[0] or fvco > _ECP5_VCO[1]:
                    continue
                fout = fvco / f32(output_div)
                err = abs(fout - want)
                if err < best_err or (
                    best is not None and err == best_err and abs(fvco - 600) < abs(best[4] - 600)
                ):
                    best_err = err
                    best = (refclk_div, feedback_div, output_div, fout, fvco)
    if best is None:
        raise PllError(f"ECP5 PLL: no divider setting makes {fout_mhz} MHz from {fin_mhz} MHz")
    refclk_div, feedback_div, output_div, fout, fvco = best
    # ecppll shifts CLKOP by 180 degrees ("Lattice seems to do this"); same float arithmetic.
    ns_phase = float(f32(1.0 / (float(fout) * 1e6) * 0.5))
    cphase = int(ns_phase * (float(fvco) * 1e6))
    return PllPlan(
        family="ecp5",
        fin_mhz=fin_mhz,
        requested_mhz=fout_mhz,
        fout_mhz=float(fout),
        fvco_mhz=float(fvco),
        params={
            "CLKI_DIV": refclk_div,
            "CLKFB_DIV": feedback_div,
            "CLKOP_DIV": output_div,
            "CLKOP_CPHASE": cphase,
            "CLKOP_FPHASE": 0,
        },
    )


# --- iCE40 SB_PLL40 (SIMPLE feedback) ----------------------------------------------------------
_ICE40_OUT = (16.0, 275.0)
_ICE40_PFD = (10.0, 133.0)
_ICE40_VCO = (533.0, 1066.0)


def ice40_pll(fin_mhz: float, fout_mhz: float) -> PllPlan:
    """SB_PLL40_* dividers in SIMPLE feedback mode; same choice as ``icepll -i fin -o fout``."""
    _check_range("iCE40 SB_PLL40", fout_mhz, _ICE40_OUT)
    best: tuple[int, int, int, float, float, float] | None = None
    for divr in range(16):
        fpfd = fin_mhz / (divr + 1)
        if fpfd < _ICE40_PFD[0] or fpfd > _ICE40_PFD[1]:
            continue
        for divf in range(128):
            fvco = fpfd * (divf + 1)
            if fvco < _ICE40_VCO[0] or fvco > _ICE40_VCO[1]:
                continue
            for divq in range(1, 7):
                fout = fvco * 2.0**-divq
                if best is None or abs(fout - fout_mhz) < abs(best[3] - fout_mhz):
                    best = (divr, divf, divq, fout, fvco, fpfd)
    if best is None:
        raise PllError(f"iCE40 PLL: no divider setting makes {fout_mhz} MHz from {fin_mhz} MHz")
    divr, divf, divq, fout, fvco, fpfd = best
    return PllPlan(
        family="ice40",
        fin_mhz=fin_mhz,
        requested_mhz=fout_mhz,
        fout_mhz=fout,
        fvco_mhz=fvco,
        params={"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": _ice40_filter(fpfd)},
    )


def _ice40_filter(fpfd: float) -> int:
    # Loop-filter setting by PFD frequency, as in icepll (from the iCE40 sysCLOCK guide).
    for limit, value in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
        if fpfd < limit:
            return value
    return 6


# --- 7-series PLLE2_BASE (speed grade -1) -------------------------------------------------------
_XC7_OUT = (6.25, 464.0)
_XC7_PFD = (19.0, 450.0)
_XC7_VCO = (800.0, 1600.0)


def xc7_pll(fin_mhz: float, fout_mhz: float) -> PllPlan:
    """PLLE2_BASE dividers: closest output, then the highest PFD and VCO (least jitter)."""
    _check_range("7-series PLLE2", fout_mhz, _XC7_OUT)
    best: tuple[float, int, float, int, int] | None = None  # (err, D, -fvco, M, O)
    for d in range(1, 57):
        fpfd = fin_mhz / d
        if not _XC7_PFD[0] <= fpfd <= _XC7_PFD[1]:
            continue
        for m in range(2, 65):
            fvco = fpfd * m
            if not _XC7_VCO[0] <= fvco <= _XC7_VCO[1]:
                continue
            o = min(128, max(1, round(fvco / fout_mhz)))
            cand = (abs(fvco / o - fout_mhz), d, -fvco, m, o)
            if best is None or cand < best:
                best = cand
    if best is None:
        raise PllError(f"7-series PLL: no divider setting makes {fout_mhz} MHz from {fin_mhz} MHz")
    _, d, neg_vco, m, o = best
    return PllPlan(
        family="xc7",
        fin_mhz=fin_mhz,
        requested_mhz=fout_mhz,
        fout_mhz=-neg_vco / o,
        fvco_mhz=-neg_vco,
        params={"DIVCLK_DIVIDE": d, "CLKFBOUT_MULT": m, "CLKOUT0_DIVIDE": o},
    )


def _check_range(what: str, fout_mhz: float, limits: tuple[float, float]) -> None:
    if not limits[0] <= fout_mhz <= limits[1]:
        raise PllError(
            f"{what} output must be {limits[0]:g}–{limits[1]:g} MHz; {fout_mhz:g} MHz requested"
        )
