// dwc.v -- stream data-width converter (FINN StreamingDataWidthConverter; netfabric RTL)
//
// Re-slices a stream of BITS-bit elements from IN_WIDTH to OUT_WIDTH elements per beat;
// the element sequence is unchanged (element i of a beat at tdata[i*BITS +: BITS], the
// lowest element first in time). One of IN_WIDTH, OUT_WIDTH must divide the other.
//
// Stream protocol: AXI-Stream valid/ready; tdata ports are IN_WIDTH*BITS / OUT_WIDTH*BITS
//   bits rounded up to whole bytes (pad bits: ignored in, zero out).
// Parameters: IN_WIDTH, OUT_WIDTH (elements per beat), BITS (element width).
// Behaviour and latency:
//   up-conversion   (OUT = R*IN): R input beats are collected, the output beat appears the
//                   cycle after the R-th input handshake; one input beat per cycle.
//   down-conversion (IN = R*OUT): an input beat is split into R output beats, the first on
//                   m_axis two cycles after the input handshake (an input holding register,
//                   then the shifting output register), one output beat per cycle.
//   IN = OUT:       wires (no register, zero latency).
//   s_axis_tready depends on registers only.
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

module dwc #(
    parameter IN_WIDTH = 2,
    parameter OUT_WIDTH = 4,
    parameter BITS = 8
) (
    input  wire clk,
    input  wire rst_n,
    /* verilator lint_off UNUSEDSIGNAL */  // byte-padding bits
    input  wire [((IN_WIDTH * BITS + 7) / 8) * 8 - 1:0] s_axis_tdata,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire s_axis_tvalid,
    output wire s_axis_tready,
    output wire [((OUT_WIDTH * BITS + 7) / 8) * 8 - 1:0] m_axis_tdata,
    output wire m_axis_tvalid,
    input  wire m_axis_tready
);
    localparam IW = IN_WIDTH * BITS;
    localparam OW = OUT_WIDTH * BITS;
    localparam OPW = ((OW + 7) / 8) * 8;
    localparam R = (OUT_WIDTH > IN_WIDTH) ? OUT_WIDTH / IN_WIDTH : IN_WIDTH / OUT_WIDTH;
    localparam RW = (R > 1) ? $clog2(R) : 1;
    localparam integer R_LAST_I = R - 1;
    localparam [RW-1:0] R_LAST = R_LAST_I[RW-1:0];

    // ------------------------------------------------------------------ parameter checks
    generate
        if (IN_WIDTH < 1) begin : g_err_in_width
            `NF_PARAM_ERROR(("dwc: IN_WIDTH (%0d) must be >= 1", IN_WIDTH))
        end
        if (OUT_WIDTH < 1) begin : g_err_out_width
            `NF_PARAM_ERROR(("dwc: OUT_WIDTH (%0d) must be >= 1", OUT_WIDTH))
        end
        if (BITS < 1) begin : g_err_bits
            `NF_PARAM_ERROR(("dwc: BITS (%0d) must be >= 1", BITS))
        end
        if ((IN_WIDTH % OUT_WIDTH != 0) && (OUT_WIDTH % IN_WIDTH != 0)) begin : g_err_ratio
            `NF_PARAM_ERROR(("dwc: one of IN_WIDTH (%0d) and OUT_WIDTH (%0d) must divide the other",
                             IN_WIDTH, OUT_WIDTH))
        end
    endgenerate

    wire [OW-1:0] out_d;

    generate
        if (OPW > OW) begin : g_pad
            assign m_axis_tdata[OPW-1:OW] = {(OPW - OW){1'b0}};
        end
        assign m_axis_tdata[OW-1:0] = out_d;

        if (OUT_WIDTH > IN_WIDTH) begin : g_up
            // Collect R input beats; the R-th one moves the word to the output register.
            // tready (registers only) drops just when that move would overwrite an
            // unconsumed output; at R >= 2 this never costs throughput.
            reg [OW-IW-1:0] acc;        // beats 0 .. R-2 of the word, shifted in from the top
            reg [RW-1:0]    cnt;
            reg [OW-1:0]    o_d;
            reg             o_v;
            wire last = (cnt == R_LAST);
            assign s_axis_tready = !last || !o_v;
            wire push = s_axis_tvalid && s_axis_tready;
            always @(posedge clk) begin
                if (push && last) o_d <= {s_axis_tdata[IW-1:0], acc};
            end
            if (R > 2) begin : g_shift
                always @(posedge clk)
                    if (push && !last) acc <= {s_axis_tdata[IW-1:0], acc[OW-IW-1:IW]};
            end else begin : g_one
                always @(posedge clk)
                    if (push && !last) acc <= s_axis_tdata[IW-1:0];
            end
            always @(posedge clk) begin
                if (!rst_n) begin
                    cnt <= {RW{1'b0}};
                    o_v <= 1'b0;
                end else begin
                    if (push) cnt <= last ? {RW{1'b0}} : cnt + 1'b1;
                    if (push && last) o_v <= 1'b1;
                    else if (m_axis_tready) o_v <= 1'b0;
                end
            end
            assign out_d = o_d;
            assign m_axis_tvalid = o_v;
        end else if (IN_WIDTH > OUT_WIDTH) begin : g_down
            // Input holding register (registered tready) feeding a shift register that emits
            // the lowest OUT_WIDTH elements first.
            reg [IW-1:0] h_d;
            reg          h_v;
            reg [IW-1:0] sh;
            reg [RW-1:0] cnt;           // output beats left after the current one
            reg          o_v;
            assign s_axis_tready = !h_v;
            wire push = s_axis_tvalid && s_axis_tready;
            wire o_done = !o_v || (m_axis_tready && cnt == {RW{1'b0}});
            wire load = h_v && o_done;
            always @(posedge clk) begin
                if (push) h_d <= s_axis_tdata[IW-1:0];
                if (load) sh <= h_d;
                else if (o_v && m_axis_tready) sh <= sh >> OW;
            end
            always @(posedge clk) begin
                if (!rst_n) begin
                    h_v <= 1'b0;
                    o_v <= 1'b0;
                    cnt <= {RW{1'b0}};
                end else begin
                    if (push) h_v <= 1'b1;
                    else if (load) h_v <= 1'b0;
                    if (load) begin
                        o_v <= 1'b1;
                        cnt <= R_LAST;
                    end else if (o_v && m_axis_tready) begin
                        if (cnt == {RW{1'b0}}) o_v <= 1'b0;
                        else cnt <= cnt - 1'b1;
                    end
                end
            end
            assign out_d = sh[OW-1:0];
            assign m_axis_tvalid = o_v;
        end else begin : g_same
            assign out_d = s_axis_tdata[OW-1:0];
            assign m_axis_tvalid = s_axis_tvalid;
            assign s_axis_tready = m_axis_tready;
        end
    endgenerate
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
