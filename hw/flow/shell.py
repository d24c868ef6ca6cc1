"""Generate the board shell: a top level that keeps the whole accelerator alive on a real board.

A stitched accelerator has wide AXI-Stream ports that cannot all be pins. The shell drives them
from on-chip logic so that synthesis cannot remove anything and timing covers the real paths:

* core clock from the board oscillator through the family's PLL (``pll.py``) — or the
  oscillator itself when it already has the requested frequency;
* reset held until the PLL locks, then 16 more cycles;
* input: a free-running 32-bit LFSR fills ``s_axis_tdata`` (shifted in 32 bits per beat for wide
  buses) and randomises ``s_axis_tvalid`` and ``m_axis_tready`` (~75 % duty), so the stall and
  back-pressure logic is exercised, following AXI-Stream rules (data held until accepted);
* output: every accepted ``m_axis_tdata`` beat is registered, XOR-folded in pipelined 16:1
  stages (so the fold is never the critical path) and fed into a MISR whose bits drive the LEDs.

Ports: ``clk_osc`` and ``led[N-1:0]``, matching ``hw/boards/<board>.*``.

That is the shell of the vendor-flow board (pynq-z2). The open boards (ECP5, iCE40) get the
host-link shell instead (``_link_shell``): the accelerator's streams come from and go to the
board's FTDI USB-serial port through ``hw/rtl/host_link.v`` (framed protocol: hw/rtl/README.md),
and the LEDs show the link's state. Its ports add ``uart_rx``/``uart_tx``; its baud divider and
inter-byte timeout are parameters of ``nf_board_top`` (defaults: the board's baud at the core
clock), so a simulation can run the same source with a faster line. For simulation,
```define NF_SIM_NO_PLL`` replaces the PLL primitive by a wire (the only difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .boards import BOARDS_DIR, Board
from .errors import ManifestError
from .manifest import Manifest
from .pll import PllPlan

SHELL_TOP = "nf_board_top"
SHELL_FILE = f"{SHELL_TOP}.v"

_LFSR_SEED = "32'hACE1_2025"
_LFSR_TAPS = "32'h8020_0003"  # x^32 + x^22 + x^2 + x + 1: maximal length
_FOLD = 16  # XOR inputs per pipelined fold stage: two LUT4 levels

# Library modules the host-link shell instantiates (copied into the build next to the shell).
LINK_SOURCES = ("host_link.v", "uart_rx.v", "uart_tx.v")
LINK_TIMEOUT_S = 0.01  # inter-byte timeout: USB-serial adapters leave gaps of a few ms at most
SIM_DEFINE = "NF_SIM_NO_PLL"


def rx_fifo_depth(manifest: Manifest) -> int:
    """Bytes of the link's receive FIFO: every request the host keeps in flight (header
    included), so an accelerator that takes its input slower than the line never loses a
    byte; a power of two for the RAM."""
    from netfabric.host.link_protocol import WINDOW

    need = WINDOW * (3 + (manifest.in_beats or 1) * -(-manifest.in_width_bits // 8))
    return 1 << max(1, (need - 1).bit_length())


@dataclass(frozen=True)
class LinkPlan:
    """The host link's line timing at the core clock."""

    baud: int  # what the host opens the port with (the board's FTDI rate)
    clock_hz: float
    clks_per_bit: int
    timeout_cycles: int

    @property
    def actual_baud(self) -> float:
        return self.clock_hz / self.clks_per_bit

    @property
    def baud_error(self) -> float:
        """Relative error of the FPGA's bit time against ``baud`` (UART tolerates ~2 %)."""
        return self.actual_baud / self.baud - 1.0


def plan_link(board: Board, pll: PllPlan | None) -> LinkPlan | None:
    """Baud divider and timeout for ``board``'s host link, or None without a link."""
    if not board.link_baud:
        return None
    clock_hz = (pll.fout_mhz if pll else board.osc_mhz) * 1e6
    return LinkPlan(board.link_baud, clock_hz, max(4, round(clock_hz / board.link_baud)),
                    round(clock_hz * LINK_TIMEOUT_S))


def shell_sources(board: Board) -> list[Path]:
    """Library files the shell of ``board`` needs besides the accelerator's own sources."""
    rtl = BOARDS_DIR.parent / "rtl"
    return [rtl / name for name in LINK_SOURCES] if board.link_baud else []


