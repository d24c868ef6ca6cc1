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
//   full              registered: all DEPTH credits taken, start no result this cycle
//                     (equals credits == DEPTH; a flag so that the unit's tready logic reads
//                     a flip-flop, not a counter comparison)
//   in_valid, in_data the pipeline's results, WIDTH bits, never more than were reserved
//   m_axis_*          AXI-Stream output; tdata is WIDTH bits rounded up to whole bytes, the
//                     pad bits are driven to 0
// Parameters:
//   WIDTH       result bits per beat
//   DEPTH       output FIFO capacity = credits. A unit that starts one result per cycle runs
//               without stalls behind an always-ready sink when DEPTH >= its latency from
//               `reserve` to in_valid + the FIFO latency (1 distributed, 4 block) + 2 (the
//               credit returns the cycle after the beat leaves); the units round
//               latency + 6 up to a power of two.
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
        if (DEPTH < 1) begin : g_err_depth
            `NF_PARAM_ERROR(("axis_out_credit: DEPTH (%0d) must be >= 1", DEPTH))
        end
    endgenerate

    // ------------------------------------------------------------------ credits
    // `reserve` arrives late (the unit's handshake with its upstream, often far away), so the
    // next state is computed for both of its values from registers (and `give`) and `reserve`
    // only selects: one LUT level after it instead of an adder and a comparison.
    reg  [CRW-1:0] credits;      // results reserved and not yet taken from m_axis
    reg            cr_full;      // credits == DEPTH
    reg            cr_last;      // credits == DEPTH - 1
    wire give = m_axis_tvalid && m_axis_tready;
    wire [CRW-1:0] cr_res = give ? credits : credits + CR_ONE;     // next, with reserve
    wire [CRW-1:0] cr_nores = give ? credits - CR_ONE : credits;   // next, without
    always @(posedge clk) begin
        if (!rst_n) begin
            credits <= {CRW{1'b0}};
            cr_full <= 1'b0;
            cr_last <= (DEPTH == 1);
        end else begin
            credits <= reserve ? cr_res : cr_nores;
            // == DEPTH next: from DEPTH - 1 with a reserve and no give, or kept at DEPTH
            cr_full <= reserve ? (give ? cr_full : cr_last) : (cr_full && !give);
            cr_last <= reserve ? (cr_res == CR_LAST) : (cr_nores == CR_LAST);
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
