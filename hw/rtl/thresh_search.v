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
//               NT*2^j words of PE*DBITS bits, word t*2^j + P holds for lane p (at bits
//               [p*DBITS +: DBITS]) T[t*PE+p][P*2^(OBITS-j) + 2^(OBITS-j-1) - 1], where P
//               is the value of the j count bits already decided (MSB first) and t the
//               lane's table number (t = nf without IDX)
//   NT, IDX     tables per lane. IDX = 0: NT = NF, table t = fold nf. IDX = 1 (channels
//               that only partly need tables, see requant_act.v): lane p of fold nf uses
//               table t = the TW-bit field p of word nf of "<prefix>_idx.hex" (NF words of
//               PE*TW bits, TW = clog2(NT), at least 1)
//   ROM_STYLE   0 = the flow's choice (block RAM for deep stages), 1 = LUTs (a few sparse
//               tables: block RAM is the scarcer resource)
// Latency: 4*OBITS + 2 cycles from in_valid to out_valid; one result per cycle. Input
//   register, then 4 registers per stage: the address register (written by the previous
//   stage's comparison), the memory's read register, a register next to the memory (one
//   per bank for stages deeper than 2048 words) and a register at the comparator (after
//   the bank mux); output register with the bias add. So a block RAM's slow clock-to-out
//   (~5.6 ns on ECP5 DP16KD) only ever drives a register, and the DBITS-wide comparison
//   starts and ends at flip-flops. OBITS <= 10 (single-digit stage file names).
// Requires: banked_rom.v (stages deeper than 2048 words).
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

