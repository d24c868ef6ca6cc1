// fifo.v -- AXI-Stream FIFO (netfabric RTL library)
//
// Stream protocol: AXI-Stream valid/ready on s_axis (in) and m_axis (out), first-word
//   fall-through: a stored beat is presented on m_axis without waiting for tready.
//   tdata ports are WIDTH bits rounded up to a whole byte; only the low WIDTH bits are
//   stored, the pad bits of m_axis_tdata are driven to zero.
// Parameters:
//   WIDTH     payload bits per beat
//   DEPTH     capacity in beats (>= 1)
//   RAM_STYLE 0 = auto (block RAM when DEPTH >= 64), 1 = distributed/registers
//             (asynchronous-read array: LUT RAM on ECP5, flip-flops on iCE40),
//             2 = block RAM (synchronous read, ram_style="block"; three more beats of
//             capacity after the array, in its read pipeline and a three-entry output
//             buffer, so the capacity is DEPTH + 3; m_axis_tdata comes from a flip-flop).
// Latency: a beat written at clock edge t is visible on m_axis after edge t+1
//   (distributed) or t+4 (block). Throughput one beat per cycle in both styles when
//   DEPTH >= 2 (a full DEPTH-1 FIFO takes no beat in the cycle it delivers one);
//   s_axis_tready depends on registers only (no path from m_axis_tready to s_axis_tready).
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

