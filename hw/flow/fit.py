"""Will it fit? The stitched design's LUT4 / FF / DSP / block RAM use, predicted per module.

The model reads what the stitcher plans (each module instance of ``hw/rtl`` with its
parameters: ``manifest.json``'s ``layers``, or :func:`plan_layers` on a HW-layer graph) and maps
it to the family's primitives the way our RTL and Yosys do:

* memories (weight ROMs, threshold ROMs, input buffers, line buffers, FIFOs) follow Yosys's
  ``memory_libmap`` cost rule: soft logic costs 1/16 per ROM bit and 1 per RAM bit; a block
  RAM 128 (ECP5 DP16KD, 18 kbit) or 64 (iCE40 SB_RAM40_4K, 4 kbit) per block; ECP5 LUT RAM
  (TRELLIS_DPR16X4) 4 per 16x4 plus the read mux. The cheapest wins, as in Yosys; a FIFO's
  ``ram_style`` (block RAM from 64 entries, fifo.v) is forced.
* multipliers: one MULT18X18D per PE x SIMD lane when both operands have more than 4 bits
  (mvau.v's ``MUL_STYLE`` auto: shift-and-add in LUTs otherwise; none for XNOR).
* flip-flops: the pipeline registers each module declares (mvau.v, thresh_search.v, ...).
* LUT4: adders, comparators, muxes and ROMs in logic, per module; one scale per family
  (``LUT_SCALE``) turns Yosys's LUT4 + carry cells into nextpnr's TRELLIS_COMB count.

Calibrated against recorded Yosys/nextpnr reports (tests/fixtures/fit_calibration.json,
tests/test_fit.py states the error per resource). ``check_fit`` refuses a design whose
prediction exceeds the board's capacity times a margin, before any tool runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from netfabric.sim.golden import THRESH_BANK_WORDS

from .boards import Board, get_board
from .errors import DesignDoesNotFitError

KINDS = ("LUT4", "FF", "DSP", "BRAM")
# Capacity used at most, per resource: block RAMs and multipliers are counted per memory and
# per lane by Yosys's own rules (recorded error a few blocks) and the placer can use every
# one, so up to 100%; LUT4 / FF are estimates (error up to ~15%) and nextpnr needs spare
# slices to route at 100 MHz, so they keep 15% headroom.
MARGIN = {"LUT4": 0.85, "FF": 0.85, "DSP": 1.0, "BRAM": 1.0}
# The per-module counts below follow the RTL's registers and adders; Yosys then shares
# and trims (sign bits of narrow adder-tree nodes, constant lanes) and nextpnr adds
# route-through LUTs (TRELLIS_COMB = about 1.24 x (LUT4 + 2 per CCU2C)). One scale per
# resource, fitted on the recorded reports (tests/fixtures/fit_calibration.json), absorbs both.
LUT_SCALE = {"ecp5": 0.86, "ice40": 0.7, "xc7": 0.7}
FF_SCALE = 0.73
# The board shell (PLL, UART host link, credit logic) around the accelerator.
SHELL = {"LUT4": 900, "FF": 700, "DSP": 0, "BRAM": 0}


@dataclass
class Usage:
    """Primitive counts of one module instance (or a sum)."""

    lut: float = 0.0
    ff: float = 0.0
    dsp: int = 0
    bram: int = 0
    lutram: int = 0  # ECP5 TRELLIS_DPR16X4 (its LUTs are in ``lut``)
    notes: list[str] = field(default_factory=list)

    def __iadd__(self, other: Usage) -> Usage:
        self.lut += other.lut
        self.ff += other.ff
        self.dsp += other.dsp
        self.bram += other.bram
        self.lutram += other.lutram
        self.notes += other.notes
        return self

    def __add__(self, other: Usage) -> Usage:
        total = Usage()
        total += self
        total += other
        return total


def _clog2(n: int) -> int:
    return max(0, math.ceil(math.log2(max(1, n))))


# --- memories -----------------------------------------------------------------------------------

# (depth, width) aspects of one block: ECP5 DP16KD (and the 512 x 36 PDPW16KD), iCE40 4K.
_BRAM_ASPECTS = {"ecp5": ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)),
                 "ice40": ((2048, 2), (1024, 4), (512, 8), (256, 16))}
_BRAM_COST = {"ecp5": 128, "ice40": 64}
_LUTRAM_FAMILIES = ("ecp5",)  # iCE40 has none
# where the flow moves a plain register after a block RAM into the block (hw/flow/bram_outreg.py)
_BRAM_OUTREG_FAMILIES = ("ecp5",)


def weight_bank_address_bits(width: int) -> int:
    """log2 of the words per bank of a deep weight ROM (mvau.v WBANK_AW = 0 picks the same):
    the deepest 18-kbit aspect that holds a ``width``-bit word without a cascade (16384 x 1,
    8192 x 2, 4096 x 4, then 2048 x 9, side by side for wider words). Yosys maps a deeper
    memory as a cascade of 2048 x 9 blocks with an output multiplexer after them (measured:
    16384 x 32 and 8192 x 32 ROMs), so each bank keeps to one aspect's depth."""
    return 14 if width == 1 else 13 if width == 2 else 12 if width <= 4 else 11


