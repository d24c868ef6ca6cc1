// label_select.v -- arg-max over a vector of scores (FINN LabelSelect with K = 1; netfabric)
//
// For every input vector of NLABELS values, outputs the index of the maximum; ties resolve
// to the lowest index (ONNX TopK / numpy argmax behaviour).
//
// Stream protocol (AXI-Stream valid/ready, element i of a beat at tdata[i*BITS +: BITS]):
//   s_axis: PE values of BITS per beat, NF = NLABELS/PE beats per vector, beat nf carrying
//           labels nf*PE .. nf*PE+PE-1; vectors back to back (NVEC per frame).
//   m_axis: one beat per vector holding the index as an unsigned IDXBITS = clog2(NLABELS)
//           (at least 1) bit number; tdata rounded up to whole bytes (pad bits zero).
// Parameters: NLABELS, PE (NLABELS % PE == 0), BITS, SIGNED (value signedness),
//   NVEC (vectors per frame; informational, the unit is frame-agnostic).
// Implementation: per beat a registered comparator tree over the PE values (left wins ties),
//   then a running maximum across the NF beats (strictly greater replaces), whose decision is
//   looked ahead two elements, from registered compares (see below).
// Throughput: one input beat per cycle. Latency: 5 + clog2(PE) cycles from the handshake of
//   a vector's last beat to its index on m_axis.
// Requires: axis_out_credit.v, fifo.v.
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

