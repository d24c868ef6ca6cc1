// uart_tx.v -- UART transmitter, 8N1 (netfabric RTL library: host link)
//
// Line protocol: idle high, one start bit (low), 8 data bits LSB first, one stop bit (high).
// Input: s_tdata/s_tvalid/s_tready (valid/ready): a byte is taken when the previous one's
//   stop bit has ended; s_tready is a register (high while idle), so back-to-back bytes
//   leave no gap on the line: throughput exactly baud / 10 bytes per second.
// Output: tx, a register (no glitches on the pin), high from configuration on.
// Parameters: CLKS_PER_BIT = clock frequency / baud rate, rounded (>= 4; see uart_rx.v).
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

module uart_tx #(
    parameter CLKS_PER_BIT = 33
) (
    input  wire       clk,
    input  wire       rst_n,
    input  wire [7:0] s_tdata,
    input  wire       s_tvalid,
    output wire       s_tready,
    output reg        tx
);
    localparam CW = $clog2(CLKS_PER_BIT + 1);
    localparam integer LAST_I = CLKS_PER_BIT - 1;
    localparam [CW-1:0] LAST = LAST_I[CW-1:0];

    generate
        if (CLKS_PER_BIT < 4) begin : g_err_cpb
            `NF_PARAM_ERROR(("uart_tx: CLKS_PER_BIT (%0d) must be >= 4", CLKS_PER_BIT))
        end
    endgenerate

    reg          busy;
    reg [CW-1:0] cnt;
    reg [3:0]    nbit;   // bit on the line: 0 start, 1..8 data, 9 stop
    reg [8:0]    shift;  // bits still to send: data LSB first, then the stop bit
    assign s_tready = !busy;
    initial tx = 1'b1;  // idle level from configuration on

    always @(posedge clk) begin
        if (!rst_n) begin
            busy <= 1'b0;
            tx <= 1'b1;
            cnt <= {CW{1'b0}};
            nbit <= 4'd0;
        end else if (!busy) begin
            cnt <= {CW{1'b0}};
            nbit <= 4'd0;
            if (s_tvalid) begin
                busy <= 1'b1;
                tx <= 1'b0;
                shift <= {1'b1, s_tdata};
            end
        end else if (cnt == LAST) begin
            cnt <= {CW{1'b0}};
            if (nbit == 4'd9) begin
                busy <= 1'b0;  // stop bit done; tx stays high
            end else begin
                nbit <= nbit + 4'd1;
                tx <= shift[0];
                shift <= {1'b1, shift[8:1]};
            end
        end else begin
            cnt <= cnt + 1'b1;
        end
    end
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
