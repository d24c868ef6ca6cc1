// maxpool.v -- non-overlapping NHWC max pooling (FINN StreamingMaxPool; netfabric RTL library)
//
// out[oy][ox][c] = max over ky, kx < K of in[oy*K + ky][ox*K + kx][c]   (kernel = stride = K)
//
// Stream protocol (AXI-Stream valid/ready, element i of a beat at tdata[i*BITS +: BITS]):
//   s_axis: PE channels of BITS per beat, CF = CHANNELS/PE beats per pixel, pixels row-major,
//           IFM_H*IFM_W*CF beats per frame, frames back to back.
//   m_axis: the same layout for the OH x OW output (OH = IFM_H/K, OW = IFM_W/K).
//   tdata ports are rounded up to whole bytes (pad bits: ignored in, zero out).
// Parameters: CHANNELS, PE (CHANNELS % PE == 0), BITS, SIGNED (element signedness),
//   IFM_H, IFM_W (multiples of K), K.
// Implementation: a running-max memory of OW*CF words (one output row), updated with a
//   read-modify-write per input beat: synchronous read, its data registered (a block RAM's
//   clock-to-out then only meets a flip-flop), max, write back, with forwarding of the words
//   written in the two previous cycles. An output beat is emitted with the last beat of each
//   pooling window.
// Throughput: one input beat per cycle (IFM_H*IFM_W*CF cycles per frame).
// Latency: 4 cycles from the handshake of a window's last input beat to the output beat.
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