def bram_blocks(depth: int, width: int, family: str) -> int:
    """Blocks for a depth x width memory in the best aspect (Yosys's libmap picks it too)."""
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in _BRAM_ASPECTS[family])


def memory(depth: int, width: int, family: str, rom: bool, style: str = "auto") -> Usage:
    """A depth x width memory with a registered read port, as Yosys maps it."""
    bits = depth * width
    if bits == 0:
        return Usage()
    blocks = bram_blocks(depth, width, family) if family in _BRAM_COST else 0
    options: dict[str, float] = {}
    if blocks:
        options["block"] = blocks * _BRAM_COST[family]
    if family == "ecp5" and not rom:  # LUT RAM: 16 x 4 per cell, plus the read mux
        options["lutram"] = 4 * math.ceil(depth / 16) * math.ceil(width / 4) + \
            (math.ceil(depth / 16) - 1) * width
    options["logic"] = bits / 16 if rom else bits
    if style == "block" and "block" in options:
        choice = "block"
    elif style == "logic":  # (* rom_style = "logic" *)
        choice = "logic"
    elif style == "distributed" and family in _LUTRAM_FAMILIES:
        choice = "lutram" if "lutram" in options else "logic"
    elif style == "distributed":
        # no LUT RAM (iCE40: the flow defines NF_NO_LUTRAM, dropping ram_style): Yosys maps
        # the memory by its own cost, block RAM or flip-flops (seen on the digits build:
        # FIFOs and input buffers of 128+ bits in SB_RAM40_4K, a 16 x 4 FIFO in flip-flops)
        choice = min(("block", "logic") if "block" in options else ("logic",),
                     key=lambda k: (options[k], k != "logic"))
    else:  # the cheapest; a tie goes to logic (what Yosys did on TFC's 64 x 64 ROMs)
        choice = min(options, key=lambda k: (options[k], k != "logic"))
    if choice == "block":
        return Usage(bram=blocks, lut=width / 2)  # output mux / enables
    if choice == "lutram":
        cells = math.ceil(depth / 16) * math.ceil(width / 4)
        # the read mux: a LUT per bit per extra 16 words (the cells' own LUTs are in LUT_SCALE)
        return Usage(lutram=cells, lut=(math.ceil(depth / 16) - 1) * width, ff=width)
    if rom:  # a ROM in LUTs: a LUT4 per 16 words per bit, muxes above
        return Usage(lut=width * max(1, math.ceil(depth / 16)) * (1.0 if depth <= 16 else 1.3))
    return Usage(ff=bits, lut=bits / 2 + width * max(1, depth // 4))


# --- modules ------------------------------------------------------------------------------------


def _fifo(p: dict, family: str, style: int | None = None) -> Usage:
    width, depth = int(p["WIDTH"]), int(p["DEPTH"])
    style = int(p.get("RAM_STYLE", 0)) if style is None else style
    block = style == 2 or (style == 0 and depth >= 64)
    aw = _clog2(depth)
    u = memory(depth, width, family, rom=False, style="block" if block else "distributed")
    if not block and not u.bram:
        u.ff -= width  # the distributed FIFO reads asynchronously: no data register
    # pointers, count
    u += Usage(ff=3 * aw + 5, lut=30 + 3 * aw)
    if block and u.bram:
        # the read copy r (in the block where the flow absorbs it) and the three-entry output
        # buffer with its two 2:1 muxes (out of context in Yosys: FF +3W / +4W, LUT4 +2W)
        r = 0 if family in _BRAM_OUTREG_FAMILIES else width
        u += Usage(ff=3 * width + r, lut=2 * width)
    return u


def _credit_fifo(width: int, lat: int, family: str) -> Usage:
    depth = 1 << _clog2(lat + 6)
    credits = _clog2(depth) + 2  # the credit counter
    return _fifo({"WIDTH": width, "DEPTH": depth}, family) + Usage(ff=credits, lut=credits)


def _thresh_search(nf: int, pe: int, dbits: int, obits: int, family: str,
                   style: str = "auto") -> Usage:
    """thresh_search.v: per stage a (depth NF*2^j) x DBITS ROM per lane (NF: the tables per
    lane, NT, when compacted), 4 registers of the data and the count prefix, a DBITS
    comparator per lane."""
    u = Usage(ff=pe * dbits + 8, lut=4)
    cw, nfw = pe * obits, _clog2(nf)
    for j in range(obits):
        depth = nf << j
        # deep stages: banks of THRESH_BANK_WORDS, each its own memory (not in LUTs)
        banks = 1 if style == "logic" else math.ceil(depth / THRESH_BANK_WORDS)
        for _ in range(pe):
            m = Usage()
            for _ in range(banks):
                m += memory(depth if style == "logic" else min(depth, THRESH_BANK_WORDS), dbits,
                            family, rom=True, style=style)
            if style == "logic":  # ABC shares some LUTs between a table's entries: about
                m.lut *= 0.85     # 0.75 x on the INT8 MLP's leftover tables (near-progressions),
                                  # 1.0 x on the INT8 CNN's (ECP5 records, fitted on both)
            u += m
            u.ff += 2 * dbits + (0 if m.bram else dbits)  # q (in a block RAM), q_m, q_c
            u.lut += dbits  # the comparison (carry chain)
        u.ff += 4 * (pe * dbits + cw + nfw + 1)  # 3-deep wait line + the next stage's registers
        u.lut += nfw + 2
    u.ff += cw
    u.lut += cw
    return u


def _requant(nf: int, pe: int, dbits: int, obits: int, p: dict, family: str) -> Usage:
    """requant.v: per lane DBITS x MBITS as up to four <= 18x18 partial products (one
    MULT18X18D each), the addend, the sum in three stages, the clip; the constants ROM in
    LUTs."""
    mbits, bbits, shift = int(p["RQ_MBITS"]), int(p["RQ_BBITS"]), int(p["RQ_SHIFT"])
    rw, pw = 1 + bbits + mbits, dbits + mbits + 1
    sw = max(max(pw, bbits) + 1, shift + obits + 1)
    pieces = math.ceil(dbits / 18) * math.ceil((mbits + 1) / 18)
    # the ROM is read at two folds every cycle (the next input's and the one after), each
    # read into a register; a mux per bit picks one
    u = memory(nf, pe * rw, family, rom=True, style="logic")
    u += memory(nf, pe * rw, family, rom=True, style="logic")
    u += Usage(ff=2 * pe * rw, lut=pe * rw)
    # the operand and product registers are the DSP blocks' own (mul_reg.v); in the fabric:
    # the addend twice, the products again (sign copies merged), two partial sums, the sum
    u += Usage(ff=pe * (bbits + 1) + 2 * _clog2(nf) + 7, lut=2 * _clog2(nf) + 2)
    # (Yosys drops the sum's bits below the shift; checked against synth_ecp5 of one lane)
    u += Usage(dsp=pe * pieces, ff=pe * (2 * bbits + pw + 36 + (sw - shift) + obits + 4),
               lut=pe * (2 * sw + 2 * (sw - shift) + obits))
    return u


def _activation(nf: int, pe: int, dbits: int, obits: int, p: dict, family: str) -> tuple[Usage, int]:
    """requant_act.v (tables only without RQ): its usage and latency."""
    if not int(p.get("RQ", 0)):
        return _thresh_search(nf, pe, dbits, obits, family), 4 * obits + 2
    nt = int(p.get("NT", 0))
    u = _requant(nf, pe, dbits, obits, p, family)
    if not nt:
        return u, 6
    style = "logic" if int(p.get("ROM_STYLE", 0)) else "auto"
    u += _thresh_search(nt, pe, dbits, obits, family, style)
    u += memory(nf, pe * _clog2(nt), family, rom=True, style="logic")  # table numbers
    # the requantizer's results wait for the search's; a mux per lane
    u += Usage(ff=(4 * obits - 2) * pe * (obits + 1), lut=pe * obits)
    return u, 4 * obits + 2


def _mvau(p: dict, family: str) -> Usage:
    mw, mh, pe, simd = (int(p[k]) for k in ("MW", "MH", "PE", "SIMD"))
    wbits, ibits, acc = int(p["WBITS"]), int(p["IBITS"]), int(p["ACCBITS"])
    xnor, use_act, obits = bool(p.get("XNOR", 0)), bool(p["USE_ACT"]), int(p["OBITS"])
    sf, nf = mw // simd, mh // pe
    levels = _clog2(simd)
    simdp = 1 << levels
    pw = 2 if xnor else ibits + wbits + 2
    style = int(p.get("MUL_STYLE", 0))
    lutmul = style == 1 or (style == 0 and (wbits <= 4 or ibits <= 4))
    iw, ww = simd * ibits, pe * simd * wbits
    lanes = pe * simd
    u = Usage(ff=3 * (6 + levels) + 2 * _clog2(nf * sf) + _clog2(sf) + _clog2(nf) + 8,
              lut=2 * _clog2(nf * sf) + _clog2(sf) + _clog2(nf) + 10)
    bank_aw = int(p.get("WBANK_AW", 0)) or weight_bank_address_bits(ww)
    nbank = -(-(nf * sf) // (1 << bank_aw))  # mvau.v: one bank up to 2^WBANK_AW words
    if nbank == 1:
        rom = memory(nf * sf, ww, family, rom=True)
        u += rom
        # w_q (a block RAM's own register), w_m beside the ROM, w_r at the multipliers (kept)
        u.ff += ww * (2 if rom.bram else 3)
    else:  # banks: each with its read register and one more, then the bank mux, w_m, w_r
        for b in range(nbank):
            u += memory(min(1 << bank_aw, nf * sf - (b << bank_aw)), ww, family, rom=True)
        u.ff += ww * (nbank + 2)
        u.lut += ww * (nbank - 1)
    u.ff += 3 * iw  # input data registers, x_m beside w_m
    if nf > 1:
        # mvau.v: input buffers up to 8 kbit in LUT RAM
        u += memory(sf, iw, family, rom=False, style="distributed" if sf * iw <= 8192 else "auto")
        u.ff += iw
        u.lut += iw  # stream / buffer select
    u.ff += pe * iw  # per-PE operand copies (kept)
    lane_bits = 1 if xnor else pw
    u.ff += lanes * ((2 if xnor else ibits + wbits) + lane_bits)
    if xnor:
        u.lut += lanes
    elif lutmul:
        nb = min(wbits, ibits)
        u.lut += lanes * nb * pw * 0.6
    else:
        u.dsp += lanes
        u.lut += lanes * 2
    # registered adder tree: node widths pw + levels below, at most ACCBITS
    tree = simdp * min(lane_bits, acc)
    for d in range(levels):
        tree += (1 << d) * min(pw + levels - d, acc)
    adders = sum((1 << d) * min(pw + levels - d, acc) for d in range(levels))
    u.ff += pe * (tree + 2 * acc)
    u.lut += pe * (adders + acc * 1.5)
    ob = obits if use_act else acc
    act_lat = 0
    if use_act:
        a, act_lat = _activation(nf, pe, acc, obits, p, family)
        u += a
    u += _credit_fifo(pe * ob, 7 + levels + act_lat, family)
    return u


def _thresholding(p: dict, family: str) -> Usage:
    ch, pe, obits, tbits = int(p["CHANNELS"]), int(p["PE"]), int(p["OBITS"]), int(p["TBITS"])
    u, lat = _activation(ch // pe, pe, tbits, obits, p, family)
    return u + _credit_fifo(pe * obits, lat, family)


def _swg(p: dict, family: str) -> Usage:
    h, w, c, simd, k, s, bits = (int(p[x]) for x in ("IFM_H", "IFM_W", "IFM_CH", "SIMD", "K",
                                                       "S", "BITS"))
    cf = c // simd
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    dw = simd * bits
    span = ((k - 1) * w + k) * cf
    rel_f = (h * w - (oh - 1) * s * w - (ow - 1) * s) * cf
    need = int(p.get("BUF_DEPTH", 0)) or max((k + s) * w * cf + k * cf, rel_f + span)
    n = 1 << _clog2(max(need, span, 3))
    u = memory(n, dw, family, rom=False)
    aw = _clog2(n)
    ctrl = 8 * aw + 4 * _clog2(h * w * cf) + 20
    u += Usage(ff=ctrl + 2 * dw, lut=ctrl * 1.5 + dw)
    return u


def _maxpool(p: dict, family: str) -> Usage:
    ch, pe, bits, w, k = (int(p[x]) for x in ("CHANNELS", "PE", "BITS", "IFM_W", "K"))
    dw = pe * bits
    md = (w // k) * (ch // pe)
    u = memory(md, dw, family, rom=False)
    u += Usage(ff=3 * dw + 4 * _clog2(md) + 20, lut=2 * dw + 4 * _clog2(md) + 20)
    return u + _credit_fifo(dw, 3, family)


def _dwc(p: dict, family: str) -> Usage:
    iw, ow = int(p["IN_WIDTH"]) * int(p["BITS"]), int(p["OUT_WIDTH"]) * int(p["BITS"])
    r = max(iw, ow) // max(1, min(iw, ow))
    if ow > iw:  # collect R-1 beats, then the output word
        return Usage(ff=2 * ow - iw + _clog2(r) + 2, lut=ow - iw + _clog2(r) + 4)
    return Usage(ff=2 * iw + _clog2(r) + 2, lut=iw + ow + _clog2(r) + 4)  # shift out


def _label_select(p: dict, family: str) -> Usage:
    n, pe, bits = int(p["NLABELS"]), int(p["PE"]), int(p["BITS"])
    vb, idxw, levels = bits + 1, _clog2(n), _clog2(pe)
    tree = (2 * (1 << levels) - 1) * (vb + max(1, levels))
    # the running maximum's lookahead stage: q (value, index) and three registered compares
    return Usage(ff=tree + 4 * vb + 5 * idxw + 19, lut=tree * 1.2 + 3 * vb + 24) + \
        _credit_fifo(idxw, 3 + levels, family)  # ODEPTH = 2^clog2(D + 8), D = 1 + levels


def _segment_attention(p: dict, family: str) -> Usage:
    """segment_attention.v: the segment buffer (input beats, one registered read port: block
    RAM), q of a head in registers, L = gcd(PE, HEADDIM) q.k and p.v lanes, the softmax (exp
    ROM, row arrays, divider, e * reciprocal), two single-lane threshold searches, the output
    FIFO. Calibrated on a Yosys synth_ecp5 of the shipped transformer's attention (see
    tests/test_fit.py)."""
    ch, pe, ibits, heads, dh = (int(p[k]) for k in ("CHANNELS", "PE", "IBITS", "HEADS", "HEADDIM"))
    seglen, qbits, sbits, ebits = (int(p[k]) for k in ("SEGLEN", "QBITS", "SBITS", "EBITS"))
    rbits, pbits, abits, obits = (int(p[k]) for k in ("RBITS", "PBITS", "ABITS", "OBITS"))
    lutn, ope = int(p["LUTN"]), int(p.get("OPE", 1))
    ntok, shift = int(p["NTOK"]), int(p.get("SHIFT", 0))
    lanes = math.gcd(pe, dh)
    r, wb = pe // lanes, lanes * ibits
    d = heads * dh
    nseg = -(-(shift + ntok) // seglen)
    cw = _clog2(max(seglen * ch, rbits + 1, (nseg + 1) * seglen + shift) + 1) + 1
    sw = ebits + _clog2(seglen + 1)
    mw = ebits + rbits + 2
    tokb = d // ope
    # The module's own logic in Yosys units (LUT4 + 2 per CCU2C, TRELLIS_FF), then brought to
    # the global scales: these registers are all kept (unlike the adder trees FF_SCALE trims).
    # q of the head (stream or buffer) and its chunk muxes
    lut, ff = dh * ibits * 1.5 + (r - 1) * wb, dh * ibits
    # q.k / p.v lanes: adders (the products: a plain "*", a MULT18X18D from 2 x 2 bits)
    lut += 2 * lanes * (qbits + abits)
    # p.v accumulators (registers, L written a cycle) and their read muxes
    lut, ff = lut + 1.5 * dh * abits, ff + dh * abits
    # softmax: exp ROM in logic, divider, e * reciprocal, rounding and clip
    lut += memory(lutn, ebits, family, rom=True, style="logic").lut + 3 * (sw + 2) + 2 * mw + \
        pbits + 4 * sbits
    ff += (rbits + 1) + 2 * sw + 1 + sbits + qbits
    # control: counters, key mask (2 comparators per slot), buffer addresses (1.9: measured)
    lut += 1.9 * cw * (seglen + 12)
    ff += 13 * cw + ope * obits + 2 * _clog2(2 * tokb + 1)
    # the pipelines' registers (buffer word, q.k operands, v for p.v, e * r, p, q.k sum, buffer address,
    # key mask, exp index and value, reciprocal, 3 * S, issue flags) and the radix-4
    # divider's two extra subtractors, the e * r pieces' sum and 3 * S
    chw, jw = _clog2(max(dh // lanes, 2)), _clog2(max(seglen, 2))
    ff += 4 * wb + wb * r + mw + pbits + qbits + _clog2(max(seglen * ch // pe, 2)) + 1 + seglen + \
        sbits + ebits + 2 * jw + (sw + 2) + (rbits + 1) + 2 * (cw + 1) + 12 + 6 * (2 + chw) + \
        6 * cw
    lut += 2 * (sw + 3) + mw + sw
    route = 1.24 if family == "ecp5" else 1.0  # TRELLIS_COMB per Yosys LUT4 (see LUT_SCALE)
    u = Usage(lut=lut * route / LUT_SCALE.get(family, 1.0), ff=ff / FF_SCALE,
              dsp=lanes * ((ibits >= 2) + (pbits >= 2)))
    u += memory(seglen * ch // pe, pe * ibits, family, rom=False)   # the segment buffer
    # row arrays (exp values, scores), read asynchronously: LUT RAM, or flip-flops on a
    # family without it (kept from before the iCE40 FIFO rule; no iCE40 attention build yet)
    row_style = "distributed" if family in _LUTRAM_FAMILIES else "logic"
    for width in (ebits, sbits):
        u += memory(seglen, width, family, rom=False, style=row_style)
        u.ff -= width
    u.dsp += math.ceil(ebits / 18) * math.ceil((rbits + 1) / 18)  # e * reciprocal
    u += _thresh_search(1, 1, qbits, sbits, family) + _thresh_search(1, 1, abits, obits, family)
    return u + _fifo({"WIDTH": ope * obits, "DEPTH": 2 * tokb, "RAM_STYLE": 1}, family)


def _segment_pad(p: dict, family: str) -> Usage:
    """segment_pad.v / segment_unpad.v: fold and slot counters, a beat mux, a 2-beat FIFO."""
    ch, pe, bits = int(p["CHANNELS"]), int(p["PE"]), int(p["BITS"])
    ntok, seglen, shift = int(p["NTOK"]), int(p["SEGLEN"]), int(p.get("SHIFT", 0))
    cnt = _clog2(ch // pe) + _clog2(-(-(shift + ntok) // seglen) * seglen + 1)
    return Usage(ff=cnt, lut=2 * cnt + pe * bits / 2 + 4) + \
        _fifo({"WIDTH": pe * bits, "DEPTH": 2, "RAM_STYLE": 1}, family)


def _eltwise_add(p: dict, family: str) -> Usage:
    """eltwise_add.v: PE adders, the constant right-hand side in a block-RAM ROM (CONST_RHS)
    read ahead into a 4-word FIFO (its second read register is moved into the block RAM on
    ECP5, so not counted), a 2-beat FIFO."""
    pe, rbits, obits = int(p["PE"]), int(p["RBITS"]), int(p["OBITS"])
    u = Usage(lut=pe * obits + 4)
    if int(p.get("CONST_RHS", 0)):
        words = int(p["RHS_WORDS"])
        u += memory(words, pe * rbits, family, rom=True, style="block")
        u += Usage(ff=_clog2(words) + 5, lut=2 * _clog2(words) + 4)
        u += _fifo({"WIDTH": pe * rbits, "DEPTH": 4, "RAM_STYLE": 1}, family)
    return u + _fifo({"WIDTH": pe * obits, "DEPTH": 2, "RAM_STYLE": 1}, family)


def _global_acc_pool(p: dict, family: str) -> Usage:
    """global_acc_pool.v: CHANNELS/PE accumulators (LUT RAM, read asynchronously), PE adders,
    fold / vector counters, a 2-beat FIFO."""
    ch, pe, obits, nvec = int(p["CHANNELS"]), int(p["PE"]), int(p["OBITS"]), int(p["NVEC"])
    u = memory(ch // pe, pe * obits, family, rom=False, style="distributed")
    u.ff -= pe * obits
    cnt = _clog2(ch // pe) + _clog2(nvec)
    u += Usage(ff=cnt, lut=2 * pe * obits + 2 * cnt)
    return u + _fifo({"WIDTH": pe * obits, "DEPTH": 2, "RAM_STYLE": 1}, family)


def _dup_streams(p: dict, family: str) -> Usage:
    """dup_streams.v: a 2-beat FIFO per output."""
    w = int(p["PE"]) * int(p["BITS"])
    u = Usage(lut=4)
    for _ in range(int(p.get("NOUT", 2))):
        u += _fifo({"WIDTH": w, "DEPTH": 2, "RAM_STYLE": 1}, family)
    return u


def _generic(p: dict, family: str) -> Usage:
    """A module without its own model: its stream widths' worth of registers and logic."""
    width = sum(int(v) for k, v in p.items() if k.endswith(("WIDTH", "BITS")) and
                isinstance(v, int))
    return Usage(ff=4 * width + 32, lut=4 * width + 32, notes=["generic model"])


MODELS: dict[str, Callable[[dict, str], Usage]] = {
    "mvau": _mvau, "thresholding": _thresholding, "swg": _swg, "maxpool": _maxpool,
    "fifo": _fifo, "dwc": _dwc, "label_select": _label_select,
    "segment_attention": _segment_attention, "segment_pad": _segment_pad,
    "segment_unpad": _segment_pad, "eltwise_add": _eltwise_add,
    "global_acc_pool": _global_acc_pool, "dup_streams": _dup_streams,
}


def module_usage(module: str, params: dict, family: str) -> Usage:
    return MODELS.get(module, _generic)(params, family)


# --- prediction and the fit check ---------------------------------------------------------------


@dataclass
class Prediction:
    """Predicted use of the whole design (accelerator + board shell) on one board."""

    board: str
    family: str
    used: dict[str, int]
    capacity: dict[str, int]
    per_layer: dict[str, dict[str, int]]
    lutram: int = 0

    def fraction(self, kind: str) -> float:
        cap = self.capacity.get(kind, 0)
        return self.used.get(kind, 0) / cap if cap else 0.0

    def over(self, margin: dict[str, float] | None = None) -> list[str]:
        """Resources over capacity x margin, most over first."""
        margin = margin or MARGIN
        bad = [k for k in KINDS if self.capacity.get(k) is not None
               and self.used.get(k, 0) > self.capacity[k] * margin[k]]
        return sorted(bad, key=lambda k: -self.fraction(k))

    def binding(self) -> str:
        """The resource closest to its limit (relative to its margin)."""
        return max((k for k in KINDS if self.capacity.get(k)),
                   key=lambda k: self.fraction(k) / MARGIN[k])

    def fits(self, margin: dict[str, float] | None = None) -> bool:
        return not self.over(margin)

    def describe(self, kinds: list[str] | None = None) -> str:
        names = primitive_names(self.family)
        return "; ".join(f"{names[k]} needs {self.used[k]:,}, device has {self.capacity[k]:,} "
                         f"(limit {MARGIN[k]:.0%})" for k in (kinds or KINDS)
                         if self.capacity.get(k) is not None)

    def to_dict(self) -> dict:
        return {"board": self.board, "used": self.used, "capacity": self.capacity,
                "margin": MARGIN, "lutram": self.lutram, "per_layer": self.per_layer}


def primitive_names(family: str) -> dict[str, str]:
    if family == "ice40":
        return {"LUT4": "LUT4 (SB_LUT4)", "FF": "FF (SB_DFF)", "DSP": "DSP (SB_MAC16)",
                "BRAM": "BRAM (SB_RAM40_4K)"}
    return {"LUT4": "LUT4", "FF": "FF", "DSP": "DSP (MULT18X18D)", "BRAM": "BRAM (DP16KD)"}


def predict(layers: list[dict], board: str | Board) -> Prediction:
    """``layers``: the manifest's (name, module, params) instances."""
    b = get_board(board) if isinstance(board, str) else board
    family = b.family
    per_layer: dict[str, dict[str, int]] = {}
    total = Usage(lut=SHELL["LUT4"], ff=SHELL["FF"])
    # the host link's 16-byte receive FIFO (host_link.v RX_FIFO_DEPTH): LUT RAM on ECP5 (in
    # SHELL's counts), a block RAM on a family without LUT RAM
    total.bram += memory(16, 8, family, rom=False, style="distributed").bram
    for layer in layers:
        u = module_usage(layer["module"], layer["params"], family)
        total += u
        per_layer[layer["name"]] = {"LUT4": round(u.lut * LUT_SCALE[family]),
                                    "FF": round(u.ff * FF_SCALE),
                                    "DSP": u.dsp, "BRAM": u.bram}
    used = {"LUT4": round(total.lut * LUT_SCALE[family]), "FF": round(total.ff * FF_SCALE),
            "DSP": total.dsp, "BRAM": total.bram}
    return Prediction(b.name, family, used, dict(b.capacity), per_layer, total.lutram)


def compare(pred: Prediction | dict[str, float], reported: dict[str, int]) -> dict[str, dict]:
    """Predicted (a Prediction, or its ``used`` counts as saved in estimates.json) vs reported
    per resource, with the relative error of the prediction."""
    used = pred.used if isinstance(pred, Prediction) else pred
    out = {}
    for kind in KINDS:
        if kind in reported and kind in used:
            rep, pre = reported[kind], used[kind]
            out[kind] = {"predicted": pre, "reported": rep,
                         "error": round((pre - rep) / rep, 3) if rep else None}
    return out


def check_fit(layers: list[dict], board: str | Board) -> Prediction:
    """The prediction, or DesignDoesNotFitError naming each binding resource."""
    pred = predict(layers, board)
    over = pred.over()
    if over:
        first = over[0]
        raise DesignDoesNotFitError(
            f"design does not fit {pred.board} (predicted before synthesis): "
            f"{pred.describe(over)}; fold for the board (netfabric compile --board "
            f"{pred.board}) or choose a lower --target-fps",
            first, pred.used[first], pred.capacity[first])
    return pred


def plan_layers(graph) -> list[dict]:
    """The stitcher's module instances for a HW-layer graph (a HWGraph view), in memory:
    the same list ``manifest.json`` records, without writing a project."""
    from netfabric.hw.stitch import connect, plan_stages

    instances, *_ = connect(graph, plan_stages(graph))
    return [{"name": s.name, "module": s.module, "params": s.params} for s in instances]