module label_select #(
    parameter NLABELS = 10,
    parameter PE = 2,
    parameter BITS = 8,
    parameter SIGNED = 1,
    /* verilator lint_off UNUSEDPARAM */  // informational
    parameter NVEC = 1
    /* verilator lint_on UNUSEDPARAM */
) (
    input  wire clk,
    input  wire rst_n,
    /* verilator lint_off UNUSEDSIGNAL */  // byte-padding bits
    input  wire [((PE * BITS + 7) / 8) * 8 - 1:0] s_axis_tdata,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire s_axis_tvalid,
    output wire s_axis_tready,
    output wire [((((NLABELS > 1) ? $clog2(NLABELS) : 1) + 7) / 8) * 8 - 1:0] m_axis_tdata,
    output wire m_axis_tvalid,
    input  wire m_axis_tready
);
    localparam NF = NLABELS / PE;
    localparam IDXW = (NLABELS > 1) ? $clog2(NLABELS) : 1;
    localparam VB = BITS + 1;                   // values compared as BITS+1-bit signed
    localparam LEVELS = $clog2(PE);
    localparam PEP = 1 << LEVELS;
    localparam LW = (LEVELS > 0) ? LEVELS : 1;  // lane index width
    localparam NFW = (NF > 1) ? $clog2(NF) : 1;
    localparam D = 1 + LEVELS;                  // push -> tree root
    localparam ODEPTH = 1 << $clog2(D + 8);     // + the q and candidate stages

    localparam integer NF_LAST_I = NF - 1;
    localparam integer PE_I = PE;
    localparam [NFW-1:0] NF_LAST = NF_LAST_I[NFW-1:0];
    localparam [IDXW-1:0] PE_STEP = PE_I[IDXW-1:0];
    // Padding leaves get the most negative VB-bit value: below every real value, and on
    // the right of every real leaf, so they never win.
    localparam [VB-1:0] VMIN = {1'b1, {BITS{1'b0}}};

    // ------------------------------------------------------------------ parameter checks
    generate
        if (NLABELS < 1) begin : g_err_nlabels
            `NF_PARAM_ERROR(("label_select: NLABELS (%0d) must be >= 1", NLABELS))
        end
        if (PE < 1) begin : g_err_pe
            `NF_PARAM_ERROR(("label_select: PE (%0d) must be >= 1", PE))
        end
        if (BITS < 1) begin : g_err_bits
            `NF_PARAM_ERROR(("label_select: BITS (%0d) must be >= 1", BITS))
        end
        if (NLABELS % PE != 0) begin : g_err_n_pe
            `NF_PARAM_ERROR(("label_select: NLABELS (%0d) must be a multiple of PE (%0d)",
                             NLABELS, PE))
        end
    endgenerate

    // ------------------------------------------------------------------ input control
    reg  [NFW-1:0]  nf;
    reg  [IDXW-1:0] base;        // nf * PE
    wire            cr_full;     // all output FIFO slots reserved (u_out)
    wire last = (nf == NF_LAST);
    // Only the beat completing a vector needs a reserved output slot.
    assign s_axis_tready = !last || !cr_full;
    wire push = s_axis_tvalid && s_axis_tready;
    wire take = push && last;

    always @(posedge clk) begin
        if (!rst_n) begin
            nf <= {NFW{1'b0}};
            base <= {IDXW{1'b0}};
        end else begin
            if (push) begin
                nf <= last ? {NFW{1'b0}} : nf + 1'b1;
                base <= last ? {IDXW{1'b0}} : base + PE_STEP;
            end
        end
    end

    // Control/index side band alongside the tree: valid, first/last beat, base index.
    reg [D-1:0]      v_sr, f_sr, l_sr;
    reg [D*IDXW-1:0] b_sr;
    wire             first = (nf == {NFW{1'b0}});
    generate
        if (D > 1) begin : g_sr
            always @(posedge clk) begin
                if (!rst_n) v_sr <= {D{1'b0}};
                else v_sr <= {v_sr[D-2:0], push};
                f_sr <= {f_sr[D-2:0], first};
                l_sr <= {l_sr[D-2:0], last};
                b_sr <= {b_sr[(D-1)*IDXW-1:0], base};
            end
        end else begin : g_sr1
            always @(posedge clk) begin
                if (!rst_n) v_sr <= 1'b0;
                else v_sr <= push;
                f_sr <= first;
                l_sr <= last;
                b_sr <= base;
            end
        end
    endgenerate

    // ------------------------------------------------------------------ comparator tree
    wire [PEP*VB-1:0] leaves;
    genvar s;
    generate
        for (s = 0; s < PEP; s = s + 1) begin : g_leaf
            if (s < PE) begin : g_real
                wire [BITS-1:0] e = s_axis_tdata[s*BITS +: BITS];
                assign leaves[s*VB +: VB] = {(SIGNED != 0) ? e[BITS-1] : 1'b0, e};
            end else begin : g_pad
                assign leaves[s*VB +: VB] = VMIN;
            end
        end
    endgenerate

    // Heap layout (node k has children 2k+1, 2k+2; leaves at PEP-1 ..), one level per cycle.
    reg [(2*PEP-1)*VB-1:0] tv;
    reg [(2*PEP-1)*LW-1:0] ti;
    integer k;
    always @(posedge clk) begin
        for (k = 0; k < PEP - 1; k = k + 1) begin
            // Right child replaces the left only if strictly greater: lowest index wins ties.
            if ($signed(tv[(2*k+2)*VB +: VB]) > $signed(tv[(2*k+1)*VB +: VB])) begin
                tv[k*VB +: VB] <= tv[(2*k+2)*VB +: VB];
                ti[k*LW +: LW] <= ti[(2*k+2)*LW +: LW];
            end else begin
                tv[k*VB +: VB] <= tv[(2*k+1)*VB +: VB];
                ti[k*LW +: LW] <= ti[(2*k+1)*LW +: LW];
            end
        end
        tv[(PEP-1)*VB +: PEP*VB] <= leaves;
        for (k = 0; k < PEP; k = k + 1)
            ti[(PEP-1+k)*LW +: LW] <= k[LW-1:0];
    end

    // ------------------------------------------------------------------ running maximum
    // The tree root (p) passes through q into a candidate register (c) that is merged into
    // the best (b); win (a register) says that c replaces b. For element m to take, it must
    // be strictly greater than the best of its vector so far, i.e. than m-1 if m-1 took, else
    // than m-2 if m-2 took, else than b through m-3. Timeline, m in p at cycle t:
    //   t    p = m, q = m-1, c = m-2; b holds the best through m-3 (c was m-3 at t-1).
    //        Three compares, each straight into a flop that enters q beside m:
    //          gt1 = m > q (m-1),  gt2 = m > c (m-2),  gb = m > b.
    //   t+1  q = m with its flags, c = m-1 with win_{m-1}, c2_takes = takes_{m-2}:
    //          win_m <= first_m || (takes_{m-1} ? gt1 : takes_{m-2} ? gt2 : gb)
    //        with takes = valid && win; b merges m-1 if it takes.
    //   t+2  c = m with win_m; b holds the best through m-1; on a vector's last beat the
    //        result is win ? c : b.
    // A vector's first beat always takes (first), so if m-1 or m-2 is the first beat of m's
    // vector, the chosen flag is against it; if neither took, the first beat is at m-3 or
    // earlier and b is from m's vector. Bubbles (idle source, any data) never take: valid
    // masks them. The single lookahead before it (win <= first || (c_takes ? p > c : p > b),
    // both compares in the cycle of the mux) measured 8.35 ns on ulx3s-85f (nextpnr-ecp5),
    // root -> two carry chains -> LUT -> mux -> win, the INT8 MLP's critical path on 2 of 3
    // seeds; now every compare ends in a flop and win is a couple of LUT levels from flops,
    // for one more cycle of latency (the MLP's geometry, PE = 1 and BITS = 20, alone out of
    // context: 122.6-129.3 MHz before, 143.7-154.3 after, seeds 1-3). The form before that
    // compared, decided and loaded b in one cycle: 118.3 MHz.
    wire [VB-1:0]   p_v = tv[0 +: VB];
    wire [IDXW-1:0] p_i;
    generate
        if (LEVELS > 0 && IDXW > LW) begin : g_idx
            assign p_i = b_sr[(D-1)*IDXW +: IDXW] + {{(IDXW-LW){1'b0}}, ti[0 +: LW]};
        end else if (LEVELS > 0) begin : g_idx_eq
            assign p_i = b_sr[(D-1)*IDXW +: IDXW] + ti[0 +: LW];
        end else begin : g_idx1
            assign p_i = b_sr[(D-1)*IDXW +: IDXW];
        end
    endgenerate
    reg  [VB-1:0]   q_v;
    reg  [IDXW-1:0] q_i;
    reg             q_valid, q_first, q_last;
    reg             q_gt1, q_gt2, q_gb;  // q > the element before it, before that, > b
    reg  [VB-1:0]   c_v;
    reg  [IDXW-1:0] c_i;
    reg             c_valid, c_last;
    reg             win;         // c replaces the best (c is a vector's first beat, or greater)
    reg             c2_takes;    // the element before c took
    reg  [VB-1:0]   best_v;
    reg  [IDXW-1:0] best_i;
    reg  [IDXW-1:0] res;
    reg             res_v;
    wire            c_takes = c_valid && win;
    always @(posedge clk) begin
        q_v <= p_v;
        q_i <= p_i;
        q_first <= f_sr[D-1];
        q_last <= l_sr[D-1];
        q_gt1 <= $signed(p_v) > $signed(q_v);
        q_gt2 <= $signed(p_v) > $signed(c_v);
        q_gb <= $signed(p_v) > $signed(best_v);
        c_v <= q_v;
        c_i <= q_i;
        c_last <= q_last;
        win <= q_first || (c_takes ? q_gt1 : (c2_takes ? q_gt2 : q_gb));
        if (c_takes) begin
            best_v <= c_v;
            best_i <= c_i;
        end
        if (c_valid && c_last) res <= win ? c_i : best_i;
    end
    always @(posedge clk) begin
        if (!rst_n) begin
            q_valid <= 1'b0;
            c_valid <= 1'b0;
            c2_takes <= 1'b0;
            res_v <= 1'b0;
        end else begin
            q_valid <= v_sr[D-1];
            c_valid <= q_valid;
            c2_takes <= c_takes;
            res_v <= c_valid && c_last;
        end
    end

    // ------------------------------------------------------------------ output
    axis_out_credit #(.WIDTH(IDXW), .DEPTH(ODEPTH), .RAM_STYLE(1)) u_out (
        .clk(clk), .rst_n(rst_n),
        .reserve(take), .full(cr_full),
        .in_valid(res_v), .in_data(res),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid),
        .m_axis_tready(m_axis_tready)
    );
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
