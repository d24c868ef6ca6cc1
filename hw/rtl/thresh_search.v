// thresh_search.v -- pipelined binary-search multi-threshold unit (netfabric RTL library)
//
// Computes, for PE lanes per input, the FINN MultiThreshold activation
//     out = #{k : x >= T[c][k]} + ACT_BIAS       (k = 0 .. 2^OBITS-2, T[c] sorted ascending)
// with OBITS comparators per lane instead of 2^OBITS-1: stage j (j = 0 .. OBITS-1) decides
// bit OBITS-1-j of the count by comparing x with the middle threshold of the interval left
// by the bits decided so far (implicit complete binary search tree over T[c]).
//
// Protocol: internal building block, no backpressure. in_valid/in_data enter every cycle;
//   inputs are taken as consecutive channel folds nf = 0, 1, .., NF-1, 0, 1, ... (the lane p
//   of fold nf is channel c = nf*PE + p). out_valid/out_data follow LATENCY cycles later in
//   the same order. The caller guarantees room for the results (credit counting).
// Parameters:
//   NF          channel folds (channels = NF * PE)
//   PE          lanes per input word; lane p at in_data[p*DBITS +: DBITS]
//   DBITS       width of the (signed, two's complement) values and thresholds
//   OBITS       output bits; 2^OBITS - 1 thresholds per channel (pad unused ones with the
//               largest DBITS value, see hw/rtl/README.md)
//   ACT_BIAS    signed integer added to the count; result truncated to OBITS bits
//   THRESH_FILE path prefix of the threshold memories: stage j reads "<prefix>_s<j>.hex",
//               NF*2^j words of PE*DBITS bits, word nf*2^j + P holds for lane p (at bits
//               [p*DBITS +: DBITS]) T[nf*PE+p][P*2^(OBITS-j) + 2^(OBITS-j-1) - 1], where P
//               is the value of the j count bits already decided (MSB first).
// Latency: 3*OBITS + 2 cycles from in_valid to out_valid (input register, 3 per stage:
//   the address register, the memory read register, a register on the read data, then the
//   comparison writes the next stage's address register; output register with the bias
//   add); one result per cycle. The register on the read data keeps a block RAM's slow
//   clock-to-out (~6 ns on ECP5 DP16KD) out of the DBITS-wide comparison and the next
//   address: every path is one memory access or one comparator plus routing.
//   OBITS <= 10 (single-digit stage file names).
module thresh_search #(
    parameter NF = 1,
    parameter PE = 1,
    parameter DBITS = 16,
    parameter OBITS = 4,
    parameter ACT_BIAS = 0,
    parameter THRESH_FILE = ""
) (
    input  wire                  clk,
    input  wire                  rst_n,
    input  wire                  in_valid,
    input  wire [PE*DBITS-1:0]   in_data,
    output wire                  out_valid,
    output wire [PE*OBITS-1:0]   out_data
);
    localparam NFW = (NF > 1) ? $clog2(NF) : 1;
    localparam integer NF_LAST_I = NF - 1;
    localparam [NFW-1:0] NF_LAST = NF_LAST_I[NFW-1:0];
    localparam integer BIAS_I = ACT_BIAS;
    localparam [OBITS-1:0] BIAS = BIAS_I[OBITS-1:0];

    // Per stage j, three register ranks travel in step:
    //   "a": data, decided count bits and fold, feeding the memory address;
    //   "b": wait for the registered memory read (q, inside the RAM);
    //   "c": wait for the read data register (t_q).
    // Index j = OBITS of the "a" registers is the final count.
    reg [OBITS:0]                 v_a;
    reg [(OBITS+1)*PE*DBITS-1:0]  d_a;
    reg [(OBITS+1)*PE*OBITS-1:0]  p_a;   // count bits decided so far (right-aligned)
    reg [(OBITS+1)*NFW-1:0]       nf_a;
    reg [OBITS-1:0]               v_b;
    reg [OBITS*PE*DBITS-1:0]      d_b;
    reg [OBITS*PE*OBITS-1:0]      p_b;
    reg [OBITS*NFW-1:0]           nf_b;
    reg [OBITS-1:0]               v_c;
    reg [OBITS*PE*DBITS-1:0]      d_c;
    reg [OBITS*PE*OBITS-1:0]      p_c;
    reg [OBITS*NFW-1:0]           nf_c;
    wire [OBITS*PE*DBITS-1:0]     t_q;   // threshold read by stage j for lane p (registered)

    reg [NFW-1:0]                 nf_cnt;
    reg                           o_valid;
    reg [PE*OBITS-1:0]            o_data;

    always @(posedge clk) begin
        if (!rst_n) nf_cnt <= {NFW{1'b0}};
        else if (in_valid) nf_cnt <= (nf_cnt == NF_LAST) ? {NFW{1'b0}} : nf_cnt + 1'b1;
    end

    // Threshold memories: one per (stage, lane), each holding the whole PE-wide stage word
    // file but reading only its lane's slice (synthesis trims the unused bits).
    genvar j, p;
    generate
        for (j = 0; j < OBITS; j = j + 1) begin : g_stage
            localparam DEPTH = NF << j;
            localparam AW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
            localparam integer DIGIT_I = 48 + j;        // ASCII digit of the stage number
            localparam [7:0] DIGIT = DIGIT_I[7:0];
            wire [NFW-1:0] nf_j = nf_a[j*NFW +: NFW];
            for (p = 0; p < PE; p = p + 1) begin : g_lane
                wire [OBITS-1:0] pre = p_a[(j*PE + p)*OBITS +: OBITS];
                wire [AW-1:0] addr;
                if (j == 0) begin : g_a0
                    if (NF > 1) begin : g_nf
                        assign addr = nf_j;
                    end else begin : g_one
                        assign addr = 1'b0;
                    end
                end else if (NF > 1) begin : g_aj
                    assign addr = {nf_j, pre[j-1:0]};
                end else begin : g_aj1
                    assign addr = pre[j-1:0];
                end
                /* verilator lint_off UNDRIVEN */  // ROM: contents from THRESH_FILE
                reg [PE*DBITS-1:0] mem [0:DEPTH-1];
                /* verilator lint_on UNDRIVEN */
                reg [DBITS-1:0] q;     // synchronous read: block RAM (or LUT RAM + FFs)
                reg [DBITS-1:0] q_r;   // fabric register: the comparison starts from a FF
                if (THRESH_FILE != "") begin : g_init   // no file access at default params
                    initial $readmemh({THRESH_FILE, "_s", DIGIT, ".hex"}, mem);
                end
                always @(posedge clk) begin
                    q <= mem[addr][p*DBITS +: DBITS];
                    q_r <= q;
                end
                assign t_q[(j*PE + p)*DBITS +: DBITS] = q_r;
            end
        end
    endgenerate

    // Comparison of stage j, lane p: appends the decided bit to the count prefix.
    wire [OBITS*PE*OBITS-1:0] p_next;
    generate
        for (j = 0; j < OBITS; j = j + 1) begin : g_cmp
            for (p = 0; p < PE; p = p + 1) begin : g_lane
                wire ge = $signed(d_c[(j*PE + p)*DBITS +: DBITS])
                          >= $signed(t_q[(j*PE + p)*DBITS +: DBITS]);
                if (OBITS > 1) begin : g_shift
                    assign p_next[(j*PE + p)*OBITS +: OBITS] =
                        {p_c[(j*PE + p)*OBITS +: OBITS-1], ge};
                end else begin : g_bit
                    assign p_next[(j*PE + p)*OBITS +: OBITS] = ge;
                end
            end
        end
    endgenerate

    integer s, l;
    always @(posedge clk) begin
        // Data path registers: no reset needed, validity travels in v_a/v_b/v_c.
        d_a[0 +: PE*DBITS] <= in_data;
        nf_a[0 +: NFW] <= nf_cnt;
        p_a[0 +: PE*OBITS] <= {PE*OBITS{1'b0}};
        for (s = 0; s < OBITS; s = s + 1) begin
            d_b[s*PE*DBITS +: PE*DBITS] <= d_a[s*PE*DBITS +: PE*DBITS];
            p_b[s*PE*OBITS +: PE*OBITS] <= p_a[s*PE*OBITS +: PE*OBITS];
            nf_b[s*NFW +: NFW] <= nf_a[s*NFW +: NFW];
            d_c[s*PE*DBITS +: PE*DBITS] <= d_b[s*PE*DBITS +: PE*DBITS];
            p_c[s*PE*OBITS +: PE*OBITS] <= p_b[s*PE*OBITS +: PE*OBITS];
            nf_c[s*NFW +: NFW] <= nf_b[s*NFW +: NFW];
            d_a[(s+1)*PE*DBITS +: PE*DBITS] <= d_c[s*PE*DBITS +: PE*DBITS];
            nf_a[(s+1)*NFW +: NFW] <= nf_c[s*NFW +: NFW];
            p_a[(s+1)*PE*OBITS +: PE*OBITS] <= p_next[s*PE*OBITS +: PE*OBITS];
        end
        for (l = 0; l < PE; l = l + 1)
            o_data[l*OBITS +: OBITS] <= p_a[(OBITS*PE + l)*OBITS +: OBITS] + BIAS;
    end

    always @(posedge clk) begin
        if (!rst_n) begin
            v_a <= {(OBITS+1){1'b0}};
            v_b <= {OBITS{1'b0}};
            v_c <= {OBITS{1'b0}};
            o_valid <= 1'b0;
        end else begin
            v_a <= {v_c, in_valid};
            v_b <= v_a[OBITS-1:0];
            v_c <= v_b;
            o_valid <= v_a[OBITS];
        end
    end

    assign out_valid = o_valid;
    assign out_data = o_data;
endmodule
