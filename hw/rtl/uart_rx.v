// uart_rx.v -- UART receiver, 8N1 (netfabric RTL library: host link)
//
// Line protocol: idle high, one start bit (low), 8 data bits LSB first, one stop bit (high).
// The asynchronous input goes through a 2-flop synchronizer; a start bit is confirmed at its
// middle (a shorter glitch is ignored), data bits are sampled at their middles, and the
// receiver is ready for the next start bit from the middle of the stop bit on, so up to
// half a bit of accumulated baud error per byte is tolerated (about 5 % over 10 bits).
// Output: m_tdata/m_tvalid, a one-cycle pulse per byte. There is no tready: a serial line
//   cannot wait, so the consumer must take the byte in that cycle (host_link buffers one).
//   A byte whose stop bit reads low (framing error, line break) is dropped and reported
//   by a one-cycle pulse on frame_error.
// Parameters: CLKS_PER_BIT = clock frequency / baud rate, rounded (>= 4). The baud error is
//   |round(f/baud) - f/baud| / (f/baud); keep it under ~2 % (sender and receiver together).
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

module uart_rx #(
    parameter CLKS_PER_BIT = 33
) (
    input  wire       clk,
    input  wire       rst_n,
    input  wire       rx,
    output reg  [7:0] m_tdata,
    output reg        m_tvalid,
    output reg        frame_error
);
    localparam CW = $clog2(CLKS_PER_BIT + 1);
    localparam integer LAST_I = CLKS_PER_BIT - 1;
    localparam integer HALF_I = CLKS_PER_BIT / 2 - 1;
    localparam [CW-1:0] LAST = LAST_I[CW-1:0];
    localparam [CW-1:0] HALF = HALF_I[CW-1:0];
    localparam [1:0] S_IDLE = 2'd0, S_START = 2'd1, S_DATA = 2'd2, S_STOP = 2'd3;

    generate
        if (CLKS_PER_BIT < 4) begin : g_err_cpb
            `NF_PARAM_ERROR(("uart_rx: CLKS_PER_BIT (%0d) must be >= 4", CLKS_PER_BIT))
        end
    endgenerate

    // 2-flop synchronizer, idle (high) from configuration on: no false start bit at reset.
    reg [1:0] sync;
    initial sync = 2'b11;
    wire rxs = sync[1];
    always @(posedge clk) sync <= {sync[0], rx};

    reg [1:0]    state;
    reg [CW-1:0] cnt;
    reg [2:0]    nbit;
    reg [7:0]    shift;

    always @(posedge clk) begin
        m_tvalid <= 1'b0;
        frame_error <= 1'b0;
        if (!rst_n) begin
            state <= S_IDLE;
            cnt <= {CW{1'b0}};
            nbit <= 3'd0;
        end else begin
            case (state)
                S_IDLE: begin
                    cnt <= {CW{1'b0}};
                    if (!rxs) state <= S_START;
                end
                S_START: begin
                    // middle of the start bit: still low, or it was a glitch
                    if (cnt == HALF) begin
                        cnt <= {CW{1'b0}};
                        nbit <= 3'd0;
                        state <= rxs ? S_IDLE : S_DATA;
                    end else begin
                        cnt <= cnt + 1'b1;
                    end
                end
                S_DATA: begin
                    if (cnt == LAST) begin
                        cnt <= {CW{1'b0}};
                        shift <= {rxs, shift[7:1]};
                        nbit <= nbit + 3'd1;
                        if (nbit == 3'd7) state <= S_STOP;
                    end else begin
                        cnt <= cnt + 1'b1;
                    end
                end
                default: begin  // S_STOP: sampled at its middle, then ready for the next byte
                    if (cnt == LAST) begin
                        m_tdata <= shift;
                        m_tvalid <= rxs;
                        frame_error <= !rxs;
                        state <= S_IDLE;
                    end else begin
                        cnt <= cnt + 1'b1;
                    end
                end
            endcase
        end
    end
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
