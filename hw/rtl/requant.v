// requant.v -- exact requantizer: multiply, add, shift, clip (netfabric RTL library)
//
// For PE lanes per input, channel c = nf*PE + p:
//     out = clip((x * M[c] + B[c]) >>> SHIFT, 0, LEVELS) + ACT_BIAS   (OBITS bits)
// which equals the threshold count #{k : x >= T[c][k]} + ACT_BIAS wherever host/requant.py
// proved it (an evenly rounded progression of thresholds). Channels the proof rejects carry
// use = 0 and are answered by thresh_search.v instead (requant_act.v picks per lane).
//
// Protocol: internal building block, no backpressure, as thresh_search.v: inputs are
//   consecutive channel folds nf = 0, 1, .., NF-1, 0, ...; out_valid/out_data/out_use follow
//   LATENCY = 4 cycles later in the same order.
// Parameters:
//   NF, PE      channel folds and lanes (lane p at in_data[p*DBITS +: DBITS], signed)
//   DBITS       input width (two's complement)
//   OBITS       output width;  LEVELS: the count saturates at LEVELS (<= 2^OBITS - 1)
//   MBITS       multiplier width (unsigned, > 0);  BBITS: addend width (two's complement)
//   SHIFT       common right shift (arithmetic, i.e. floor)
//   ACT_BIAS    signed integer added to the count; result truncated to OBITS bits
//   RQ_FILE     $readmemh file, NF words of PE*(1+BBITS+MBITS) bits: lane p of word nf at
//               [p*RW +: RW] (RW = 1+BBITS+MBITS) holds {use, B, M} of channel nf*PE+p
// Pipeline: input register (the constants' ROM read beside it), product register (the
//   multiplier, DSP blocks where the flow maps "*"), sum register, clip + bias register.
// Widths are exact: the product takes DBITS+MBITS+1 bits, the sum one more than the wider
//   of product and addend, so nothing wraps before the clip.
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

