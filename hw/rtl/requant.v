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
// Pipeline: the multipliers' operand registers (mul_reg.v; the constants come from a read-ahead
//   pipeline that advances with the inputs, below),
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

    // Per-channel constants: a small ROM in LUTs (NF words), read ahead through a pipeline
    // that advances with the inputs (below).
    localparam NG = (NF + 15) / 16;             // groups of 16 words: 4 address bits, one LUT4
    localparam TWO = (NF > 16) ? 1 : 0;         // a second stage picks the group
    localparam NGW = (NG > 1) ? $clog2(NG) : 1;
    localparam CD = TWO ? NG * 16 : NF;         // ROM depth
    // mem2reg: Yosys makes the ROM constants and its reads multiplexers, so no memory pass
    // can fold the address register into the read (it did: the address's next-value logic,
    // with in_valid, ahead of the ROM, 3 LUT levels).
    (* mem2reg *)
    /* verilator lint_off UNDRIVEN */  // ROM: contents from RQ_FILE
    reg [PE*RW-1:0] crom [0:CD-1];  // words NF.. pad the last group, never selected
    /* verilator lint_on UNDRIVEN */
    generate
        if (RQ_FILE != "") begin : g_init   // no file access at default parameters
            initial $readmemh(RQ_FILE, crom, 0, NF - 1);
        end
    endgenerate

    // c0 holds the constants of the next input's fold. The words come through a pipeline
    // whose registers all advance on in_valid (their clock enable), so it always holds the
    // next folds in order: the address a (fold c0 + 1 + TWO), for NF > 16 a first stage r1
    // that reads the word at a's low 4 bits in every group of 16 (one LUT4 a bit: a 4-input
    // function) with the group number ah, and c0, which takes r1's word of group ah. Reset
    // loads the pipeline with folds 0, 1, 2. Every ROM read is one LUT from a register, and
    // in_valid (routed from the unit's accumulator, often far away) only reaches clock
    // enables. Earlier forms, each a measured critical path: a ROM read of NF words in one
    // cycle, which Yosys maps with 4-5 LUT levels in a full design (ABC relaxes paths it
    // deems short), once with a sum bit of the address counter's carry chain shared into the
    // decode (MLP seed 1 at 8ed6c05, 8.1 ns; transformer, 9.1-9.7 ns); reset in the address
    // (120.3 MHz); the counter moved behind the ROM (119.6 MHz).
    // The address a loads an, which alone has the incrementer: a holds no arithmetic.
    localparam integer A_RST_I = (1 + TWO) % NF;
    localparam integer AN_RST_I = (2 + TWO) % NF;
    localparam [NFW-1:0] A_RST = A_RST_I[NFW-1:0];
    localparam [NFW-1:0] AN_RST = AN_RST_I[NFW-1:0];
    reg [NFW-1:0]    a, an;
    reg [5:0]        v_sr;
    reg [PE*RW-1:0]  c0;
    reg [PE*RW-1:0]  k_r;
    always @(posedge clk) begin
        if (!rst_n) begin
            a <= A_RST;
            an <= AN_RST;
            v_sr <= 6'd0;
        end else begin
            if (in_valid) begin
                a <= an;
                an <= (an == NF_LAST) ? {NFW{1'b0}} : an + 1'b1;
            end
            v_sr <= {v_sr[4:0], in_valid};
        end
        k_r <= c0;  // the addend and use bit; the multipliers register x and m themselves
    end
    generate
        if (TWO) begin : g_two
            wire [3:0] lo = a[3:0];
            reg [PE*RW-1:0] r1 [0:NG-1];
            reg [NGW-1:0]   ah;
            genvar g;
            for (g = 0; g < NG; g = g + 1) begin : g_grp
                always @(posedge clk) begin
                    if (!rst_n) r1[g] <= crom[g * 16 + 1];   // fold 1 is in group 0
                    else if (in_valid) r1[g] <= crom[g * 16 + lo];
                end
            end
            always @(posedge clk) begin
                if (!rst_n) begin
                    ah <= {NGW{1'b0}};
                    c0 <= crom[0];
                end else if (in_valid) begin
                    ah <= a[NFW-1:4];
                    c0 <= r1[ah];
                end
            end
        end else begin : g_one
            always @(posedge clk) begin
                if (!rst_n) c0 <= crom[0];
                else if (in_valid) c0 <= crom[a];
            end
        end
    endgenerate

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
            wire [MBITS-1:0] m = c0[p*RW +: MBITS];
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
