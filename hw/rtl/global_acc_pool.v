// global_acc_pool.v -- integer sum over a frame's vectors (FINN GlobalAccPool; netfabric RTL)
//
// out[c] = sum over the NVEC vectors (pixels, tokens) of a frame of x[v][c], computed in
// OBITS bits (two's complement, wrapping: exact whenever OBITS holds the sum's range, as
// FINN's output datatype does). One accumulator per channel (CHANNELS * OBITS bits).
//
// Stream protocol (AXI-Stream valid/ready, element i of a beat at tdata[i*BITS +: BITS]):
//   s_axis: PE elements of IBITS bits per beat, a vector of CHANNELS channels is
//           NF = CHANNELS/PE beats, NVEC vectors per frame.
//   m_axis: the sums, PE elements of OBITS bits per beat, NF beats per frame. They leave
//           while the frame's last vector comes in (its beat nf completes sums nf*PE ..).
//   tdata ports are rounded up to whole bytes (pad bits: ignored in, zero out).
//   s_axis_tready depends on registers only (the output buffer's room, the counters).
// Parameters:
//   CHANNELS, PE      channel count and lanes per beat (CHANNELS % PE == 0)
//   IBITS, ISIGNED    input element width / signedness
//   OBITS, OSIGNED    output (and accumulator) width; OSIGNED informational
//   NVEC              vectors per frame (>= 1)
// Throughput: one input beat per cycle: NVEC * NF cycles per frame.
// Latency: 1 cycle from the last vector's input handshake to m_axis (two-beat buffer).
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

module global_acc_pool #(
    parameter CHANNELS = 4,
    parameter PE = 1,
    parameter IBITS = 8,
    parameter ISIGNED = 1,
    parameter OBITS = 16,
    /* verilator lint_off UNUSEDPARAM */  // OSIGNED: informational
    parameter OSIGNED = 1,
    /* verilator lint_on UNUSEDPARAM */
    parameter NVEC = 4
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
    localparam OPW = ((OW + 7) / 8) * 8;
    localparam XW = (IBITS + 1 > OBITS) ? IBITS + 1 : OBITS;  // element + sign, >= OBITS
    localparam FW = (NF > 1) ? $clog2(NF) : 1;
    localparam VW = (NVEC > 1) ? $clog2(NVEC) : 1;
    localparam integer NF_LAST_I = NF - 1;
    localparam integer NVEC_LAST_I = NVEC - 1;
    localparam [FW-1:0] NF_LAST = NF_LAST_I[FW-1:0];
    localparam [VW-1:0] NVEC_LAST = NVEC_LAST_I[VW-1:0];

    generate
        if (CHANNELS < 1 || PE < 1 || IBITS < 1 || OBITS < 1 || NVEC < 1) begin : g_err_size
            `NF_PARAM_ERROR(("global_acc_pool: CHANNELS (%0d), PE (%0d), IBITS (%0d), OBITS (%0d), NVEC (%0d) must be >= 1",
                             CHANNELS, PE, IBITS, OBITS, NVEC))
        end
        if (CHANNELS % PE != 0) begin : g_err_ch_pe
            `NF_PARAM_ERROR(("global_acc_pool: CHANNELS (%0d) must be a multiple of PE (%0d)", CHANNELS, PE))
        end
    endgenerate

    reg  [FW-1:0] fold;
    reg  [VW-1:0] vec;
    wire last_vec = (vec == NVEC_LAST);
    wire first_vec = (vec == {VW{1'b0}});
    wire room;
    assign s_axis_tready = room || !last_vec;
    wire take = s_axis_tvalid && s_axis_tready;

    reg  [OW-1:0] acc [0:NF-1];
    wire [OW-1:0] acc_rd = acc[fold];
    wire [OW-1:0] sum;
    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_lane
            wire [IBITS-1:0] e = s_axis_tdata[p*IBITS +: IBITS];
            wire sb = (ISIGNED != 0) ? e[IBITS-1] : 1'b0;
            wire [XW-1:0] ex = {{(XW - IBITS){sb}}, e};
            wire [OBITS-1:0] prev = first_vec ? {OBITS{1'b0}} : acc_rd[p*OBITS +: OBITS];
            assign sum[p*OBITS +: OBITS] = prev + ex[OBITS-1:0];
        end
    endgenerate

    always @(posedge clk) begin
        if (take) acc[fold] <= sum;
        if (!rst_n) begin
            fold <= {FW{1'b0}};
            vec <= {VW{1'b0}};
        end else if (take) begin
            if (fold == NF_LAST) begin
                fold <= {FW{1'b0}};
                vec <= last_vec ? {VW{1'b0}} : vec + 1'b1;
            end else begin
                fold <= fold + 1'b1;
            end
        end
    end

    wire [OPW-1:0] sum_padded;
    generate
        if (OPW > OW) begin : g_pad
            assign sum_padded = {{(OPW - OW){1'b0}}, sum};
        end else begin : g_nopad
            assign sum_padded = sum;
        end
    endgenerate

    fifo #(.WIDTH(OW), .DEPTH(2), .RAM_STYLE(1)) u_out (
        .clk(clk), .rst_n(rst_n),
        .s_axis_tdata(sum_padded), .s_axis_tvalid(take && last_vec), .s_axis_tready(room),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready)
    );
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
