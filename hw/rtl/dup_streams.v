// dup_streams.v -- stream fork: one input, NOUT identical outputs (FINN DuplicateStreams;
// netfabric RTL library)
//
// Every input beat is delivered once on each of the NOUT outputs. Each output has its own
// two-beat buffer (fifo.v, registers), so the outputs are back-pressured independently: a
// slow consumer does not stall a fast one until its buffer is full. A beat leaves the input
// when every output buffer has room for it.
//
// Stream protocol (AXI-Stream valid/ready, element i of a beat at tdata[i*BITS +: BITS]):
//   s_axis: PE elements of BITS bits per beat (tdata rounded up to whole bytes, pad ignored).
//   m_axis: NOUT lanes flattened into one bus: lane j is m_axis_tdata[j*PW +: PW] (PW = PE*BITS
//           rounded up to whole bytes, pad bits 0), m_axis_tvalid[j], m_axis_tready[j].
//   s_axis_tready depends on registers only (the output buffers' fill levels).
// Parameters:
//   NOUT              number of outputs (>= 1)
//   PE, BITS          elements per beat and element width
//   CHANNELS, NVEC    informational (channels per vector, vectors per frame)
// Throughput: one beat per cycle while every output takes one per cycle.
// Latency: 1 cycle from an input handshake to the beat on every m_axis lane.
// Requires: fifo.v.
`default_nettype none

// Parameter checks: the macro NF_PARAM_ERROR(("format", args)), in a generate branch taken
// only for illegal parameters, stops elaboration (Verilator, Yosys) or, on Icarus 11, the
// simulation at time 0, with the message (as in fifo.v).
`ifdef __ICARUS__
`define NF_PARAM_ERROR(msg) initial begin $error msg; $fatal(1); end
`elsif VERILATOR
`define NF_PARAM_ERROR(msg) $error msg; initial begin $error msg; $fatal(1); end
`else
`define NF_PARAM_ERROR(msg) $error msg;
`endif

module dup_streams #(
    parameter NOUT = 2,
    parameter PE = 1,
    parameter BITS = 8,
    /* verilator lint_off UNUSEDPARAM */  // CHANNELS, NVEC: informational
    parameter CHANNELS = PE,
    parameter NVEC = 1
    /* verilator lint_on UNUSEDPARAM */
) (
    input  wire                                  clk,
    input  wire                                  rst_n,
    /* verilator lint_off UNUSEDSIGNAL */  // byte-padding bits
    input  wire [((PE * BITS + 7) / 8) * 8 - 1:0] s_axis_tdata,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire                                  s_axis_tvalid,
    output wire                                  s_axis_tready,
    output wire [NOUT * (((PE * BITS + 7) / 8) * 8) - 1:0] m_axis_tdata,
    output wire [NOUT-1:0]                       m_axis_tvalid,
    input  wire [NOUT-1:0]                       m_axis_tready
);
    localparam W = PE * BITS;
    localparam PW = ((W + 7) / 8) * 8;

    generate
        if (NOUT < 1) begin : g_err_nout
            `NF_PARAM_ERROR(("dup_streams: NOUT (%0d) must be >= 1", NOUT))
        end
        if (PE < 1 || BITS < 1) begin : g_err_width
            `NF_PARAM_ERROR(("dup_streams: PE (%0d) and BITS (%0d) must be >= 1", PE, BITS))
        end
    endgenerate

    wire [NOUT-1:0] room;                 // output buffer j can take a beat (a register)
    wire all_room = &room;
    assign s_axis_tready = all_room;
    wire push = s_axis_tvalid && all_room;

    genvar j;
    generate
        for (j = 0; j < NOUT; j = j + 1) begin : g_out
            fifo #(.WIDTH(W), .DEPTH(2), .RAM_STYLE(1)) u_buf (
                .clk(clk), .rst_n(rst_n),
                .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(push), .s_axis_tready(room[j]),
                .m_axis_tdata(m_axis_tdata[j*PW +: PW]), .m_axis_tvalid(m_axis_tvalid[j]),
                .m_axis_tready(m_axis_tready[j])
            );
        end
    endgenerate
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
