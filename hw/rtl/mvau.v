// mvau.v -- MatrixVectorActivation unit (FINN MVAU semantics; netfabric RTL library)
//
// For every input vector x (MW elements): acc[c] = sum_j x[j] * W[c][j], c = 0 .. MH-1, then
//   USE_ACT = 0: out[c] = acc[c]                         (ACCBITS bits, two's complement)
//   USE_ACT = 1: out[c] = #{k : acc[c] >= T[c][k]} + ACT_BIAS   (OBITS bits, thresh_search.v)
// Products and sums are exact as long as ACCBITS holds the accumulator range (sums wrap
// modulo 2^ACCBITS otherwise).
// XNOR = 1 (FINN's binaryXnorMode, BNN layers; needs WBITS = IBITS = 1, unsigned): the bits
// stand for -1/+1 and acc[c] = #{j : x[j] == W[c][j]} (XNOR-popcount, 0 .. MW): one XNOR gate
// per lane feeding the same adder tree, no multipliers (no DSP blocks); same pipeline, latency
// and throughput as the multiplying mode.
//
// Stream protocol (AXI-Stream valid/ready, element i of a beat at tdata[i*BITS +: BITS]):
//   s_axis: SIMD input elements of IBITS per beat, SF = MW/SIMD beats per vector.
//   m_axis: PE output elements per beat, NF = MH/PE beats per vector; beat nf carries
//           channels nf*PE .. nf*PE+PE-1. Element width OBITS (USE_ACT) or ACCBITS.
//   tdata ports are rounded up to whole bytes (pad bits: ignored in, zero out).
//   Each vector is taken in once (fold nf = 0) and replayed from an internal buffer for
//   folds 1 .. NF-1, as in FINN.
// Parameters:
//   MW, MH, PE, SIMD  matrix size and folding (MW % SIMD == 0, MH % PE == 0)
//   WBITS, WSIGNED    weight width / signedness;  IBITS, ISIGNED: input width / signedness
//   ACCBITS           accumulator width (signed)
//   NVEC              vectors per frame (e.g. OH*OW); informational, the unit is frame-agnostic
//   USE_ACT, OBITS, OSIGNED, ACT_BIAS   fused thresholding (OSIGNED is informational: the
//                     count + bias is emitted as OBITS-bit two's complement either way)
//   XNOR              0 = multiply, 1 = XNOR-popcount of 1-bit operands (see above)
//   MUL_STYLE         0 = auto (LUT shift-and-add if WBITS or IBITS <= 4, else "*"),
//                     1 = LUT shift-and-add, 2 = "*" (DSP blocks where the flow maps them)
//   WEIGHT_FILE       $readmemh file, NF*SF words of PE*SIMD*WBITS bits: word nf*SF + sf holds
//                     W[nf*PE+p][sf*SIMD+s] at bits [(p*SIMD+s)*WBITS +: WBITS]
//   WBANK_AW          weight ROMs deeper than 2^WBANK_AW words are split into banks of that
//                     many words, each with its own registered output. 0 (default): by the
//                     word's width, the deepest aspect of an 18-kbit block RAM that holds it
//                     without a cascade (16384 x 1, 8192 x 2, 4096 x 4, else 2048 x 9 side
//                     by side), so a bank is block RAMs side by side with no output mux.
//                     WEIGHT_FILE is then a prefix: bank b (2 to 1000 banks) reads
//                     "<WEIGHT_FILE>_b<bbb>.hex" (b in three decimal digits), the words
//                     b*2^WBANK_AW on
//   THRESH_FILE       prefix of the OBITS threshold stage files (see thresh_search.v), the
//                     thresholds being ACCBITS-bit signed
//   RQ, NT, ROM_STYLE, RQ_LEVELS, RQ_MBITS, RQ_BBITS, RQ_SHIFT, RQ_FILE   the activation's
//                     requantizer and leftover tables (requant_act.v; RQ = 0: tables only)
// Throughput: one (nf, sf) step per cycle, i.e. NVEC*SF*NF cycles per frame in steady state
//   with no stalls while the sink keeps up (the output FIFO covers the pipeline latency).
// Latency: LATENCY = 9 + clog2(SIMD) (+ the activation's, USE_ACT: 4*OBITS + 2, or 4 when
//   RQ = 1 and NT = 0, see requant_act.v) cycles from the handshake
//   of the last input beat a result depends on to that result's first appearance on m_axis.
//   Pipeline: input buffer read, its data register / weight ROM read (address delayed one
//   cycle), a second register after each (the ROM's beside the ROM, the input's after the
//   buffer/stream select), operand registers (per PE, then per multiplier), multipliers,
//   product registers, registered adder tree (one level per cycle), accumulator, [threshold
//   search], output FIFO. No block RAM or DSP output drives more than a register (their
//   delays, ~6 ns / ~4 ns on ECP5, are most of a 10 ns cycle), and that register has no
//   other job than to be close to the block.
// Requires: mul_reg.v, requant_act.v, requant.v, thresh_search.v, banked_rom.v,
//   axis_out_credit.v, fifo.v.
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

