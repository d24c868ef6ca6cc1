// thresholding.v -- standalone multi-threshold activation (FINN Thresholding; netfabric RTL)
//
// out[c] = #{k : x[c] >= T[c][k]} + ACT_BIAS,  k = 0 .. 2^OBITS-2, T[c] sorted ascending,
// evaluated by the shared pipelined binary search (thresh_search.v).
//
// Stream protocol (AXI-Stream valid/ready, element i of a beat at tdata[i*BITS +: BITS]):
//   s_axis: PE elements of IBITS per beat, channels in order: a pixel of CHANNELS channels is
//           NF = CHANNELS/PE beats, beat nf carrying channels nf*PE .. nf*PE+PE-1.
//   m_axis: the same beat structure with OBITS-bit elements.
//   tdata ports are rounded up to whole bytes (pad bits: ignored in, zero out).
// Parameters:
//   CHANNELS, PE      channel count and lanes per beat (CHANNELS % PE == 0)
//   IBITS, ISIGNED    input element width / signedness
//   TBITS             signed width of the thresholds and of the comparison. The largest
//                     value 2^(TBITS-1)-1 must exceed every input so that it can stand for
//                     "never reached" (padding, thresholds above the input range): TBITS >=
//                     IBITS + 2 for unsigned, IBITS + 1 for signed inputs (default IBITS + 2)
//   OBITS, OSIGNED    output width (2^OBITS - 1 thresholds per channel); OSIGNED informational
//   ACT_BIAS          signed integer added to the count, result truncated to OBITS bits
//   NVEC              pixels per frame; informational (the unit is frame-agnostic)
//   THRESH_FILE       threshold memory prefix, files "<prefix>_s<j>.hex" (thresh_search.v)
//   RQ, NT, ROM_STYLE, RQ_LEVELS, RQ_MBITS, RQ_BBITS, RQ_SHIFT, RQ_FILE   requantizer for the
//                     channels where it is proven exact, tables for the rest (requant_act.v;
//                     RQ = 0: tables only)
// Throughput: one beat per cycle in and out.
// Latency: 4*OBITS + 3 cycles (7 with RQ = 1, NT = 0) from an input handshake to the beat
//   appearing on m_axis.
// Requires: requant_act.v, requant.v, thresh_search.v, banked_rom.v, axis_out_credit.v,
//   fifo.v.
`default_nettype none

// Parameter checks: the macro NF_PARAM_ERROR(("format", args)), in a generate branch taken
// only for illegal parameters, stops elaboration (Verilator, Yosys, other SystemVerilog
// tools) or, on Icarus 11 (no elaboration-time system tasks), the simulation at time 0, with
// the message. Verilator also gets the time-0 check: builds with -Wno-fatal only warn about
// an elaboration-time $error.
`ifdef __ICARUS__
`define NF_PARAM_ERROR(msg) initial begin $error msg; $fatal(1); end
`elsif VERILATOR
`define NF_PARAM_ERROR(msg) $error msg; initial begin $error msg; $fatal(1); end
`else
`define NF_PARAM_ERROR(msg) $error msg;
`endif

