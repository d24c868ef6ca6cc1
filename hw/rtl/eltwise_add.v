// eltwise_add.v -- elementwise addition of two streams, or of a stream and a constant
// (FINN ElementwiseAdd; netfabric RTL library)
//
// out[i] = lhs[i] + rhs[i], exact in a sum one bit wider than the wider operand (after
// making both signed), then truncated to OBITS bits (two's complement): exact whenever OBITS
// holds the sum's range, as FINN's output datatype does.
//
// Stream protocol (AXI-Stream valid/ready, element i of a beat at tdata[i*BITS +: BITS]):
//   s0_axis: lhs, PE elements of LBITS bits per beat.
//   s1_axis: rhs, PE elements of RBITS bits per beat (CONST_RHS = 0; unused otherwise:
//            s1_axis_tready is then 0).
//   m_axis:  PE elements of OBITS bits per beat.
//   tdata ports are rounded up to whole bytes (pad bits: ignored in, zero out).
//   A join: a pair of beats is taken when both inputs are valid and the output buffer has
//   room, so each input's tready also depends on the other input's tvalid (never on
//   m_axis_tready: the output buffer's room is a register).
// Parameters:
//   PE                      elements per beat
//   LBITS, LSIGNED          lhs element width / signedness
//   RBITS, RSIGNED          rhs element width / signedness
//   OBITS                   output width; OSIGNED, CHANNELS, NVEC informational
//   CONST_RHS               1: rhs is a constant from RHS_FILE ($readmemh, RHS_WORDS words of
//                           PE*RBITS bits, element order as a stream), read in order and
//                           repeated every RHS_WORDS beats (a broadcast table such as a
//                           transformer's position embedding); a block-RAM ROM read
//                           ahead into a 4-word FIFO (see g_const)
// Throughput: one beat per cycle.
// Latency: 1 cycle from the input handshake to m_axis (a two-beat output buffer, fifo.v);
//   with CONST_RHS the first constant is ready 3 cycles after reset.
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