def generate_shell(manifest: Manifest, board: Board, pll: PllPlan | None, *,
                   host_link: bool = True) -> str:
    """Verilog source of ``nf_board_top`` wrapping ``manifest.top`` for ``board``: with the
    host link where the board has one, else (or with ``host_link=False``) the LFSR shell."""
    link = plan_link(board, pll)
    if link is not None and host_link:
        return _link_shell(manifest, board, pll, link)
    return _lfsr_shell(manifest, board, pll)


def _accel_instance(manifest: Manifest) -> list[str]:
    """The stitched accelerator, its streams on the shell's s_/m_ t{data,valid,ready} wires."""
    p = manifest.ports
    return [
        f"    {manifest.top} u_accel (",
        f"        .{p.clk}(clk),",
        f"        .{p.rst_n}(rst_n),",
        f"        .{p.s_axis}_tdata(s_tdata),",
        f"        .{p.s_axis}_tvalid(s_tvalid),",
        f"        .{p.s_axis}_tready(s_tready),",
        f"        .{p.m_axis}_tdata(m_tdata),",
        f"        .{p.m_axis}_tvalid(m_tvalid),",
        f"        .{p.m_axis}_tready(m_tready)",
        "    );",
    ]


def _lfsr_shell(manifest: Manifest, board: Board, pll: PllPlan | None) -> str:
    in_w, out_w, nled = manifest.in_width_bits, manifest.out_width_bits, board.leds
    clock = f"{pll.fout_mhz:g} MHz from PLL" if pll else f"{board.osc_mhz:g} MHz oscillator"
    lines = [
        f"// Board shell for {board.name} ({board.part}) around {manifest.top}.",
        "// Generated by netfabric.hw.flow.shell: do not edit.",
        f"// Core clock: {clock}.",
        f"module {SHELL_TOP} (",
        "    input  wire clk_osc,",
        f"    output wire [{nled - 1}:0] led",
        ");",
        "    wire clk;",
        "    wire pll_locked;",
        *_clock(board, pll),
        "",
        "    // Reset: hold the accelerator until the PLL has locked, then 16 more cycles.",
        "    reg [1:0] lock_sync = 2'b00;",
        "    reg [4:0] rst_cnt = 5'd0;",
        "    wire run = rst_cnt[4];",
        "    always @(posedge clk) begin",
        "        lock_sync <= {lock_sync[0], pll_locked};",
        "        if (!lock_sync[1]) rst_cnt <= 5'd0;",
        "        else if (!run) rst_cnt <= rst_cnt + 5'd1;",
        "    end",
        "    // The accelerator's reset comes from one active-high register, released at the edge",
        "    // where run rises; the accelerator registers it once more per module (a reset tree:",
        "    // no one net spans the chip), so its modules leave reset at the edge after, where",
        "    // s_tvalid can first rise: no beat meets a reset.",
        "    reg acc_rst = 1'b1;",
        "    always @(posedge clk) acc_rst <= !(run || rst_cnt == 5'd15);",
        "    wire rst_n = !acc_rst;",
        "",
        "    // Stimulus: free-running Galois LFSR.",
        "    reg [31:0] lfsr;",
        "    always @(posedge clk)",
        f"        if (!run) lfsr <= {_LFSR_SEED};",
        f"        else lfsr <= {{1'b0, lfsr[31:1]}} ^ (lfsr[0] ? {_LFSR_TAPS} : 32'h0);",
        "",
        "    // Input stream: new data only once the current beat is accepted (AXI-Stream rule).",
        f"    reg [{in_w - 1}:0] s_tdata;",
        "    reg s_tvalid;",
        "    wire s_tready;",
        "    always @(posedge clk)",
        "        if (!run) s_tvalid <= 1'b0;",
        "        else if (!s_tvalid || s_tready) begin",
        "            s_tvalid <= lfsr[7] | lfsr[13];",
        f"            s_tdata <= {_next_data(in_w)};",
        "        end",
        "",
        "    // Output stream: random back-pressure; register every accepted beat.",
        f"    wire [{out_w - 1}:0] m_tdata;",
        "    wire m_tvalid;",
        "    reg m_tready;",
        f"    reg [{out_w - 1}:0] fold0;",
        "    reg fold0_v;",
        "    always @(posedge clk) begin",
        "        m_tready <= run & (lfsr[19] | lfsr[29]);",
        "        fold0_v <= run & m_tvalid & m_tready;",
        "        if (m_tvalid && m_tready) fold0 <= m_tdata;",
        "    end",
        *_fold_stages(out_w, nled),
        "",
        *_accel_instance(manifest),
        "endmodule",
        "",
    ]
    return "\n".join(lines)