module thresh_search #(
    parameter NF = 1,
    parameter PE = 1,
    parameter DBITS = 16,
    parameter OBITS = 4,
    parameter ACT_BIAS = 0,
    parameter NT = NF,
    parameter IDX = 0,
    parameter ROM_STYLE = 0,
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
    localparam RD = 3;          // address register -> threshold in the comparator's register
    localparam DW = PE * DBITS;
    localparam CW = PE * OBITS;
    localparam TW = (NT > 1) ? $clog2(NT) : 1;   // table number per lane
    localparam TWP = PE * TW;

    // A bank's number in a file name: three ASCII decimal digits ("_b007.hex").
    function [23:0] bank_number;
        input integer b;
        integer h, t, o;
        begin
            h = 48 + b / 100 % 10;
            t = 48 + b / 10 % 10;
            o = 48 + b % 10;
            bank_number = {h[7:0], t[7:0], o[7:0]};
        end
    endfunction

    // ------------------------------------------------------------------ parameter checks
    generate
        if (NF < 1) begin : g_err_nf
            `NF_PARAM_ERROR(("thresh_search: NF (%0d) must be >= 1", NF))
        end
        if (PE < 1) begin : g_err_pe
            `NF_PARAM_ERROR(("thresh_search: PE (%0d) must be >= 1", PE))
        end
        if (DBITS < 1) begin : g_err_dbits
            `NF_PARAM_ERROR(("thresh_search: DBITS (%0d) must be >= 1", DBITS))
        end
        if (OBITS < 1 || OBITS > 10) begin : g_err_obits
            `NF_PARAM_ERROR(("thresh_search: OBITS (%0d) must be 1..10 (one-digit file names)",
                             OBITS))
        end
        if (NT < 1 || (IDX == 0 && NT != NF) || IDX < 0 || IDX > 1) begin : g_err_nt
            `NF_PARAM_ERROR(("thresh_search: NT (%0d) must be >= 1, and = NF (%0d) unless IDX (%0d) = 1",
                             NT, NF, IDX))
        end
        if (ROM_STYLE < 0 || ROM_STYLE > 1) begin : g_err_rom_style
            `NF_PARAM_ERROR(("thresh_search: ROM_STYLE (%0d) must be 0 (auto) or 1 (LUTs)",
                             ROM_STYLE))
        end
    endgenerate

    // Stage boundaries: index j holds the registers that address stage j's memories (j = 0:
    // the input register), index OBITS the final count. Per element: valid, data, the count
    // bits decided so far (right-aligned) and each lane's table number.
    wire [OBITS:0]            st_v;
    wire [(OBITS+1)*DW-1:0]   st_d;
    wire [(OBITS+1)*CW-1:0]   st_p;
    wire [(OBITS+1)*TWP-1:0]  st_nf;

    reg  [NFW-1:0]            nf_cnt;
    reg                       in_v;
    reg  [DW-1:0]             in_d;
    reg  [TWP-1:0]            in_nf;
    reg                       o_valid;
    reg  [CW-1:0]             o_data;

    always @(posedge clk) begin
        if (!rst_n) begin
            nf_cnt <= {NFW{1'b0}};
            in_v <= 1'b0;
        end else begin
            if (in_valid) nf_cnt <= (nf_cnt == NF_LAST) ? {NFW{1'b0}} : nf_cnt + 1'b1;
            in_v <= in_valid;
        end
        in_d <= in_data;
    end
    generate
        if (IDX != 0) begin : g_idx
            // table numbers: a small ROM (NF words) in LUTs
            (* rom_style = "logic" *)
            /* verilator lint_off UNDRIVEN */  // ROM: contents from THRESH_FILE
            reg [TWP-1:0] idx [0:NF-1];
            /* verilator lint_on UNDRIVEN */
            if (THRESH_FILE != "") begin : g_init
                initial $readmemh({THRESH_FILE, "_idx.hex"}, idx);
            end
            always @(posedge clk) in_nf <= idx[nf_cnt];
        end else begin : g_noidx
            always @(posedge clk) in_nf <= {PE{nf_cnt}};
        end
    endgenerate
    assign st_v[0] = in_v;
    assign st_d[0 +: DW] = in_d;
    assign st_p[0 +: CW] = {CW{1'b0}};
    assign st_nf[0 +: TWP] = in_nf;

    genvar j, p;
    generate
        for (j = 0; j < OBITS; j = j + 1) begin : g_stage
            localparam DEPTH = NT << j;
            localparam AW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
            localparam integer DIGIT_I = 48 + j;        // ASCII digit of the stage number
            localparam [7:0] DIGIT = DIGIT_I[7:0];
            wire [TWP-1:0] nf_j = st_nf[j*TWP +: TWP];
            // Deep stages are split into banks of 2^BANK_AW words: 2048 is the deepest aspect
            // of the usual block RAMs at >= 2 bits (ECP5 DP16KD 2048 x 9, iCE40 SB_RAM40_4K
            // 2048 x 2), so a bank is block RAMs side by side, with no output mux.
            localparam BANK_AW = 11;
            localparam NBANK = (DEPTH + (1 << BANK_AW) - 1) >> BANK_AW;

            // The element waits RD cycles for its thresholds (shift registers, newest at
            // the bottom). Data path registers need no reset: validity travels in v_w.
            reg [RD-1:0]     v_w;
            reg [RD*DW-1:0]  d_w;
            reg [RD*CW-1:0]  p_w;
            reg [RD*TWP-1:0] nf_w;
            always @(posedge clk) begin
                if (!rst_n) v_w <= {RD{1'b0}};
                else v_w <= {v_w[RD-2:0], st_v[j]};
                d_w <= {d_w[(RD-1)*DW-1:0], st_d[j*DW +: DW]};
                p_w <= {p_w[(RD-1)*CW-1:0], st_p[j*CW +: CW]};
                nf_w <= {nf_w[(RD-1)*TWP-1:0], nf_j};
            end
            wire [DW-1:0] d_c = d_w[(RD-1)*DW +: DW];
            wire [CW-1:0] p_c = p_w[(RD-1)*CW +: CW];

            wire [CW-1:0] p_next;
            for (p = 0; p < PE; p = p + 1) begin : g_lane
                // Threshold memory: one per (stage, lane), each holding the whole PE-wide
                // stage word file but reading only its lane's slice (synthesis trims the
                // unused bits).
                wire [OBITS-1:0] pre = st_p[(j*PE + p)*OBITS +: OBITS];
                wire [TW-1:0] t_p = nf_j[p*TW +: TW];
                wire [AW-1:0] addr;
                if (j == 0) begin : g_a0
                    if (NT > 1) begin : g_nf
                        assign addr = t_p;
                    end else begin : g_one
                        assign addr = 1'b0;
                    end
                end else if (NT > 1) begin : g_aj
                    assign addr = {t_p, pre[j-1:0]};
                end else begin : g_aj1
                    assign addr = pre[j-1:0];
                end
                reg [DBITS-1:0] q_c;    // the threshold at the comparator
                if (ROM_STYLE == 1) begin : g_logic
                    (* rom_style = "logic" *)
                    /* verilator lint_off UNDRIVEN */  // ROM: contents from THRESH_FILE
                    reg [DW-1:0] mem [0:DEPTH-1];
                    /* verilator lint_on UNDRIVEN */
                    if (THRESH_FILE != "" && NBANK == 1) begin : g_init
                        initial $readmemh({THRESH_FILE, "_s", DIGIT, ".hex"}, mem);
                    end else if (THRESH_FILE != "") begin : g_init_banks
                        // one memory in LUTs, loaded from the stage's bank files
                        genvar lb;
                        for (lb = 0; lb < NBANK; lb = lb + 1) begin : g_load
                            localparam integer FIRST = lb << BANK_AW;
                            localparam [23:0] BNUM = bank_number(lb);
                            localparam integer LAST = (lb == NBANK - 1) ? DEPTH - 1
                                                      : FIRST + (1 << BANK_AW) - 1;
                            initial $readmemh({THRESH_FILE, "_s", DIGIT, "_b", BNUM, ".hex"},
                                              mem, FIRST, LAST);
                        end
                    end
                    reg [DBITS-1:0] q;
                    reg [DBITS-1:0] q_m;
                    always @(posedge clk) begin
                        q <= mem[addr][p*DBITS +: DBITS];
                        q_m <= q;
                        q_c <= q_m;
                    end
                end else if (NBANK == 1) begin : g_one_bank
                    /* verilator lint_off UNDRIVEN */  // ROM: contents from THRESH_FILE
                    reg [DW-1:0] mem [0:DEPTH-1];
                    /* verilator lint_on UNDRIVEN */
                    if (THRESH_FILE != "") begin : g_init   // no file access at default params
                        initial $readmemh({THRESH_FILE, "_s", DIGIT, ".hex"}, mem);
                    end
                    reg [DBITS-1:0] q;      // synchronous read: block RAM (or LUT RAM + FFs)
                    reg [DBITS-1:0] q_m;    // next to the memory
                    always @(posedge clk) begin
                        q <= mem[addr][p*DBITS +: DBITS];
                        q_m <= q;
                        q_c <= q_m;
                    end
                end else begin : g_banks
                    // A stage deeper than one bank: banked_rom.v (2^BANK_AW-word banks,
                    // files "<prefix>_s<j>_b<bbb>.hex"), its bank mux from the registers
                    // beside the RAMs, then the register at the comparator.
                    wire [DW-1:0] q_bank;
                    banked_rom #(.WIDTH(DW), .DEPTH(DEPTH), .BANK_AW(BANK_AW),
                                 .FILE((THRESH_FILE != "") ? {THRESH_FILE, "_s", DIGIT} : ""))
                    u_rom (.clk(clk), .addr(addr), .data(q_bank));
                    always @(posedge clk) q_c <= q_bank[p*DBITS +: DBITS];
                end

                // The comparison appends the decided bit to the count prefix.
                wire ge = $signed(d_c[p*DBITS +: DBITS]) >= $signed(q_c);
                if (OBITS > 1) begin : g_shift
                    assign p_next[p*OBITS +: OBITS] = {p_c[p*OBITS +: OBITS-1], ge};
                end else begin : g_bit
                    assign p_next[p*OBITS +: OBITS] = ge;
                end
            end

            // Next stage's address registers.
            reg           v_o;
            reg [DW-1:0]  d_o;
            reg [CW-1:0]  p_o;
            reg [TWP-1:0] nf_o;
            always @(posedge clk) begin
                if (!rst_n) v_o <= 1'b0;
                else v_o <= v_w[RD-1];
                d_o <= d_c;
                p_o <= p_next;
                nf_o <= nf_w[(RD-1)*TWP +: TWP];
            end
            assign st_v[j+1] = v_o;
            assign st_d[(j+1)*DW +: DW] = d_o;
            assign st_p[(j+1)*CW +: CW] = p_o;
            assign st_nf[(j+1)*TWP +: TWP] = nf_o;
        end
    endgenerate

    integer l;
    always @(posedge clk) begin
        if (!rst_n) o_valid <= 1'b0;
        else o_valid <= st_v[OBITS];
        for (l = 0; l < PE; l = l + 1)
            o_data[l*OBITS +: OBITS] <= st_p[(OBITS*PE + l)*OBITS +: OBITS] + BIAS;
    end

    assign out_valid = o_valid;
    assign out_data = o_data;
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