module eltwise_add #(
    parameter PE = 1,
    parameter LBITS = 8,
    parameter LSIGNED = 1,
    parameter RBITS = 8,
    parameter RSIGNED = 1,
    parameter OBITS = 9,
    /* verilator lint_off UNUSEDPARAM */  // OSIGNED, CHANNELS, NVEC: informational
    parameter OSIGNED = 1,
    parameter CHANNELS = PE,
    parameter NVEC = 1,
    /* verilator lint_on UNUSEDPARAM */
    parameter CONST_RHS = 0,
    parameter RHS_WORDS = 1,
    parameter RHS_FILE = ""
) (
    input  wire clk,
    input  wire rst_n,
    /* verilator lint_off UNUSEDSIGNAL */  // byte-padding bits; s1 unused with CONST_RHS
    input  wire [((PE * LBITS + 7) / 8) * 8 - 1:0] s0_axis_tdata,
    input  wire s0_axis_tvalid,
    output wire s0_axis_tready,
    input  wire [((PE * RBITS + 7) / 8) * 8 - 1:0] s1_axis_tdata,
    input  wire s1_axis_tvalid,
    /* verilator lint_on UNUSEDSIGNAL */
    output wire s1_axis_tready,
    output wire [((PE * OBITS + 7) / 8) * 8 - 1:0] m_axis_tdata,
    output wire m_axis_tvalid,
    input  wire m_axis_tready
);
    // operand widths once both are signed, the exact sum's width, the computed width
    localparam LW = LBITS + (LSIGNED ? 0 : 1);
    localparam RW = RBITS + (RSIGNED ? 0 : 1);
    localparam SW = ((LW > RW) ? LW : RW) + 1;
    localparam XW = (SW > OBITS) ? SW : OBITS;
    localparam OW = PE * OBITS;
    localparam AW = (RHS_WORDS > 1) ? $clog2(RHS_WORDS) : 1;

    generate
        if (PE < 1 || LBITS < 1 || RBITS < 1 || OBITS < 1) begin : g_err_width
            `NF_PARAM_ERROR(("eltwise_add: PE (%0d), LBITS (%0d), RBITS (%0d), OBITS (%0d) must be >= 1",
                             PE, LBITS, RBITS, OBITS))
        end
        if (CONST_RHS != 0 && RHS_WORDS < 1) begin : g_err_words
            `NF_PARAM_ERROR(("eltwise_add: RHS_WORDS (%0d) must be >= 1", RHS_WORDS))
        end
    endgenerate

    wire room;                                   // output buffer has room (a register)
    wire rhs_valid;
    wire [PE*RBITS-1:0] rhs;
    wire fire = s0_axis_tvalid && rhs_valid && room;
    assign s0_axis_tready = room && rhs_valid;

    generate
        if (CONST_RHS != 0) begin : g_const
            // The ROM is read ahead into a small FIFO: a read is issued while fewer than
            // PREFETCH words are read and not yet added; its word reaches the FIFO two cycles
            // later through the block RAM's read register and one plain register (which the
            // ECP5 flow moves into the block's output register, hw/flow/bram_outreg.py). So
            // the adder takes its operand from a small FIFO beside it, never from a block-RAM
            // output (~6 ns clock-to-out plus a route: the transformer's critical path on one
            // nextpnr seed when the ROM fed the adder directly).
            localparam PREFETCH = 4;             // covers the 3-cycle issue-to-add loop
            (* rom_style = "block" *)
            reg [PE*RBITS-1:0] rom [0:RHS_WORDS-1];
            reg [PE*RBITS-1:0] rom_q;
            reg [PE*RBITS-1:0] rom_r;
            reg [AW-1:0] raddr;
            reg [2:0] pending;                   // read, not yet added: 0 .. PREFETCH
            reg [1:0] read_v;                    // a read in rom_q / rom_r
            localparam integer LAST_I = RHS_WORDS - 1;
            localparam [AW-1:0] LAST = LAST_I[AW-1:0];
            wire issue = !pending[2];            // pending < PREFETCH
            initial begin
                if (RHS_FILE != "") $readmemh(RHS_FILE, rom);
            end
            always @(posedge clk) begin
                rom_q <= rom[raddr];             // synchronous read, always enabled
                rom_r <= rom_q;
                if (!rst_n) begin
                    raddr <= {AW{1'b0}};
                    pending <= 3'd0;
                    read_v <= 2'b00;
                end else begin
                    if (issue) raddr <= (raddr == LAST) ? {AW{1'b0}} : raddr + 1'b1;
                    pending <= pending + {2'b00, issue} - {2'b00, fire};
                    read_v <= {read_v[0], issue};
                end
            end
            localparam RPW = ((PE * RBITS + 7) / 8) * 8;
            wire [RPW-1:0] rom_r_padded;
            wire [RPW-1:0] head;
            if (RPW > PE * RBITS) begin : g_rpad
                assign rom_r_padded = {{(RPW - PE * RBITS){1'b0}}, rom_r};
            end else begin : g_rnopad
                assign rom_r_padded = rom_r;
            end
            /* verilator lint_off UNUSEDSIGNAL */  // never full: pending bounds its content
            wire pf_room;
            /* verilator lint_on UNUSEDSIGNAL */
            fifo #(.WIDTH(PE * RBITS), .DEPTH(PREFETCH), .RAM_STYLE(1)) u_prefetch (
                .clk(clk), .rst_n(rst_n),
                .s_axis_tdata(rom_r_padded), .s_axis_tvalid(read_v[1]), .s_axis_tready(pf_room),
                .m_axis_tdata(head), .m_axis_tvalid(rhs_valid), .m_axis_tready(fire)
            );
            assign rhs = head[PE*RBITS-1:0];
            assign s1_axis_tready = 1'b0;
        end else begin : g_stream
            assign rhs = s1_axis_tdata[PE*RBITS-1:0];
            assign rhs_valid = s1_axis_tvalid;
            assign s1_axis_tready = room && s0_axis_tvalid;
        end
    endgenerate

    wire [OW-1:0] sum;
    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_lane
            wire [LBITS-1:0] a = s0_axis_tdata[p*LBITS +: LBITS];
            wire [RBITS-1:0] b = rhs[p*RBITS +: RBITS];
            wire [XW-1:0] ax;
            wire [XW-1:0] bx;
            if (LSIGNED != 0) begin : g_as
                assign ax = {{(XW - LBITS){a[LBITS-1]}}, a};
            end else begin : g_au
                assign ax = {{(XW - LBITS){1'b0}}, a};
            end
            if (RSIGNED != 0) begin : g_bs
                assign bx = {{(XW - RBITS){b[RBITS-1]}}, b};
            end else begin : g_bu
                assign bx = {{(XW - RBITS){1'b0}}, b};
            end
            wire [XW-1:0] s = ax + bx;
            assign sum[p*OBITS +: OBITS] = s[OBITS-1:0];
        end
    endgenerate

    localparam OPW = ((OW + 7) / 8) * 8;
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
        .s_axis_tdata(sum_padded), .s_axis_tvalid(fire),
        .s_axis_tready(room),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready)
    );
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