def _next_data(in_w: int) -> str:
    if in_w <= 32:
        return f"lfsr[{in_w - 1}:0]"
    # Wide buses: shift in 32 fresh bits per beat; cheap and keeps every bit toggling.
    return f"{{s_tdata[{in_w - 33}:0], lfsr}}"


def _fold_stages(out_w: int, nled: int) -> list[str]:
    """XOR-fold ``fold0`` down to at most ``nled`` bits, one register stage per 16:1 step."""
    lines: list[str] = []
    width, stage = out_w, 0
    while width > nled:
        # At most 16 inputs per output bit, but never fewer bits than LEDs.
        new_width = max(-(-width // _FOLD), nled)
        cur, nxt = f"fold{stage}", f"fold{stage + 1}"
        lines += [
            f"    reg [{new_width - 1}:0] {nxt};",
            f"    reg {nxt}_v;",
            "    always @(posedge clk) begin",
            f"        {nxt}_v <= {cur}_v;",
        ]
        for j in range(new_width):
            lo, hi = j * width // new_width, (j + 1) * width // new_width - 1
            src = f"{cur}[{lo}]" if lo == hi else f"^{cur}[{hi}:{lo}]"
            lines.append(f"        {nxt}[{j}] <= {src};")
        lines.append("    end")
        width, stage = new_width, stage + 1
    last = f"fold{stage}"
    pad = f"{{{nled - width}'b0, {last}}}" if width < nled else last
    rot = f"{{sig[{nled - 2}:0], sig[{nled - 1}]}}" if nled > 1 else "sig"
    lines += [
        "",
        "    // MISR: the LEDs show a signature of the whole output stream.",
        f"    reg [{nled - 1}:0] sig;",
        "    always @(posedge clk)",
        f"        if (!run) sig <= {nled}'d0;",
        f"        else if ({last}_v) sig <= {rot} ^ {pad};",
        "    assign led = sig;",
    ]
    return lines


def _clock(board: Board, pll: PllPlan | None) -> list[str]:
    if pll is None:
        return ["    assign clk = clk_osc;", "    assign pll_locked = 1'b1;"]
    q = pll.params
    if board.family == "ecp5":
        # Same parameter set as ecppll's output; nextpnr derives the CLKOP constraint from it.
        return [
            f'    (* FREQUENCY_PIN_CLKI="{pll.fin_mhz:g}" *)',
            f'    (* FREQUENCY_PIN_CLKOP="{pll.fout_mhz:g}" *)',
            '    (* ICP_CURRENT="12" *) (* LPF_RESISTOR="8" *) (* MFG_ENABLE_FILTEROPAMP="1" *)',
            '    (* MFG_GMCREF_SEL="2" *)',
            "    EHXPLLL #(",
            '        .PLLRST_ENA("DISABLED"), .INTFB_WAKE("DISABLED"),',
            '        .STDBY_ENABLE("DISABLED"), .DPHASE_SOURCE("DISABLED"),',
            '        .OUTDIVIDER_MUXA("DIVA"), .OUTDIVIDER_MUXB("DIVB"),',
            '        .OUTDIVIDER_MUXC("DIVC"), .OUTDIVIDER_MUXD("DIVD"),',
            f"        .CLKI_DIV({q['CLKI_DIV']}), .CLKFB_DIV({q['CLKFB_DIV']}),",
            f'        .CLKOP_ENABLE("ENABLED"), .CLKOP_DIV({q["CLKOP_DIV"]}),',
            f"        .CLKOP_CPHASE({q['CLKOP_CPHASE']}), .CLKOP_FPHASE({q['CLKOP_FPHASE']}),",
            '        .FEEDBK_PATH("CLKOP")',
            "    ) u_pll (",
            "        .RST(1'b0), .STDBY(1'b0), .CLKI(clk_osc), .CLKOP(clk), .CLKFB(clk),",
            "        .CLKINTFB(), .PHASESEL0(1'b0), .PHASESEL1(1'b0), .PHASEDIR(1'b1),",
            "        .PHASESTEP(1'b1), .PHASELOADREG(1'b1), .PLLWAKESYNC(1'b0), .ENCLKOP(1'b0),",
            "        .LOCK(pll_locked)",
            "    );",
        ]
    if board.family == "ice40":
        # The oscillator pin is a PLL-capable pad: SB_PLL40_PAD takes it directly.
        return [
            "    SB_PLL40_PAD #(",
            '        .FEEDBACK_PATH("SIMPLE"), .PLLOUT_SELECT("GENCLK"),',
            f"        .DIVR(4'd{q['DIVR']}), .DIVF(7'd{q['DIVF']}), .DIVQ(3'd{q['DIVQ']}),",
            f"        .FILTER_RANGE(3'd{q['FILTER_RANGE']})",
            "    ) u_pll (",
            "        .PACKAGEPIN(clk_osc), .PLLOUTGLOBAL(clk), .LOCK(pll_locked),",
            "        .RESETB(1'b1), .BYPASS(1'b0)",
            "    );",
        ]
    return [
        "    wire clk_fb, clk_pll;",
        "    PLLE2_BASE #(",
        f"        .CLKIN1_PERIOD({1000.0 / pll.fin_mhz:.3f}), .DIVCLK_DIVIDE({q['DIVCLK_DIVIDE']}),",
        f"        .CLKFBOUT_MULT({q['CLKFBOUT_MULT']}), .CLKOUT0_DIVIDE({q['CLKOUT0_DIVIDE']})",
        "    ) u_pll (",
        "        .CLKIN1(clk_osc), .CLKFBIN(clk_fb), .CLKFBOUT(clk_fb), .CLKOUT0(clk_pll),",
        "        .LOCKED(pll_locked), .RST(1'b0), .PWRDWN(1'b0)",
        "    );",
        "    BUFG u_bufg (.I(clk_pll), .O(clk));",
    ]


def _link_shell(manifest: Manifest, board: Board, pll: PllPlan | None, link: LinkPlan) -> str:
    in_w, out_w, nled = manifest.in_width_bits, manifest.out_width_bits, board.leds
    if manifest.in_beats is None or manifest.out_beats is None:
        raise ManifestError(
            f"{manifest.project_dir}: the host link needs input/output.beats_per_frame in "
            "manifest.json (written by netfabric's stitcher)")
    for side, width in (("in", in_w), ("out", out_w)):
        if width % 8:
            raise ManifestError(f"{manifest.project_dir}: {side}_width_bits ({width}) must be "
                                "a multiple of 8 for the host link (byte-padded tdata)")
    clock = f"{pll.fout_mhz:g} MHz from PLL" if pll else f"{board.osc_mhz:g} MHz oscillator"
    hz = link.clock_hz
    hb = max(2, int(hz).bit_length() - 1)  # heartbeat: top bit toggles every ~0.3-0.7 s
    act = max(4, int(hz / 25).bit_length())  # activity LEDs stay lit ~40 ms after an event
    led_expr = "~status" if board.leds_active_low else "status"
    clock_lines = _clock(board, pll)
    if pll is not None:  # simulation: the same top with the PLL primitive as a wire
        clock_lines = [f"`ifdef {SIM_DEFINE}", *_clock(board, None), "`else",
                       *clock_lines, "`endif"]
    lines = [
        f"// Board shell for {board.name} ({board.part}) around {manifest.top}.",
        "// Generated by netfabric.hw.flow.shell: do not edit.",
        f"// Core clock: {clock}. Host link: UART on the FTDI port at {link.baud} baud",
        f"// nominal, {link.actual_baud:.0f} baud here ({link.baud_error:+.2%}), protocol in",
        "// hw/rtl/README.md (host/link_protocol.py on the host).",
        f"// LEDs{' (active low)' if board.leds_active_low else ''}: 0 last answer was an error,",
        "// 1 heartbeat, 2 byte received, 3 answer sent, 4.. count of good answers.",
        f"// Simulation: define {SIM_DEFINE} to bypass the PLL; CLKS_PER_BIT and TIMEOUT_CYCLES",
        "// may be overridden for a faster line.",
        f"module {SHELL_TOP} #(",
        f"    parameter CLKS_PER_BIT = {link.clks_per_bit},",
        f"    parameter TIMEOUT_CYCLES = {link.timeout_cycles}",
        ") (",
        "    input  wire clk_osc,",
        "    input  wire uart_rx,",
        "    output wire uart_tx,",
        f"    output wire [{nled - 1}:0] led",
        ");",
        "    wire clk;",
        "    wire pll_locked;",
        *clock_lines,
        "",
        "    // Reset: hold everything until the PLL has locked, then 16 more cycles; one",
        "    // active-high register drives the link's reset and the accelerator's (which",
        "    // registers it once more per module, see the LFSR shell); the link offers no beat",
        "    // before a whole request has come over the UART.",
        "    reg [1:0] lock_sync = 2'b00;",
        "    reg [4:0] rst_cnt = 5'd0;",
        "    wire run = rst_cnt[4];",
        "    always @(posedge clk) begin",
        "        lock_sync <= {lock_sync[0], pll_locked};",
        "        if (!lock_sync[1]) rst_cnt <= 5'd0;",
        "        else if (!run) rst_cnt <= rst_cnt + 5'd1;",
        "    end",
        "    reg acc_rst = 1'b1;",
        "    always @(posedge clk) acc_rst <= !(run || rst_cnt == 5'd15);",
        "    wire rst_n = !acc_rst;",
        "",
        f"    wire [{in_w - 1}:0] s_tdata;",
        "    wire s_tvalid, s_tready;",
        f"    wire [{out_w - 1}:0] m_tdata;",
        "    wire m_tvalid, m_tready;",
        "    wire rx_byte, resp_ok, resp_err;",
        "    host_link #(",
        f"        .IN_W({in_w}), .IN_BEATS({manifest.in_beats}),",
        f"        .OUT_W({out_w}), .OUT_BEATS({manifest.out_beats}),",
        "        .CLKS_PER_BIT(CLKS_PER_BIT), .TIMEOUT_CYCLES(TIMEOUT_CYCLES),",
        f"        .RX_FIFO_DEPTH({rx_fifo_depth(manifest)})",
        "    ) u_link (",
        "        .clk(clk), .rst_n(rst_n), .uart_rx(uart_rx), .uart_tx(uart_tx),",
        "        .m_axis_tdata(s_tdata), .m_axis_tvalid(s_tvalid), .m_axis_tready(s_tready),",
        "        .s_axis_tdata(m_tdata), .s_axis_tvalid(m_tvalid), .s_axis_tready(m_tready),",
        "        .rx_byte(rx_byte), .resp_ok(resp_ok), .resp_err(resp_err)",
        "    );",
        "",
        *_accel_instance(manifest),
        "",
        "    // Link status on the LEDs.",
        "    reg err_seen = 1'b0;",
        f"    reg [{hb - 1}:0] heartbeat = {hb}'d0;",
        f"    reg [{act - 1}:0] rx_act = {act}'d0;",
        f"    reg [{act - 1}:0] tx_act = {act}'d0;",
        "    reg [3:0] n_ok = 4'd0;",
        "    always @(posedge clk) begin",
        f"        heartbeat <= heartbeat + {hb}'d1;",
        "        if (resp_err) err_seen <= 1'b1;",
        "        else if (resp_ok) err_seen <= 1'b0;",
        f"        if (rx_byte) rx_act <= {{{act}{{1'b1}}}};",
        f"        else if (rx_act != {act}'d0) rx_act <= rx_act - {act}'d1;",
        f"        if (resp_ok || resp_err) tx_act <= {{{act}{{1'b1}}}};",
        f"        else if (tx_act != {act}'d0) tx_act <= tx_act - {act}'d1;",
        "        if (resp_ok) n_ok <= n_ok + 4'd1;",
        "    end",
        f"    wire [7:0] status = {{n_ok, tx_act != {act}'d0, rx_act != {act}'d0, "
        f"heartbeat[{hb - 1}], err_seen}};",
        f"    assign led = {led_expr}[{nled - 1}:0];" if nled > 1 else f"    assign led = {led_expr}[0];",
        "endmodule",
        "",
    ]
    return "\n".join(lines)