module mvau #(
    parameter MW = 8,
    parameter MH = 8,
    parameter PE = 2,
    parameter SIMD = 2,
    parameter WBITS = 4,
    parameter WSIGNED = 1,
    parameter IBITS = 4,
    parameter ISIGNED = 0,
    parameter ACCBITS = 16,
    /* verilator lint_off UNUSEDPARAM */  // NVEC, OSIGNED: informational
    parameter NVEC = 1,
    parameter USE_ACT = 0,
    parameter OBITS = 4,
    parameter OSIGNED = 0,
    /* verilator lint_on UNUSEDPARAM */
    parameter ACT_BIAS = 0,
    parameter MUL_STYLE = 0,
    parameter XNOR = 0,
    parameter WEIGHT_FILE = "",
    parameter WBANK_AW = 0,
    parameter THRESH_FILE = "",
    // activation by requantizer where proven (requant_act.v; RQ = 0: threshold tables)
    parameter RQ = 0,
    parameter NT = 0,
    parameter ROM_STYLE = 0,
    parameter RQ_LEVELS = 15,
    parameter RQ_MBITS = 16,
    parameter RQ_BBITS = 24,
    parameter RQ_SHIFT = 16,
    parameter RQ_FILE = ""
) (
    input  wire clk,
    input  wire rst_n,
    /* verilator lint_off UNUSEDSIGNAL */  // byte-padding bits
    input  wire [((SIMD * IBITS + 7) / 8) * 8 - 1:0] s_axis_tdata,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire s_axis_tvalid,
    output wire s_axis_tready,
    output wire [((PE * (USE_ACT ? OBITS : ACCBITS) + 7) / 8) * 8 - 1:0] m_axis_tdata,
    output wire m_axis_tvalid,
    input  wire m_axis_tready
);
    localparam SF = MW / SIMD;
    localparam NF = MH / PE;
    localparam OEB = USE_ACT ? OBITS : ACCBITS;
    localparam IW = SIMD * IBITS;
    localparam WW = PE * SIMD * WBITS;
    localparam OW = PE * OEB;
    localparam WDEPTH = NF * SF;
    localparam SFW = (SF > 1) ? $clog2(SF) : 1;
    localparam NFW = (NF > 1) ? $clog2(NF) : 1;
    localparam WAW = (WDEPTH > 1) ? $clog2(WDEPTH) : 1;
    // words per bank: WBANK_AW, or by the word's width (hw/flow/fit.py
    // weight_bank_address_bits: the deepest 18-kbit block-RAM aspect holding it uncascaded)
    localparam BAW = (WBANK_AW != 0) ? WBANK_AW
                     : (WW == 1) ? 14 : (WW == 2) ? 13 : (WW <= 4) ? 12 : 11;
    localparam WNBANK = (BAW >= 1 && BAW < WAW) ? (WDEPTH + (1 << BAW) - 1) >> BAW : 1;
    localparam LEVELS = $clog2(SIMD);
    localparam SIMDP = 1 << LEVELS;
    // exact signed product width (XNOR: a 0/1 agreement bit, 2 bits signed)
    localparam PW = (XNOR != 0) ? 2 : IBITS + WBITS + 2;
    // Multipliers: "*" (DSP blocks where available) or shift-and-add in LUTs. Auto picks
    // LUTs when one operand has <= 4 bits, where a DSP block would be mostly wasted.
    localparam LUTMUL = (MUL_STYLE == 1) || (MUL_STYLE == 0 && (WBITS <= 4 || IBITS <= 4));
    localparam NB = (WBITS <= IBITS) ? WBITS : IBITS;      // shift-and-add steps
    localparam B_SIGNED = (WBITS <= IBITS) ? (WSIGNED != 0) : (ISIGNED != 0);
    localparam D = 7 + LEVELS;               // issue -> adder-tree root, in cycles
    // Issue -> FIFO write: D + 1 (accumulator) [+ activation latency, requant_act.v].
    localparam ACT_LAT = (RQ != 0 && NT == 0) ? 6 : 4 * OBITS + 2;
    localparam LAT = D + 1 + (USE_ACT ? ACT_LAT : 0);
    // Output FIFO deep enough to cover the credit round trip (LAT, the FIFO's own latency
    // of up to 4 cycles, 1; see axis_out_credit.v) with one entry to spare, so that a sink
    // which is always ready never sees a stall. Automatic style: from 64 entries
    // a block RAM with a registered output (an asynchronous-read array would be turned into a
    // block RAM anyway, whose slow clock-to-out would then drive the next module's logic).
    localparam ODEPTH = 1 << $clog2(LAT + 6);

    // ------------------------------------------------------------------ parameter checks
    generate
        if (MW < 1) begin : g_err_mw
            `NF_PARAM_ERROR(("mvau: MW (%0d) must be >= 1", MW))
        end
        if (MH < 1) begin : g_err_mh
            `NF_PARAM_ERROR(("mvau: MH (%0d) must be >= 1", MH))
        end
        if (PE < 1) begin : g_err_pe
            `NF_PARAM_ERROR(("mvau: PE (%0d) must be >= 1", PE))
        end
        if (SIMD < 1) begin : g_err_simd
            `NF_PARAM_ERROR(("mvau: SIMD (%0d) must be >= 1", SIMD))
        end
        if (WBITS < 1) begin : g_err_wbits
            `NF_PARAM_ERROR(("mvau: WBITS (%0d) must be >= 1", WBITS))
        end
        if (IBITS < 1) begin : g_err_ibits
            `NF_PARAM_ERROR(("mvau: IBITS (%0d) must be >= 1", IBITS))
        end
        if (ACCBITS < 1) begin : g_err_accbits
            `NF_PARAM_ERROR(("mvau: ACCBITS (%0d) must be >= 1", ACCBITS))
        end
        if (MW % SIMD != 0) begin : g_err_mw_simd
            `NF_PARAM_ERROR(("mvau: MW (%0d) must be a multiple of SIMD (%0d)", MW, SIMD))
        end
        if (MH % PE != 0) begin : g_err_mh_pe
            `NF_PARAM_ERROR(("mvau: MH (%0d) must be a multiple of PE (%0d)", MH, PE))
        end
        if (MUL_STYLE < 0 || MUL_STYLE > 2) begin : g_err_mul_style
            `NF_PARAM_ERROR(("mvau: MUL_STYLE (%0d) must be 0 (auto), 1 (LUTs) or 2 (*)",
                             MUL_STYLE))
        end
        if (XNOR != 0 && (WBITS != 1 || IBITS != 1 || WSIGNED != 0 || ISIGNED != 0))
        begin : g_err_xnor
            `NF_PARAM_ERROR(("mvau: XNOR needs WBITS = IBITS = 1, unsigned (%0d, %0d, %0d, %0d)",
                             WBITS, IBITS, WSIGNED, ISIGNED))
        end
        if (WBANK_AW < 0) begin : g_err_wbank
            `NF_PARAM_ERROR(("mvau: WBANK_AW (%0d) must be >= 0 (0: by word width)", WBANK_AW))
        end
        if (XNOR < 0 || XNOR > 1) begin : g_err_xnor_val
            `NF_PARAM_ERROR(("mvau: XNOR (%0d) must be 0 or 1", XNOR))
        end
    endgenerate

    // Bits needed by adder-tree node k (heap numbering): a node at depth d sums
    // 2^(LEVELS-d) products of PW bits.
    function integer node_width;
        input integer k;
        integer i, d;
        begin
            d = 0;
            for (i = 1; i < 32; i = i + 1)
                if (((k + 1) >> i) != 0) d = i;
            node_width = PW + LEVELS - d;
            if (node_width > ACCBITS) node_width = ACCBITS;
        end
    endfunction

    localparam integer SF_LAST_I = SF - 1;
    localparam integer NF_LAST_I = NF - 1;
    localparam integer WA_LAST_I = WDEPTH - 1;
    localparam [SFW-1:0] SF_LAST = SF_LAST_I[SFW-1:0];
    localparam [NFW-1:0] NF_LAST = NF_LAST_I[NFW-1:0];
    localparam [WAW-1:0] WA_LAST = WA_LAST_I[WAW-1:0];

    // ------------------------------------------------------------------ issue control
    reg  [SFW-1:0] sf;
    reg  [NFW-1:0] nf;
    reg  [WAW-1:0] waddr;        // = nf*SF + sf
    // Flags kept as registers (computed from the next counter values), so s_axis_tready and
    // issue are one small LUT level from flip-flops: tready fans out into the producer.
    reg            last_sf;      // sf == SF-1
    reg            from_stream;  // nf == 0: fold 0 takes the input stream
    wire           cr_full;      // all output FIFO slots reserved (a register in u_out)

    // Only the step that completes an output needs a free FIFO slot reserved.
    wire can_go = !last_sf || !cr_full;
    assign s_axis_tready = from_stream && can_go;
    wire issue = can_go && (!from_stream || s_axis_tvalid);
    wire take = issue && last_sf;

    wire [SFW-1:0] sf_next = last_sf ? {SFW{1'b0}} : sf + 1'b1;
    wire [NFW-1:0] nf_next = (nf == NF_LAST) ? {NFW{1'b0}} : nf + 1'b1;

    always @(posedge clk) begin
        if (!rst_n) begin
            sf <= {SFW{1'b0}};
            nf <= {NFW{1'b0}};
            waddr <= {WAW{1'b0}};
            last_sf <= (SF == 1);
            from_stream <= 1'b1;
        end else begin
            if (issue) begin
                sf <= sf_next;
                last_sf <= (sf_next == SF_LAST);
                if (last_sf) begin
                    nf <= nf_next;
                    from_stream <= (nf_next == {NFW{1'b0}});
                end
                waddr <= (waddr == WA_LAST) ? {WAW{1'b0}} : waddr + 1'b1;
            end
        end
    end

    // Control flags travel alongside the data: valid, first and last step of a vector.
    reg [D-1:0] v_sr;
    reg [D-1:0] f_sr;
    reg [D-1:0] l_sr;
    always @(posedge clk) begin
        if (!rst_n) v_sr <= {D{1'b0}};
        else v_sr <= {v_sr[D-2:0], issue};
        f_sr <= {f_sr[D-2:0], sf == {SFW{1'b0}}};
        l_sr <= {l_sr[D-2:0], last_sf};
    end

    // ------------------------------------------------------------------ stages 1-2: memories
    // Block RAM outputs (~6 ns clock-to-out on ECP5 DP16KD) only ever feed a plain register:
    // the input buffer is read at stage 1 and its data registered at stage 2; the weight ROM
    // is read one cycle later (delayed address) so both operands reach stage 3 together.
    wire [WW-1:0] w_sel;                    // the weight word for stage 3 (w_m)
    generate
        if (WNBANK == 1) begin : g_wrom
            /* verilator lint_off UNDRIVEN */  // ROM: contents come from WEIGHT_FILE
            reg  [WW-1:0] wrom [0:WDEPTH-1];
            /* verilator lint_on UNDRIVEN */
            // Guarded so that elaborating with default parameters (e.g. a plain Yosys
            // read_verilog) does not try to open a file.
            if (WEIGHT_FILE != "") begin : g_winit
                initial $readmemh(WEIGHT_FILE, wrom);
            end
            reg  [WAW-1:0] waddr_d;
            reg  [WW-1:0]  w_q;
            always @(posedge clk) begin
                waddr_d <= waddr;
                w_q <= wrom[waddr_d];           // synchronous read -> block RAM
            end
            assign w_sel = w_q;
        end else begin : g_wbanks
            // A ROM deeper than one bank (2^BAW words): banked_rom.v, read one cycle
            // earlier (with waddr itself) than the one-bank ROM, its two cycles (a register
            // in each bank's block RAM, then the bank mux) in place of waddr_d and w_q: the
            // same latency as one bank.
            banked_rom #(.WIDTH(WW), .DEPTH(WDEPTH), .BANK_AW(BAW), .FILE(WEIGHT_FILE)) u_wrom (
                .clk(clk), .addr(waddr), .data(w_sel)
            );
        end
    endgenerate

    reg  [IW-1:0] xin_d;
    reg  [IW-1:0] xin_dd;
    reg           sel_in_d;
    reg           sel_in_dd;
    always @(posedge clk) begin
        xin_d <= s_axis_tdata[IW-1:0];
        xin_dd <= xin_d;
        sel_in_d <= from_stream;
        sel_in_dd <= sel_in_d;
    end

    wire [IW-1:0] x_sel;
    generate
        if (NF > 1) begin : g_ibuf
            // Input vector buffer: written during fold 0, replayed for folds 1..NF-1. Read
            // only outside fold 0, so a read never meets a write and synthesis adds no
            // collision bypass logic after the RAM output.
            reg [IW-1:0] ib_q;
            reg [IW-1:0] ib_r;
            if (SF * IW <= 8192) begin : g_lutram
                // up to 8 kbit: LUT RAM (a block RAM would be mostly empty, and they are
                // the scarcer resource next to the weight ROMs)
                // (iCE40 has no LUT RAM: forcing "distributed" fails there, the flow defines
                // NF_NO_LUTRAM and Yosys picks block RAM or flip-flops)
`ifdef NF_NO_LUTRAM
                reg [IW-1:0] ibuf [0:SF-1];