module requant #(
    parameter NF = 1,
    parameter PE = 1,
    parameter DBITS = 16,
    parameter OBITS = 4,
    parameter LEVELS = 15,
    parameter MBITS = 16,
    parameter BBITS = 24,
    parameter SHIFT = 16,
    parameter ACT_BIAS = 0,
    parameter RQ_FILE = ""
) (
    input  wire                  clk,
    input  wire                  rst_n,
    input  wire                  in_valid,
    input  wire [PE*DBITS-1:0]   in_data,
    output wire                  out_valid,
    output wire [PE*OBITS-1:0]   out_data,
    output wire [PE-1:0]         out_use
);
    localparam NFW = (NF > 1) ? $clog2(NF) : 1;
    localparam integer NF_LAST_I = NF - 1;
    localparam [NFW-1:0] NF_LAST = NF_LAST_I[NFW-1:0];
    localparam RW = 1 + BBITS + MBITS;
    localparam PW = DBITS + MBITS + 1;                       // signed product
    localparam XE = (DBITS > 18) ? DBITS : 18;               // operand widths for the split
    localparam ME = (MBITS > 18) ? MBITS : 18;
    localparam SW0 = ((PW > BBITS) ? PW : BBITS) + 1;        // signed sum
    // at least a sign bit above OBITS after the shift, so the clip sees every value
    localparam SW1 = (SW0 > SHIFT + OBITS + 1) ? SW0 : SHIFT + OBITS + 1;
    localparam SW = (SW1 > 37) ? SW1 : 37;                   // room for the partial products
    localparam QW = SW - SHIFT;                              // after the shift
    localparam integer BIAS_I = ACT_BIAS;
    localparam [OBITS-1:0] BIAS = BIAS_I[OBITS-1:0];
    localparam integer LEVELS_I = LEVELS;
    localparam [OBITS-1:0] LEV = LEVELS_I[OBITS-1:0];

    // ------------------------------------------------------------------ parameter checks
    generate
        if (NF < 1 || PE < 1 || DBITS < 1 || MBITS < 1 || BBITS < 1) begin : g_err_sizes
            `NF_PARAM_ERROR(("requant: NF, PE, DBITS, MBITS, BBITS (%0d %0d %0d %0d %0d) must be >= 1",
                             NF, PE, DBITS, MBITS, BBITS))
        end
        if (OBITS < 1 || LEVELS < 1 || LEVELS > (1 << OBITS) - 1) begin : g_err_levels
            `NF_PARAM_ERROR(("requant: LEVELS (%0d) must be 1..2^OBITS-1 (OBITS %0d)",
                             LEVELS, OBITS))
        end
        if (SHIFT < 0 || SHIFT > 62) begin : g_err_shift
            `NF_PARAM_ERROR(("requant: SHIFT (%0d) must be 0..62", SHIFT))
        end
    endgenerate

    // Per-channel constants: a small ROM in LUTs (NF words), read beside the input register.
    (* rom_style = "logic" *)
    /* verilator lint_off UNDRIVEN */  // ROM: contents from RQ_FILE
    reg [PE*RW-1:0] crom [0:NF-1];
    /* verilator lint_on UNDRIVEN */
    generate
        if (RQ_FILE != "") begin : g_init   // no file access at default parameters
            initial $readmemh(RQ_FILE, crom);
        end
    endgenerate

    reg [NFW-1:0]    nf_cnt;
    reg [3:0]        v_sr;
    reg [PE*DBITS-1:0] x_r;
    reg [PE*RW-1:0]  k_r;
    always @(posedge clk) begin
        if (!rst_n) begin
            nf_cnt <= {NFW{1'b0}};
            v_sr <= 4'd0;
        end else begin
            if (in_valid) nf_cnt <= (nf_cnt == NF_LAST) ? {NFW{1'b0}} : nf_cnt + 1'b1;
            v_sr <= {v_sr[2:0], in_valid};
        end
        x_r <= in_data;
        k_r <= crom[nf_cnt];
    end

    reg [PE*OBITS-1:0] o_data;
    reg [PE-1:0]       o_use;
    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_lane
            wire signed [DBITS-1:0] x = x_r[p*DBITS +: DBITS];
            wire signed [BBITS-1:0] b = k_r[p*RW + MBITS +: BBITS];
            // x * m as four partial products of at most 18 x 18 bits (one DSP block each,
            // registered), summed in the next stage: a single wide "*" became a chain of
            // DSP blocks and adders with no register inside (47 MHz on ECP5).
            // x = xh * 2^17 + xl (xl unsigned), m = mh * 2^17 + ml; the sums wrap in SW
            // bits, which is exact because the true x*m + b fits SW bits.
            wire signed [XE-1:0]    xe = {{(XE-DBITS){x[DBITS-1]}}, x};
            wire [ME-1:0]           me = {{(ME-MBITS){1'b0}}, k_r[p*RW +: MBITS]};
            wire signed [17:0]      xl = {1'b0, xe[16:0]};
            wire signed [XE-18:0]   xh = xe[XE-1:17];
            wire signed [17:0]      ml = {1'b0, me[16:0]};
            wire signed [ME-17:0]   mh = {1'b0, me[ME-1:17]};
            reg  signed [35:0]      pll;
            reg  signed [XE-17+17:0] phl;
            reg  signed [ME+1:0]    plh;
            reg  signed [XE+ME-34:0] phh;
            reg  signed [BBITS-1:0] b_r;
            reg  [1:0]              use_sr;
            reg  signed [SW-1:0]    sum;
            always @(posedge clk) begin
                pll <= xl * ml;
                phl <= xh * ml;
                plh <= xl * mh;
                phh <= xh * mh;
                b_r <= b;
                sum <= ($signed({{(SW-(XE+ME-33)){phh[XE+ME-34]}}, phh}) <<< 34)
                       + (($signed({{(SW-(XE+1)){phl[XE]}}, phl})
                           + $signed({{(SW-(ME+2)){plh[ME+1]}}, plh})) <<< 17)
                       + $signed({{(SW-36){pll[35]}}, pll})
                       + $signed({{(SW-BBITS){b_r[BBITS-1]}}, b_r});
                use_sr <= {use_sr[0], k_r[p*RW + RW - 1]};
            end
            wire signed [SW-1:0] sh = sum >>> SHIFT;
            wire signed [QW-1:0] q = sh[QW-1:0];
            // clip to [0, LEVELS], then the bias (modulo 2^OBITS, as thresh_search.v)
            wire [OBITS-1:0] cnt = q[QW-1] ? {OBITS{1'b0}}
                                 : ($signed(q) > $signed({{(QW-OBITS){1'b0}}, LEV}))
                                   ? LEV : q[OBITS-1:0];
            always @(posedge clk) begin
                o_data[p*OBITS +: OBITS] <= cnt + BIAS;
                o_use[p] <= use_sr[1];
            end
        end
    endgenerate

    assign out_valid = v_sr[3];
    assign out_data = o_data;
    assign out_use = o_use;
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
