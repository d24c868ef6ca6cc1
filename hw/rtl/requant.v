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
//   LATENCY = 6 cycles later in the same order.
// Parameters:
//   NF, PE      channel folds and lanes (lane p at in_data[p*DBITS +: DBITS], signed)
//   DBITS       input width (two's complement)
//   OBITS       output width;  LEVELS: the count saturates at LEVELS (<= 2^OBITS - 1)
//   MBITS       multiplier width (unsigned, > 0);  BBITS: addend width (two's complement)
//   SHIFT       common right shift (arithmetic, i.e. floor)
//   ACT_BIAS    signed integer added to the count; result truncated to OBITS bits
//   RQ_FILE     $readmemh file, NF words of PE*(1+BBITS+MBITS) bits: lane p of word nf at
//               [p*RW +: RW] (RW = 1+BBITS+MBITS) holds {use, B, M} of channel nf*PE+p
// Pipeline: the multipliers' operand registers (mul_reg.v; the constants read from the ROM a
//   cycle ahead, two folds at a time),
//   their product registers, the products again in the fabric, two partial sums, the sum,
//   clip + bias.
// Widths are exact: the product takes DBITS+MBITS+1 bits, the sum one more than the wider
//   of product and addend, so nothing wraps before the clip.
// Requires: mul_reg.v.
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

    // Per-channel constants: a small ROM in LUTs (NF words), read a cycle ahead (below).
    (* rom_style = "logic" *)
    /* verilator lint_off UNDRIVEN */  // ROM: contents from RQ_FILE
    reg [PE*RW-1:0] crom [0:NF-1];
    /* verilator lint_on UNDRIVEN */
    generate
        if (RQ_FILE != "") begin : g_init   // no file access at default parameters
            initial $readmemh(RQ_FILE, crom);
        end
    endgenerate

    // k holds the constants of the next input's fold. The ROM is read every cycle into two
    // registers, at the next input's fold f0 and at the fold after it f1, with addresses from
    // registers only; k picks the second when an input arrived in the previous cycle (v1).
    // Neither in_valid (routed from the unit's accumulator, often far away) nor reset reaches
    // a ROM address: with reset in the address (k <= crom[rst_n ? ra : 0], enabled by
    // in_valid) the ROM became 4 LUT levels + a PFUMX, the MLP's critical path (120.3 MHz);
    // with k = crom[count], Yosys moved the counter behind the ROM (119.6 MHz). Reset holds
    // f0 at fold 0, so k is fold 0's constants from the first cycle after it.
    // The fold after f1 waits in its own register f2, and only f2 has an incrementer: f1 (a ROM
    // address) loads f2 unchanged. With f1 <= f1 + 1, Yosys reused a sum bit of that
    // incrementer's carry chain in the ROM's decode (f1[1] ^ f1[0]), putting the chain in the
    // ROM's path: the MLP's critical path on seed 1 at 8ed6c05 (mvau_1, 8.1 ns) and the
    // transformer's on all three seeds (9.1-9.7 ns).
    // Tried and reverted (0ed8813): the constants through a read-ahead pipeline advancing on
    // in_valid (groups of 16 words a LUT4 each, then the group's word; ROM as mem2reg, reset
    // preloading the wide registers). Every ROM read became <= 2 LUT levels and the designs
    // lost LUTs (transformer -17%), but they placed worse: the transformer 85.8 / 87.2 / 96.8
    // MHz (2b7e0aa: 103.4 / 106.8 / 110.2; its paths: long routes in the attention's control,
    // the reset tree, a constant ROM), the MLP 119.8 / 120.5 / 123.0 (paths outside requant).
    localparam integer F1_RST_I = (NF > 1) ? 1 : 0;
    localparam [NFW-1:0] F1_RST = F1_RST_I[NFW-1:0];
    localparam integer F2_RST_I = (NF > 2) ? 2 : 0;
    localparam [NFW-1:0] F2_RST = F2_RST_I[NFW-1:0];
    reg [NFW-1:0]    f0, f1, f2;
    reg [5:0]        v_sr;
    reg [PE*RW-1:0]  kn0, kn1;
    reg [PE*RW-1:0]  k_r;
    // v1's select reaches every constant bit of every lane (about PE * RW LUTs, next to DSP
    // blocks in their own columns): one register drove them all, a 7.9 ns route at 8f10259
    // (the MLP's critical path on seed 1, 113.9 MHz). Each lane's multiplier constants and its
    // addend each get their own copy (keep: Yosys would merge equal flip-flops).
    (* keep *) reg [PE-1:0] v1_m;
    (* keep *) reg [PE-1:0] v1_b;
    wire [PE*RW-1:0] k;
    genvar kl;
    generate
        for (kl = 0; kl < PE; kl = kl + 1) begin : g_ksel
            assign k[kl*RW +: MBITS] = v1_m[kl] ? kn1[kl*RW +: MBITS] : kn0[kl*RW +: MBITS];
            assign k[kl*RW + MBITS +: RW - MBITS] = v1_b[kl] ? kn1[kl*RW + MBITS +: RW - MBITS]
                                                             : kn0[kl*RW + MBITS +: RW - MBITS];
        end
    endgenerate
    always @(posedge clk) begin
        if (!rst_n) begin
            f0 <= {NFW{1'b0}};
            f1 <= F1_RST;
            f2 <= F2_RST;
            v_sr <= 6'd0;
        end else begin
            if (in_valid) begin
                f0 <= f1;
                f1 <= f2;
                f2 <= (f2 == NF_LAST) ? {NFW{1'b0}} : f2 + 1'b1;
            end
            v_sr <= {v_sr[4:0], in_valid};
        end
        // v1 = an input arrived in the previous cycle (0 after reset), one copy per use
        v1_m <= {PE{rst_n && in_valid}};
        v1_b <= {PE{rst_n && in_valid}};
        kn0 <= crom[f0];
        kn1 <= crom[f1];
        k_r <= k;   // the addend and use bit; the multipliers register x and m themselves
    end

    // x * m as at most four partial products of <= 18 x 18 bits, each a mul_reg (one DSP block
    // on ECP5 with its own input and output registers, which take the place of an input
    // register here). One wide "*" became a chain of DSP blocks with no register inside
    // (47 MHz); a "*" between fabric registers left the constants' register -> DSP route on
    // the critical path (104.6 MHz); the DSP's output register straight into a one-stage sum of
    // four products left a 5.9 ns route + the adders (76.6 MHz on the CNN).
    // x = xh * 2^17 + xl (xl unsigned) when DBITS > 18, m = mh * 2^17 + ml when MBITS > 17;
    // the sums wrap in SW bits, which is exact because the true x*m + b fits SW bits.
    localparam XSPLIT = (DBITS > 18) ? 1 : 0;
    localparam MSPLIT = (MBITS > 17) ? 1 : 0;
    localparam XLW = XSPLIT ? 17 : DBITS;      // low part of x: unsigned if split, else x
    localparam MLW = MSPLIT ? 17 : MBITS;      // low part of m (m is unsigned)
    localparam XHW = XSPLIT ? DBITS - 17 : 1;  // high parts (signed x, unsigned m)
    localparam MHW = MSPLIT ? MBITS - 17 : 1;

    reg [PE*OBITS-1:0] o_data;
    reg [PE-1:0]       o_use;
    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_lane
            wire [DBITS-1:0] x = in_data[p*DBITS +: DBITS];
            wire [MBITS-1:0] m = k[p*RW +: MBITS];
            // partial products, sign-extended to SW bits (zero where a part does not exist)
            wire signed [SW-1:0] e_ll, e_hl, e_lh, e_hh;
            wire [XLW+MLW:0] pll;
            mul_reg #(.AW(XLW), .ASIGNED(XSPLIT ? 0 : 1), .BW(MLW), .BSIGNED(0),
                      .PW(XLW + MLW + 1)) u_ll (.clk(clk), .a(x[XLW-1:0]), .b(m[MLW-1:0]), .p(pll));
            assign e_ll = $signed({{(SW-XLW-MLW-1){pll[XLW+MLW]}}, pll});
            if (XSPLIT) begin : g_xh
                wire [XHW+MLW:0] phl;
                mul_reg #(.AW(XHW), .ASIGNED(1), .BW(MLW), .BSIGNED(0), .PW(XHW + MLW + 1))
                    u_hl (.clk(clk), .a(x[DBITS-1:17]), .b(m[MLW-1:0]), .p(phl));
                assign e_hl = $signed({{(SW-XHW-MLW-1){phl[XHW+MLW]}}, phl});
            end else begin : g_noxh
                assign e_hl = {SW{1'b0}};
            end
            if (MSPLIT) begin : g_mh
                wire [XLW+MHW:0] plh;
                mul_reg #(.AW(XLW), .ASIGNED(XSPLIT ? 0 : 1), .BW(MHW), .BSIGNED(0),
                          .PW(XLW + MHW + 1))
                    u_lh (.clk(clk), .a(x[XLW-1:0]), .b(m[MBITS-1:17]), .p(plh));
                assign e_lh = $signed({{(SW-XLW-MHW-1){plh[XLW+MHW]}}, plh});
            end else begin : g_nomh
                assign e_lh = {SW{1'b0}};
            end
            if (XSPLIT && MSPLIT) begin : g_hh
                wire [XHW+MHW:0] phh;
                mul_reg #(.AW(XHW), .ASIGNED(1), .BW(MHW), .BSIGNED(0), .PW(XHW + MHW + 1))
                    u_hh (.clk(clk), .a(x[DBITS-1:17]), .b(m[MBITS-1:17]), .p(phh));
                assign e_hh = $signed({{(SW-XHW-MHW-1){phh[XHW+MHW]}}, phh});
            end else begin : g_nohh
                assign e_hh = {SW{1'b0}};
            end

            // The DSP blocks sit in their own columns, often far from this lane's adders: each
            // product is registered again in the fabric (the placer puts that register
            // between), then summed in two stages (two partial sums, then the total).
            reg  signed [SW-1:0]    r_ll, r_hl, r_lh, r_hh;
            reg  signed [BBITS-1:0] b_r, b_rr;
            reg  signed [SW-1:0]    s_lo, s_mid, s_hi;
            reg  [3:0]              use_sr;
            reg  signed [SW-1:0]    sum;
            always @(posedge clk) begin
                b_r <= k_r[p*RW + MBITS +: BBITS];
                b_rr <= b_r;
                r_ll <= e_ll;
                r_hl <= e_hl;
                r_lh <= e_lh;
                r_hh <= e_hh;
                s_lo <= r_ll + $signed({{(SW-BBITS){b_rr[BBITS-1]}}, b_rr});
                s_mid <= r_hl + r_lh;
                s_hi <= r_hh;
                sum <= (s_hi <<< 34) + (s_mid <<< 17) + s_lo;
                use_sr <= {use_sr[2:0], k_r[p*RW + RW - 1]};
            end
            wire signed [SW-1:0] sh = sum >>> SHIFT;
            wire signed [QW-1:0] q = sh[QW-1:0];
            // clip to [0, LEVELS], then the bias (modulo 2^OBITS, as thresh_search.v)
            wire [OBITS-1:0] cnt = q[QW-1] ? {OBITS{1'b0}}
                                 : ($signed(q) > $signed({{(QW-OBITS){1'b0}}, LEV}))
                                   ? LEV : q[OBITS-1:0];
            always @(posedge clk) begin
                o_data[p*OBITS +: OBITS] <= cnt + BIAS;
                o_use[p] <= use_sr[3];
            end
        end
    endgenerate

    assign out_valid = v_sr[5];
    assign out_data = o_data;
    assign out_use = o_use;
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