`else
                (* ram_style = "distributed" *) reg [IW-1:0] ibuf [0:SF-1];
`endif
                always @(posedge clk) begin
                    if (issue && from_stream) ibuf[sf] <= s_axis_tdata[IW-1:0];
                    if (!from_stream) ib_q <= ibuf[sf];
                end
            end else begin : g_bram
                reg [IW-1:0] ibuf [0:SF-1];
                always @(posedge clk) begin
                    if (issue && from_stream) ibuf[sf] <= s_axis_tdata[IW-1:0];
                    if (!from_stream) ib_q <= ibuf[sf];
                end
            end
            always @(posedge clk) ib_r <= ib_q;
            assign x_sel = sel_in_dd ? xin_dd : ib_r;
        end else begin : g_noibuf
            assign x_sel = xin_dd;
        end
    endgenerate

    // ------------------------------------------------------------------ stages 3-4: operands
    // The ROM's ~5.6 ns clock-to-out (DP16KD; Yosys does not use its output register) leaves
    // no time for the long route to the DSP blocks: w_m takes it right beside the ROM, w_r
    // (placed at the multipliers) takes the route. keep: no merging or retiming of the pair.
    // The input operand gets the same extra cycle in x_m (after the stream/buffer select), so
    // both operands still reach the multipliers together.
    // (input operands are registered per PE below: one copy next to each PE's multipliers
    // instead of one register fanning out across the chip)
    reg [WW-1:0] w_m;
    reg [WW-1:0] w_r;
    (* keep *) always @(posedge clk) w_m <= w_sel;
    (* keep *) always @(posedge clk) w_r <= w_m;
    reg [IW-1:0] x_m;
    always @(posedge clk) x_m <= x_sel;

    // ------------------------------------------------------------------ stages 5..: MAC
    wire [PE*ACCBITS-1:0] res_all;
    reg                   res_v;
    always @(posedge clk) begin
        if (!rst_n) res_v <= 1'b0;
        else res_v <= v_sr[D-1] && l_sr[D-1];
    end

    genvar p, s;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            reg [IW-1:0] x_r;
            // keep (on the process, i.e. on the flip-flops): stops Yosys from merging the
            // per-PE copies back into one
            (* keep *) always @(posedge clk) x_r <= x_m;
            wire [SIMDP*ACCBITS-1:0] leaves;
            for (s = 0; s < SIMDP; s = s + 1) begin : g_mul
                if (s < SIMD) begin : g_real
                    // Operand and product registers private to this multiplier: the
                    // placer can put them right at a DSP block (fixed sites, often far from
                    // the ROM and the adder tree), so the long wires run register to
                    // register and the ~4 ns DSP delay sits between two short hops.
                    wire [PW-1:0] prod_r;   // x_r * w_r two cycles later
                    if (XNOR == 0 && !LUTMUL) begin : g_dsp
                        // mul_reg: on ECP5 (NF_ECP5_DSP) the operand and product registers
                        // are the MULT18X18D's own, elsewhere the same registers around "*"
                        mul_reg #(
                            .AW(IBITS), .ASIGNED(ISIGNED != 0), .BW(WBITS),
                            .BSIGNED(WSIGNED != 0), .PW(PW)
                        ) u_mul (
                            .clk(clk), .a(x_r[s*IBITS +: IBITS]),
                            .b(w_r[(p*SIMD + s)*WBITS +: WBITS]), .p(prod_r)
                        );
                    end else begin : g_fab
                        reg [IBITS-1:0] xe;
                        reg [WBITS-1:0] we;
                        always @(posedge clk) begin
                            xe <= x_r[s*IBITS +: IBITS];
                            we <= w_r[(p*SIMD + s)*WBITS +: WBITS];
                        end
                        // One extra bit turns both operands into signed numbers, whatever their
                        // declared signedness, so a single signed multiplier covers all cases.
                        wire signed [IBITS:0] xs = {(ISIGNED != 0) ? xe[IBITS-1] : 1'b0, xe};
                        wire signed [WBITS:0] ws = {(WSIGNED != 0) ? we[WBITS-1] : 1'b0, we};
                        wire signed [PW-1:0] prod;
                        if (XNOR != 0) begin : g_xnor
                            // bits agree <=> bipolar product +1: popcount of XNOR, no multiplier
                            assign prod = {{(PW-1){1'b0}}, ~(xe[0] ^ we[0])};
                        end else if (LUTMUL) begin : g_lut
                            // Shift-and-add over the bits of the narrower operand: small
                            // products in LUTs/carry chains instead of scarce DSP blocks.
                            wire [PW-1:0] a;      // wider operand, sign-extended to PW
                            wire [NB-1:0] b;      // narrower operand (multiplier bits)
                            if (WBITS <= IBITS) begin : g_wb
                                assign a = {{(PW-IBITS-1){xs[IBITS]}}, xs};
                                assign b = we;
                            end else begin : g_ib
                                assign a = {{(PW-WBITS-1){ws[WBITS]}}, ws};
                                assign b = xe;
                            end
                            wire [NB*PW-1:0] chain;   // running partial sums
                            genvar bi;
                            for (bi = 0; bi < NB; bi = bi + 1) begin : g_pp
                                wire [PW-1:0] pp = b[bi] ? (a << bi) : {PW{1'b0}};
                                wire [PW-1:0] psum;
                                // The MSB of a signed multiplier weighs -2^(NB-1).
                                if (bi == 0 && NB == 1 && B_SIGNED) begin : g_neg0
                                    assign psum = {PW{1'b0}} - pp;
                                end else if (bi == 0) begin : g_first
                                    assign psum = pp;
                                end else if (bi == NB - 1 && B_SIGNED) begin : g_neg
                                    assign psum = chain[(bi-1)*PW +: PW] - pp;
                                end else begin : g_add
                                    assign psum = chain[(bi-1)*PW +: PW] + pp;
                                end
                                // Partial sum of bits 0..bi fits PW-NB+bi bits (signed): keep
                                // those and sign-extend, so synthesis builds narrower adders.
                                localparam CWB = (PW - NB + bi < PW) ? PW - NB + bi : PW;
                                if (CWB < PW) begin : g_trim
                                    assign chain[bi*PW +: PW] = {{(PW-CWB){psum[CWB-1]}}, psum[CWB-1:0]};
                                end else begin : g_keep
                                    assign chain[bi*PW +: PW] = psum;
                                end
                            end
                            assign prod = chain[(NB-1)*PW +: PW];
                        end
                        reg [PW-1:0] prod_q;
                        always @(posedge clk) prod_q <= prod;
                        assign prod_r = prod_q;
                    end
                    if (ACCBITS > PW) begin : g_ext
                        assign leaves[s*ACCBITS +: ACCBITS] = {{(ACCBITS-PW){prod_r[PW-1]}}, prod_r};
                    end else begin : g_trunc
                        assign leaves[s*ACCBITS +: ACCBITS] = prod_r[ACCBITS-1:0];
                    end
                end else begin : g_pad
                    assign leaves[s*ACCBITS +: ACCBITS] = {ACCBITS{1'b0}};
                end
            end

            // Adder tree in heap layout: node k = node 2k+1 + node 2k+2, leaves at
            // SIMDP-1 .. 2*SIMDP-2, root at 0; every node is a register, so each tree level
            // is one pipeline stage. A node only computes the bits its subtree can need
            // (PW + levels below it) and sign-extends; synthesis trims the adders and merges
            // the replicated sign flip-flops. Wrapping at ACCBITS stays exact two's
            // complement when ACCBITS < that width.
            reg [(2*SIMDP-1)*ACCBITS-1:0] tree;
            always @(posedge clk) tree[(SIMDP-1)*ACCBITS +: SIMDP*ACCBITS] <= leaves;
            genvar k;
            for (k = 0; k < SIMDP - 1; k = k + 1) begin : g_node
                localparam NW = node_width(k);
                wire [ACCBITS-1:0] sum = tree[(2*k+1)*ACCBITS +: ACCBITS]
                                         + tree[(2*k+2)*ACCBITS +: ACCBITS];
                if (NW < ACCBITS) begin : g_narrow
                    always @(posedge clk)
                        tree[k*ACCBITS +: ACCBITS] <= {{(ACCBITS-NW){sum[NW-1]}}, sum[NW-1:0]};
                end else begin : g_full
                    always @(posedge clk) tree[k*ACCBITS +: ACCBITS] <= sum;
                end
            end

            reg  [ACCBITS-1:0] acc;
            reg  [ACCBITS-1:0] res;
            wire [ACCBITS-1:0] sum = (f_sr[D-1] ? {ACCBITS{1'b0}} : acc)
                                     + tree[0 +: ACCBITS];
            always @(posedge clk) begin
                if (v_sr[D-1]) begin
                    acc <= sum;
                    if (l_sr[D-1]) res <= sum;
                end
            end
            assign res_all[p*ACCBITS +: ACCBITS] = res;
        end
    endgenerate

    // ------------------------------------------------------------------ activation, output
    wire          out_v;
    wire [OW-1:0] out_d;
    generate
        if (USE_ACT != 0) begin : g_act
            requant_act #(
                .NF(NF), .PE(PE), .DBITS(ACCBITS), .OBITS(OBITS), .ACT_BIAS(ACT_BIAS),
                .THRESH_FILE(THRESH_FILE), .ROM_STYLE(ROM_STYLE), .RQ(RQ), .NT(NT),
                .LEVELS(RQ_LEVELS), .MBITS(RQ_MBITS), .BBITS(RQ_BBITS), .SHIFT(RQ_SHIFT),
                .RQ_FILE(RQ_FILE)
            ) u_act (
                .clk(clk), .rst_n(rst_n),
                .in_valid(res_v), .in_data(res_all),
                .out_valid(out_v), .out_data(out_d)
            );
        end else begin : g_noact
            assign out_v = res_v;
            assign out_d = res_all;
        end
    endgenerate

    // Credit counter + output FIFO: a result (the step completing an output) is only issued
    // with a FIFO slot reserved for it.
    axis_out_credit #(.WIDTH(OW), .DEPTH(ODEPTH), .RAM_STYLE(0)) u_out (
        .clk(clk), .rst_n(rst_n),
        .reserve(take), .full(cr_full),
        .in_valid(out_v), .in_data(out_d),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid),
        .m_axis_tready(m_axis_tready)
    );
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
