// segment_pad.v -- tokens -> segments with zero padding (netfabric SegmentPad; RTL library)
//
// A frame of NTOK tokens of CHANNELS channels becomes NSEG = ceil((SHIFT + NTOK) / SEGLEN)
// segments of SEGLEN token slots: SHIFT zero tokens, the NTOK input tokens in order, then
// zero tokens up to NSEG * SEGLEN slots (ops/kernels.segment_pad). The padding slots are
// generated here, without input; the slots' validity (the softmax mask) is a function of the
// geometry alone, so segment_attention.v recomputes it from the same parameters.
//
// Stream protocol (AXI-Stream valid/ready, element i of a beat at tdata[i*BITS +: BITS]):
//   s_axis: PE elements of BITS bits per beat, a token is NF = CHANNELS/PE beats.
//   m_axis: the same beats, NSEG * SEGLEN * NF per frame (zeros in the padding slots).
//   tdata ports are rounded up to whole bytes (pad bits: ignored in, zero out).
//   s_axis_tready depends on registers only (the output buffer's room, the slot counter).
// Parameters:
//   CHANNELS, PE      channels per token and elements per beat (CHANNELS % PE == 0)
//   BITS              element width (values pass unchanged: signedness does not matter)
//   NTOK, SEGLEN      tokens per frame, segment length (>= 1)
//   SHIFT             leading zero tokens, 0 <= SHIFT < SEGLEN
//   SIGNED            informational
// Throughput: one beat per cycle (NSEG*SEGLEN*NF cycles per frame).
// Latency: 1 cycle from the input handshake to m_axis (a two-beat output buffer, fifo.v).
// Requires: fifo.v.
`default_nettype none

// Parameter checks (as in fifo.v): stop elaboration, or an Icarus simulation at time 0.
`ifdef __ICARUS__
`define NF_PARAM_ERROR(msg) initial begin $error msg; $fatal(1); end
`elsif VERILATOR
`define NF_PARAM_ERROR(msg) $error msg; initial begin $error msg; $fatal(1); end
`else
`define NF_PARAM_ERROR(msg) $error msg;
`endif

module segment_pad #(
    parameter CHANNELS = 4,
    parameter PE = 1,
    parameter BITS = 8,
    parameter NTOK = 5,
    parameter SEGLEN = 4,
    parameter SHIFT = 0,
    /* verilator lint_off UNUSEDPARAM */  // SIGNED: informational
    parameter SIGNED = 1
    /* verilator lint_on UNUSEDPARAM */
) (
    input  wire clk,
    input  wire rst_n,
    /* verilator lint_off UNUSEDSIGNAL */  // byte-padding bits
    input  wire [((PE * BITS + 7) / 8) * 8 - 1:0] s_axis_tdata,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire s_axis_tvalid,
    output wire s_axis_tready,
    output wire [((PE * BITS + 7) / 8) * 8 - 1:0] m_axis_tdata,
    output wire m_axis_tvalid,
    input  wire m_axis_tready
);
    localparam NF = CHANNELS / PE;
    localparam NSEG = (SHIFT + NTOK + SEGLEN - 1) / SEGLEN;
    localparam SLOTS = NSEG * SEGLEN;
    localparam W = PE * BITS;
    localparam PW = ((W + 7) / 8) * 8;
    localparam FW = (NF > 1) ? $clog2(NF) : 1;
    localparam TW = $clog2(SLOTS + 1);
    localparam integer NF_LAST_I = NF - 1;
    localparam integer SLOT_LAST_I = SLOTS - 1;
    localparam integer LO_I = SHIFT;
    localparam integer HI_I = SHIFT + NTOK;
    localparam [FW-1:0] NF_LAST = NF_LAST_I[FW-1:0];
    localparam [TW-1:0] SLOT_LAST = SLOT_LAST_I[TW-1:0];
    localparam [TW-1:0] LO = LO_I[TW-1:0];
    localparam [TW-1:0] HI = HI_I[TW-1:0];

    generate
        if (CHANNELS < 1 || PE < 1 || BITS < 1 || NTOK < 1 || SEGLEN < 1) begin : g_err_size
            `NF_PARAM_ERROR(("segment_pad: CHANNELS (%0d), PE (%0d), BITS (%0d), NTOK (%0d), SEGLEN (%0d) must be >= 1",
                             CHANNELS, PE, BITS, NTOK, SEGLEN))
        end
        if (CHANNELS % PE != 0) begin : g_err_ch_pe
            `NF_PARAM_ERROR(("segment_pad: CHANNELS (%0d) must be a multiple of PE (%0d)", CHANNELS, PE))
        end
        if (SHIFT < 0 || SHIFT >= SEGLEN) begin : g_err_shift
            `NF_PARAM_ERROR(("segment_pad: SHIFT (%0d) must be in 0 .. SEGLEN-1 (%0d)", SHIFT, SEGLEN - 1))
        end
    endgenerate

    reg  [FW-1:0] fold;
    reg  [TW-1:0] slot;
    wire real_tok;                   // the slot holds an input token
    generate
        if (SHIFT > 0) begin : g_shift
            assign real_tok = (slot >= LO) && (slot < HI);
        end else begin : g_noshift
            assign real_tok = slot < HI;
        end
    endgenerate
    wire room;
    wire fire = room && (!real_tok || s_axis_tvalid);
    assign s_axis_tready = room && real_tok;

    always @(posedge clk) begin
        if (!rst_n) begin
            fold <= {FW{1'b0}};
            slot <= {TW{1'b0}};
        end else if (fire) begin
            if (fold == NF_LAST) begin
                fold <= {FW{1'b0}};
                slot <= (slot == SLOT_LAST) ? {TW{1'b0}} : slot + 1'b1;
            end else begin
                fold <= fold + 1'b1;
            end
        end
    end

    wire [PW-1:0] beat = real_tok ? s_axis_tdata : {PW{1'b0}};  // fifo.v drops the pad bits

    fifo #(.WIDTH(W), .DEPTH(2), .RAM_STYLE(1)) u_out (
        .clk(clk), .rst_n(rst_n),
        .s_axis_tdata(beat), .s_axis_tvalid(fire), .s_axis_tready(room),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready)
    );
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
