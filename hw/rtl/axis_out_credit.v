// axis_out_credit.v -- credit-counted output front end of the pipelined units (netfabric RTL)
//
// The output stage shared by mvau, thresholding, maxpool and label_select: their compute
// pipelines have no stall signal, so each result they start must find room at the end. This
// module holds the output FIFO (fifo.v) and counts credits, i.e. results started and not yet
// delivered on m_axis. The unit starts a result only while `full` is low and says so with
// `reserve`; the result arrives later on in_valid/in_data and always has a FIFO slot.
//
// Ports:
//   reserve           a result was started this cycle (takes one credit)
//   full              registered: a result started now might find no slot; start none this
//                     cycle. Raised one credit early (at DEPTH - 1 credits counted) because
//                     `reserve` is counted a cycle late (see below): DEPTH - 1 results can be
//                     in flight before the flag rises, DEPTH at most
//   in_valid, in_data the pipeline's results, WIDTH bits, never more than were reserved
//   m_axis_*          AXI-Stream output; tdata is WIDTH bits rounded up to whole bytes, the
//                     pad bits are driven to 0
// Parameters:
//   WIDTH       result bits per beat
//   DEPTH       output FIFO capacity = credits, >= 2. A unit that starts one result per cycle
//               runs without stalls behind an always-ready sink when DEPTH >= its latency from
//               `reserve` to in_valid + the FIFO latency (1 distributed, 4 block) + 1: the
//               reserve counted a cycle late and the flag raised a credit early cancel out
//               (tests/test_rtl_modules.py measures the bound and that it is tight); the units
//               round latency + 6 up to a power of two.
//   RAM_STYLE   FIFO style (fifo.v): 0 auto (block RAM from 64 entries), 1 distributed
// Latency: that of the FIFO, 1 (distributed) or 4 (block) cycles from in_valid to m_axis.
// Requires: fifo.v.
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

module axis_out_credit #(
    parameter WIDTH = 8,
    parameter DEPTH = 8,
    parameter RAM_STYLE = 0
) (
    input  wire                               clk,
    input  wire                               rst_n,
    input  wire                               reserve,
    output wire                               full,
    input  wire                               in_valid,
    input  wire [WIDTH-1:0]                   in_data,
    output wire [((WIDTH + 7) / 8) * 8 - 1:0] m_axis_tdata,
    output wire                               m_axis_tvalid,
    input  wire                               m_axis_tready
);
    localparam PW = ((WIDTH + 7) / 8) * 8;
    localparam CRW = $clog2(DEPTH + 1);
    localparam integer ONE_I = 1;
    localparam integer LAST_I = DEPTH - 1;
    localparam [CRW-1:0] CR_LAST = LAST_I[CRW-1:0];
    localparam [CRW-1:0] CR_ONE = ONE_I[CRW-1:0];

    // ------------------------------------------------------------------ parameter checks
    generate
        if (WIDTH < 1) begin : g_err_width
            `NF_PARAM_ERROR(("axis_out_credit: WIDTH (%0d) must be >= 1", WIDTH))
        end
        if (DEPTH < 2) begin : g_err_depth
            `NF_PARAM_ERROR(("axis_out_credit: DEPTH (%0d) must be >= 2", DEPTH))
        end
    endgenerate

    // ------------------------------------------------------------------ credits
    // `reserve` arrives late (the unit's start decision, merged with its upstream handshake,
    // often far away): it only goes into a flip-flop, r_d, and is counted in the next cycle.
    // `full` then cannot see this cycle's reserve, so it assumes one: it rises when the
    // counted credits reach DEPTH - 1 (a start now, with r_d, would make DEPTH). Its next
    // value is computed for both values of `give` (the sink's late tready) from registers.
    reg  [CRW-1:0] credits;      // results reserved before this cycle, not yet taken
    reg            r_d;          // a result was reserved last cycle (not yet in credits)
    reg            cr_full;      // credits >= DEPTH - 1
    wire give = m_axis_tvalid && m_axis_tready;
    wire [CRW-1:0] cr_keep = r_d ? credits + CR_ONE : credits;     // next, without give
    wire [CRW-1:0] cr_give = r_d ? credits : credits - CR_ONE;     // next, with give
    always @(posedge clk) begin
        if (!rst_n) begin
            credits <= {CRW{1'b0}};
            r_d <= 1'b0;
            cr_full <= 1'b0;
        end else begin
            credits <= give ? cr_give : cr_keep;
            r_d <= reserve;
            cr_full <= give ? (cr_give >= CR_LAST) : (cr_keep >= CR_LAST);
        end
    end
    assign full = cr_full;

    // ------------------------------------------------------------------ output FIFO
    wire [PW-1:0] fifo_in;
    generate
        if (PW > WIDTH) begin : g_pad
            assign fifo_in[PW-1:WIDTH] = {(PW - WIDTH){1'b0}};
        end
    endgenerate
    assign fifo_in[WIDTH-1:0] = in_data;

    /* verilator lint_off PINCONNECTEMPTY */  // never full: the credits keep it from filling
    fifo #(.WIDTH(WIDTH), .DEPTH(DEPTH), .RAM_STYLE(RAM_STYLE)) u_fifo (
        .clk(clk), .rst_n(rst_n),
        .s_axis_tdata(fifo_in), .s_axis_tvalid(in_valid), .s_axis_tready(),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid),
        .m_axis_tready(m_axis_tready)
    );
    /* verilator lint_on PINCONNECTEMPTY */
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