module thresholding #(
    parameter CHANNELS = 8,
    parameter PE = 2,
    parameter IBITS = 8,
    parameter ISIGNED = 0,
    parameter TBITS = IBITS + 2,
    parameter OBITS = 4,
    /* verilator lint_off UNUSEDPARAM */  // OSIGNED, NVEC: informational
    parameter OSIGNED = 0,
    parameter NVEC = 1,
    /* verilator lint_on UNUSEDPARAM */
    parameter ACT_BIAS = 0,
    parameter THRESH_FILE = "",
    parameter RQ = 0,
    parameter NT = 0,
    parameter ROM_STYLE = 0,
    parameter RQ_LEVELS = 15,
    parameter RQ_MBITS = 16,
    parameter RQ_BBITS = 24,
    parameter RQ_SHIFT = 16,
    parameter RQ_FILE = ""
) (
    input  wire clk,
    input  wire rst_n,
    /* verilator lint_off UNUSEDSIGNAL */  // byte-padding bits
    input  wire [((PE * IBITS + 7) / 8) * 8 - 1:0] s_axis_tdata,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire s_axis_tvalid,
    output wire s_axis_tready,
    output wire [((PE * OBITS + 7) / 8) * 8 - 1:0] m_axis_tdata,
    output wire m_axis_tvalid,
    input  wire m_axis_tready
);
    localparam NF = CHANNELS / PE;
    localparam OW = PE * OBITS;
    localparam LAT = (RQ != 0 && NT == 0) ? 6 : 4 * OBITS + 2;   // requant_act latency
    // Output FIFO covering the credit round trip (see mvau.v); automatic style: block RAM
    // with a registered output from 64 entries.
    localparam ODEPTH = 1 << $clog2(LAT + 6);

    // ------------------------------------------------------------------ parameter checks
    generate
        if (CHANNELS < 1) begin : g_err_channels
            `NF_PARAM_ERROR(("thresholding: CHANNELS (%0d) must be >= 1", CHANNELS))
        end
        if (PE < 1) begin : g_err_pe
            `NF_PARAM_ERROR(("thresholding: PE (%0d) must be >= 1", PE))
        end
        if (IBITS < 1) begin : g_err_ibits
            `NF_PARAM_ERROR(("thresholding: IBITS (%0d) must be >= 1", IBITS))
        end
        if (CHANNELS % PE != 0) begin : g_err_ch_pe
            `NF_PARAM_ERROR(("thresholding: CHANNELS (%0d) must be a multiple of PE (%0d)",
                             CHANNELS, PE))
        end
        if (TBITS < IBITS + ((ISIGNED != 0) ? 0 : 1)) begin : g_err_tbits
            `NF_PARAM_ERROR(("thresholding: TBITS (%0d) must be >= IBITS (%0d), +1 if unsigned",
                             TBITS, IBITS))
        end
    endgenerate

    // Credit counter (in u_out): beats accepted and not yet delivered never exceed the
    // output FIFO, so the search pipeline can run without a stall signal.
    wire cr_full;
    assign s_axis_tready = !cr_full;
    wire take = s_axis_tvalid && s_axis_tready;

    // Widen every element to TBITS signed (sign- or zero-extension by input signedness).
    wire [PE*TBITS-1:0] x_ext;
    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_ext
            wire [IBITS-1:0] e = s_axis_tdata[p*IBITS +: IBITS];
            if (TBITS > IBITS) begin : g_wide
                wire sb = (ISIGNED != 0) ? e[IBITS-1] : 1'b0;
                assign x_ext[p*TBITS +: TBITS] = {{(TBITS-IBITS){sb}}, e};
            end else begin : g_same
                assign x_ext[p*TBITS +: TBITS] = e[TBITS-1:0];
            end
        end
    endgenerate

    wire          out_v;
    wire [OW-1:0] out_d;
    requant_act #(
        .NF(NF), .PE(PE), .DBITS(TBITS), .OBITS(OBITS), .ACT_BIAS(ACT_BIAS),
        .THRESH_FILE(THRESH_FILE), .ROM_STYLE(ROM_STYLE), .RQ(RQ), .NT(NT),
        .LEVELS(RQ_LEVELS), .MBITS(RQ_MBITS), .BBITS(RQ_BBITS), .SHIFT(RQ_SHIFT),
        .RQ_FILE(RQ_FILE)
    ) u_act (
        .clk(clk), .rst_n(rst_n),
        .in_valid(take), .in_data(x_ext),
        .out_valid(out_v), .out_data(out_d)
    );

    axis_out_credit #(.WIDTH(OW), .DEPTH(ODEPTH), .RAM_STYLE(0)) u_out (
        .clk(clk), .rst_n(rst_n),
        .reserve(take), .full(cr_full),
        .in_valid(out_v), .in_data(out_d),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid),
        .m_axis_tready(m_axis_tready)
    );
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