module fifo #(
    parameter WIDTH = 8,
    parameter DEPTH = 16,
    parameter RAM_STYLE = 0
) (
    input  wire                             clk,
    input  wire                             rst_n,
    /* verilator lint_off UNUSEDSIGNAL */  // pad bits above WIDTH are ignored
    input  wire [((WIDTH + 7) / 8) * 8 - 1:0] s_axis_tdata,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire                             s_axis_tvalid,
    output wire                             s_axis_tready,
    output wire [((WIDTH + 7) / 8) * 8 - 1:0] m_axis_tdata,
    output wire                             m_axis_tvalid,
    input  wire                             m_axis_tready
);
    localparam PW = ((WIDTH + 7) / 8) * 8;
    localparam AW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam CW = $clog2(DEPTH + 1);
    localparam BLOCK = (RAM_STYLE == 2) || (RAM_STYLE == 0 && DEPTH >= 64);
    localparam integer LAST_I = DEPTH - 1;
    localparam [AW-1:0] LAST_ADDR = LAST_I[AW-1:0];
    localparam integer DEPTH_I = DEPTH;
    localparam [CW-1:0] FULL = DEPTH_I[CW-1:0];
    localparam integer ONE_I = 1;
    localparam [CW-1:0] ONE = ONE_I[CW-1:0];

    // ------------------------------------------------------------------ parameter checks
    generate
        if (WIDTH < 1) begin : g_err_width
            `NF_PARAM_ERROR(("fifo: WIDTH (%0d) must be >= 1", WIDTH))
        end
        if (DEPTH < 1) begin : g_err_depth
            `NF_PARAM_ERROR(("fifo: DEPTH (%0d) must be >= 1", DEPTH))
        end
        if (RAM_STYLE < 0 || RAM_STYLE > 2) begin : g_err_ram_style
            `NF_PARAM_ERROR(("fifo: RAM_STYLE (%0d) must be 0 (auto), 1 (distributed) or 2 (block)",
                             RAM_STYLE))
        end
    endgenerate

    wire [WIDTH-1:0] rd_data;
    wire push = s_axis_tvalid && s_axis_tready;

    reg  [AW-1:0] wr_ptr;
    reg  [AW-1:0] rd_ptr;
    reg  [CW-1:0] count;      // beats held in the array (not counting the block output stages)
    // count != FULL and count != 0 kept as flip-flops: tready / tvalid leave the FIFO
    // straight from a register instead of a comparison (they fan into other modules'
    // handshake logic, the longest control paths). Next values from the counter's
    // registered state, push / pop selecting at the end.
    reg           not_full;
    reg           not_empty;
    wire          pop;        // a beat leaves the array this cycle
    wire [CW:0]   count_x = {1'b0, count};   // one bit wider: no constant compare at DEPTH 1
    wire          more_than_one = (count_x > {1'b0, ONE});
    wire          room_after_push = (count_x + {1'b0, ONE} < {1'b0, FULL});
    always @(posedge clk) begin
        if (!rst_n) begin
            not_full <= 1'b1;
            not_empty <= 1'b0;
        end else begin
            // a push never comes when full, and a pop never when empty
            not_full <= pop || (push ? room_after_push : not_full);
            not_empty <= push || (pop ? more_than_one : not_empty);
        end
    end

    assign s_axis_tready = not_full;

    generate
        if (PW > WIDTH) begin : g_pad
            assign m_axis_tdata[PW-1:WIDTH] = {(PW - WIDTH){1'b0}};
        end
        assign m_axis_tdata[WIDTH-1:0] = rd_data;

        if (BLOCK) begin : g_block
            // Three beats after the array. The read is a two-stage pipeline that never
            // stalls: q, the RAM's read register, and r, a plain copy of q. Both load every
            // cycle (q reads rd_ptr whether or not a beat is taken: q_fresh says when it is),
            // so the RAM has no read enable and r no enable, reset or other load; on ECP5 the
            // flow moves r into the DP16KD's output register (hw/flow/bram_outreg.py), which
            // then loads every cycle like r, whatever the block's enables do: the block RAM's
            // slow clock-to-out (~5.6 ns without it) then ends inside the block, where an
            // enabled register after the RAM had been the CNN's critical path on every seed.
            // A beat is in r for exactly one cycle and goes into a three-entry output buffer
            // (o, the head that drives m_axis, then b1, b2). So that it always finds room,
            // a read is only issued while fewer than three beats are in the read pipeline
            // and the buffer together (held), or one leaves the head this cycle; three are
            // enough for one beat per cycle (two in flight, one at the head).
            // no_rw_check (Yosys): a read that takes a beat (rd) never hits the address written
            // in the same cycle (see rd below); an idle read may, and its data is ignored, so
            // no collision bypass logic is needed after the RAM.
            (* ram_style = "block", no_rw_check *)
            reg  [WIDTH-1:0] mem [0:DEPTH-1];
            reg  [WIDTH-1:0] q;
            reg              q_fresh;     // q was read in the last cycle
            reg  [WIDTH-1:0] r;
            reg              r_valid;     // r holds that beat (for this cycle only)
            reg  [WIDTH-1:0] o;
            reg  [WIDTH-1:0] b1;
            reg  [WIDTH-1:0] b2;
            reg  [1:0]       buffered;    // beats in o, b1, b2 (0..3, filled from o up)
            reg              o_valid;     // buffered != 0, as a flip-flop for m_axis_tvalid
            reg  [1:0]       held;        // q_fresh + r_valid + buffered (0..3)
            reg              held_full;   // held == 3
            wire leave = o_valid && m_axis_tready;
            // A beat taken is never the word written in the same cycle: count excludes it.
            wire rd = not_empty && (!held_full || leave);
            assign pop = rd;

            // The buffer after a leave: beats shift towards o, the arriving beat (r) goes
            // into the first free entry.
            wire two_or_more = buffered[1];
            wire o_load = leave ? (two_or_more || r_valid) : (!o_valid && r_valid);
            wire b1_load = leave ? (buffered == 2'd3 || (buffered == 2'd2 && r_valid))
                                 : (buffered == 2'd1 && r_valid);
            wire b2_load = !leave && buffered == 2'd2 && r_valid;
            wire [1:0] buffered_next = buffered + {1'b0, r_valid} - {1'b0, leave};
            wire [1:0] held_next = held + {1'b0, rd} - {1'b0, leave};

            // An idle read may hit the word being written (count 0): q is then ignored.
            always @(posedge clk) begin
                if (push) mem[wr_ptr] <= s_axis_tdata[WIDTH-1:0];
                q <= mem[rd_ptr];
            end
            always @(posedge clk) r <= q;
            always @(posedge clk) begin
                if (o_load) o <= two_or_more ? b1 : r;
                if (b1_load) b1 <= (buffered == 2'd3) ? b2 : r;
                if (b2_load) b2 <= r;
            end

            always @(posedge clk) begin
                if (!rst_n) begin
                    wr_ptr <= {AW{1'b0}};
                    rd_ptr <= {AW{1'b0}};
                    count <= {CW{1'b0}};
                    q_fresh <= 1'b0;
                    r_valid <= 1'b0;
                    buffered <= 2'd0;
                    o_valid <= 1'b0;
                    held <= 2'd0;
                    held_full <= 1'b0;
                end else begin
                    if (push) wr_ptr <= (wr_ptr == LAST_ADDR) ? {AW{1'b0}} : wr_ptr + 1'b1;
                    if (rd) rd_ptr <= (rd_ptr == LAST_ADDR) ? {AW{1'b0}} : rd_ptr + 1'b1;
                    if (push && !rd) count <= count + ONE;
                    else if (!push && rd) count <= count - ONE;
                    q_fresh <= rd;
                    r_valid <= q_fresh;
                    buffered <= buffered_next;
                    o_valid <= buffered_next != 2'd0;
                    held <= held_next;
                    held_full <= held_next == 2'd3;
                end
            end

            assign rd_data = o;
            assign m_axis_tvalid = o_valid;
        end else begin : g_dist
            // No ram_style here: LUT RAM where the device has it (ECP5), flip-flops where not
            // (iCE40 has no asynchronous-read RAM; forcing "distributed" fails there).
            reg  [WIDTH-1:0] mem [0:DEPTH-1];
            assign pop = m_axis_tvalid && m_axis_tready;

            always @(posedge clk) begin
                if (push) mem[wr_ptr] <= s_axis_tdata[WIDTH-1:0];
            end

            always @(posedge clk) begin
                if (!rst_n) begin
                    wr_ptr <= {AW{1'b0}};
                    rd_ptr <= {AW{1'b0}};
                    count <= {CW{1'b0}};
                end else begin
                    if (push) wr_ptr <= (wr_ptr == LAST_ADDR) ? {AW{1'b0}} : wr_ptr + 1'b1;
                    if (pop) rd_ptr <= (rd_ptr == LAST_ADDR) ? {AW{1'b0}} : rd_ptr + 1'b1;
                    if (push && !pop) count <= count + ONE;
                    else if (!push && pop) count <= count - ONE;
                end
            end

            assign rd_data = mem[rd_ptr];
            assign m_axis_tvalid = not_empty;
        end
    endgenerate
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