module maxpool #(
    parameter CHANNELS = 4,
    parameter PE = 2,
    parameter BITS = 8,
    parameter SIGNED = 0,
    parameter IFM_H = 8,
    parameter IFM_W = 8,
    parameter K = 2
) (
    input  wire clk,
    input  wire rst_n,
    /* verilator lint_off UNUSEDSIGNAL */  // byte-padding bits
    input  wire [((PE * BITS + 7) / 8) * 8 - 1:0] s_axis_tdata,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire s_axis_tvalid,
    output wire s_axis_tready,
    output wire [((PE * BITS + 7) / 8) * 8 - 1:0] m_axis_tdata,
    output wire m_axis_tvalid,
    input  wire m_axis_tready
);
    localparam CF = CHANNELS / PE;
    localparam OH = IFM_H / K;
    localparam OW = IFM_W / K;
    localparam DW = PE * BITS;
    localparam MD = OW * CF;                       // running-max memory depth
    localparam MAW = (MD > 1) ? $clog2(MD) : 1;
    localparam CFW = (CF > 1) ? $clog2(CF) : 1;
    localparam KW = (K > 1) ? $clog2(K) : 1;
    localparam OXW = (OW > 1) ? $clog2(OW) : 1;
    localparam OYW = (OH > 1) ? $clog2(OH) : 1;
    localparam ODEPTH = 8;                         // >= latency + credit round trip

    localparam integer CF_LAST_I = CF - 1;
    localparam integer K_LAST_I = K - 1;
    localparam integer OX_LAST_I = OW - 1;
    localparam integer OY_LAST_I = OH - 1;
    localparam integer ONE_I = 1;
    localparam [CFW-1:0] CF_LAST = CF_LAST_I[CFW-1:0];
    localparam [KW-1:0] K_LAST = K_LAST_I[KW-1:0];
    localparam [OXW-1:0] OX_LAST = OX_LAST_I[OXW-1:0];
    localparam [OYW-1:0] OY_LAST = OY_LAST_I[OYW-1:0];
    localparam [MAW-1:0] MA_ONE = ONE_I[MAW-1:0];

    // ------------------------------------------------------------------ parameter checks
    generate
        if (CHANNELS < 1) begin : g_err_channels
            `NF_PARAM_ERROR(("maxpool: CHANNELS (%0d) must be >= 1", CHANNELS))
        end
        if (PE < 1) begin : g_err_pe
            `NF_PARAM_ERROR(("maxpool: PE (%0d) must be >= 1", PE))
        end
        if (BITS < 1) begin : g_err_bits
            `NF_PARAM_ERROR(("maxpool: BITS (%0d) must be >= 1", BITS))
        end
        if (K < 1) begin : g_err_k
            `NF_PARAM_ERROR(("maxpool: K (%0d) must be >= 1", K))
        end
        if (IFM_H < 1) begin : g_err_ifm_h
            `NF_PARAM_ERROR(("maxpool: IFM_H (%0d) must be >= 1", IFM_H))
        end
        if (IFM_W < 1) begin : g_err_ifm_w
            `NF_PARAM_ERROR(("maxpool: IFM_W (%0d) must be >= 1", IFM_W))
        end
        if (CHANNELS % PE != 0) begin : g_err_ch_pe
            `NF_PARAM_ERROR(("maxpool: CHANNELS (%0d) must be a multiple of PE (%0d)",
                             CHANNELS, PE))
        end
        if (IFM_H % K != 0) begin : g_err_h_k
            `NF_PARAM_ERROR(("maxpool: IFM_H (%0d) must be a multiple of K (%0d)", IFM_H, K))
        end
        if (IFM_W % K != 0) begin : g_err_w_k
            `NF_PARAM_ERROR(("maxpool: IFM_W (%0d) must be a multiple of K (%0d)", IFM_W, K))
        end
    endgenerate

    // ------------------------------------------------------------------ input position
    reg  [CFW-1:0] cf;
    reg  [KW-1:0]  kx, ky;
    reg  [OXW-1:0] ox;
    reg  [OYW-1:0] oy;
    reg  [MAW-1:0] addr;       // ox*CF + cf
    reg  [MAW-1:0] obase;      // ox*CF
    wire           cr_full;    // all output FIFO slots reserved (u_out)

    wire cf_end = (cf == CF_LAST);
    wire kx_end = (kx == K_LAST);
    wire ky_end = (ky == K_LAST);
    wire ox_end = (ox == OX_LAST);
    wire oy_end = (oy == OY_LAST);
    wire first = (kx == {KW{1'b0}}) && (ky == {KW{1'b0}});
    wire last = kx_end && ky_end;

    // Only the beat completing a window needs a reserved output slot.
    assign s_axis_tready = !last || !cr_full;
    wire push = s_axis_tvalid && s_axis_tready;
    wire take = push && last;

    always @(posedge clk) begin
        if (!rst_n) begin
            cf <= {CFW{1'b0}};
            kx <= {KW{1'b0}};
            ky <= {KW{1'b0}};
            ox <= {OXW{1'b0}};
            oy <= {OYW{1'b0}};
            addr <= {MAW{1'b0}};
            obase <= {MAW{1'b0}};
        end else begin
            if (push) begin
                if (!cf_end) begin
                    cf <= cf + 1'b1;
                    addr <= addr + MA_ONE;
                end else begin
                    cf <= {CFW{1'b0}};
                    if (!kx_end) begin
                        kx <= kx + 1'b1;
                        addr <= obase;               // same output pixel, next column
                    end else begin
                        kx <= {KW{1'b0}};
                        if (!ox_end) begin
                            ox <= ox + 1'b1;
                            addr <= addr + MA_ONE;
                            obase <= addr + MA_ONE;
                        end else begin
                            ox <= {OXW{1'b0}};
                            addr <= {MAW{1'b0}};
                            obase <= {MAW{1'b0}};
                            if (!ky_end) begin
                                ky <= ky + 1'b1;
                            end else begin
                                ky <= {KW{1'b0}};
                                oy <= oy_end ? {OYW{1'b0}} : oy + 1'b1;
                            end
                        end
                    end
                end
            end
        end
    end

    // ------------------------------------------------------------------ stage A: read
    reg  [DW-1:0] mem [0:MD-1];
    reg  [DW-1:0] q;
    reg  [DW-1:0] in_d;
    reg  [MAW-1:0] a_d;
    reg           v_d, first_d, last_d;
    always @(posedge clk) begin
        q <= mem[addr];
        in_d <= s_axis_tdata[DW-1:0];
        a_d <= addr;
        first_d <= first;
        last_d <= last;
    end

    // ------------------------------------------------------------------ stage A2: registers
    // The read data and the beat, registered; which of the two words written since the read
    // (stage B of the two beats before) replaces the read data is decided here, from
    // registered addresses, so stage B only selects.
    reg  [DW-1:0] q_r, in_r;
    reg  [MAW-1:0] a_r;
    reg           v_r, first_r, last_r;
    reg  [DW-1:0] wb_d;        // word written in the previous cycle
    reg  [MAW-1:0] wb_a;
    reg           wb_v;
    reg  [DW-1:0] wb2_d;       // and the cycle before
    reg           use_wb, use_wb2;
    always @(posedge clk) begin
        q_r <= q;
        in_r <= in_d;
        a_r <= a_d;
        first_r <= first_d;
        last_r <= last_d;
        // stage B writes beat a_r now (wb next cycle) and wrote the previous one (wb now)
        use_wb <= v_r && a_r == a_d;
        use_wb2 <= wb_v && wb_a == a_d;
    end

    // ------------------------------------------------------------------ stage B: max, write
    reg  [DW-1:0] o_d;
    reg           o_v;
    wire [DW-1:0] prev = use_wb ? wb_d : use_wb2 ? wb2_d : q_r;
    wire [DW-1:0] m;
    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_max
            wire [BITS-1:0] a = prev[p*BITS +: BITS];
            wire [BITS-1:0] b = in_r[p*BITS +: BITS];
            // Compare as BITS+1-bit signed numbers: covers both signednesses.
            wire signed [BITS:0] as = {(SIGNED != 0) ? a[BITS-1] : 1'b0, a};
            wire signed [BITS:0] bs = {(SIGNED != 0) ? b[BITS-1] : 1'b0, b};
            assign m[p*BITS +: BITS] = (first_r || bs > as) ? b : a;
        end
    endgenerate

    always @(posedge clk) begin
        if (v_r) mem[a_r] <= m;
        wb_d <= m;
        wb_a <= a_r;
        wb2_d <= wb_d;
        o_d <= m;
    end

    always @(posedge clk) begin
        if (!rst_n) begin
            v_d <= 1'b0;
            v_r <= 1'b0;
            wb_v <= 1'b0;
            o_v <= 1'b0;
        end else begin
            v_d <= push;
            v_r <= v_d;
            wb_v <= v_r;
            o_v <= v_r && last_r;
        end
    end

    // ------------------------------------------------------------------ output
    axis_out_credit #(.WIDTH(DW), .DEPTH(ODEPTH), .RAM_STYLE(1)) u_out (
        .clk(clk), .rst_n(rst_n),
        .reserve(take), .full(cr_full),
        .in_valid(o_v), .in_data(o_d),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid),
        .m_axis_tready(m_axis_tready)
    );
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
