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
//   read-modify-write per input beat: synchronous read, max, write back, with forwarding of
//   the word written in the previous cycle. An output beat is emitted with the last beat of
//   each pooling window.
// Throughput: one input beat per cycle (IFM_H*IFM_W*CF cycles per frame).
// Latency: 3 cycles from the handshake of a window's last input beat to the output beat.
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
    localparam PW = ((DW + 7) / 8) * 8;
    localparam MD = OW * CF;                       // running-max memory depth
    localparam MAW = (MD > 1) ? $clog2(MD) : 1;
    localparam CFW = (CF > 1) ? $clog2(CF) : 1;
    localparam KW = (K > 1) ? $clog2(K) : 1;
    localparam OXW = (OW > 1) ? $clog2(OW) : 1;
    localparam OYW = (OH > 1) ? $clog2(OH) : 1;
    localparam ODEPTH = 8;                         // >= latency + credit round trip
    localparam CRW = $clog2(ODEPTH + 1);

    localparam integer CF_LAST_I = CF - 1;
    localparam integer K_LAST_I = K - 1;
    localparam integer OX_LAST_I = OW - 1;
    localparam integer OY_LAST_I = OH - 1;
    localparam integer ODEPTH_I = ODEPTH;
    localparam integer ONE_I = 1;
    localparam [CFW-1:0] CF_LAST = CF_LAST_I[CFW-1:0];
    localparam [KW-1:0] K_LAST = K_LAST_I[KW-1:0];
    localparam [OXW-1:0] OX_LAST = OX_LAST_I[OXW-1:0];
    localparam [OYW-1:0] OY_LAST = OY_LAST_I[OYW-1:0];
    localparam [CRW-1:0] CR_FULL = ODEPTH_I[CRW-1:0];
    localparam [CRW-1:0] CR_ONE = ONE_I[CRW-1:0];
    localparam [MAW-1:0] MA_ONE = ONE_I[MAW-1:0];

    // ------------------------------------------------------------------ input position
    reg  [CFW-1:0] cf;
    reg  [KW-1:0]  kx, ky;
    reg  [OXW-1:0] ox;
    reg  [OYW-1:0] oy;
    reg  [MAW-1:0] addr;       // ox*CF + cf
    reg  [MAW-1:0] obase;      // ox*CF
    reg  [CRW-1:0] credits;

    wire cf_end = (cf == CF_LAST);
    wire kx_end = (kx == K_LAST);
    wire ky_end = (ky == K_LAST);
    wire ox_end = (ox == OX_LAST);
    wire oy_end = (oy == OY_LAST);
    wire first = (kx == {KW{1'b0}}) && (ky == {KW{1'b0}});
    wire last = kx_end && ky_end;

    // Only the beat completing a window needs a reserved output slot.
    assign s_axis_tready = !last || (credits != CR_FULL);
    wire push = s_axis_tvalid && s_axis_tready;
    wire take = push && last;
    wire give = m_axis_tvalid && m_axis_tready;

    always @(posedge clk) begin
        if (!rst_n) begin
            cf <= {CFW{1'b0}};
            kx <= {KW{1'b0}};
            ky <= {KW{1'b0}};
            ox <= {OXW{1'b0}};
            oy <= {OYW{1'b0}};
            addr <= {MAW{1'b0}};
            obase <= {MAW{1'b0}};
            credits <= {CRW{1'b0}};
        end else begin
            if (take && !give) credits <= credits + CR_ONE;
            else if (!take && give) credits <= credits - CR_ONE;
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

    // ------------------------------------------------------------------ stage B: max, write
    reg  [DW-1:0] wb_d;        // word written in the previous cycle (read-during-write bypass)
    reg  [MAW-1:0] wb_a;
    reg           wb_v;
    reg  [DW-1:0] o_d;
    reg           o_v;
    wire [DW-1:0] prev = (wb_v && wb_a == a_d) ? wb_d : q;
    wire [DW-1:0] m;
    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_max
            wire [BITS-1:0] a = prev[p*BITS +: BITS];
            wire [BITS-1:0] b = in_d[p*BITS +: BITS];
            // Compare as BITS+1-bit signed numbers: covers both signednesses.
            wire signed [BITS:0] as = {(SIGNED != 0) ? a[BITS-1] : 1'b0, a};
            wire signed [BITS:0] bs = {(SIGNED != 0) ? b[BITS-1] : 1'b0, b};
            assign m[p*BITS +: BITS] = (first_d || bs > as) ? b : a;
        end
    endgenerate

    always @(posedge clk) begin
        if (v_d) mem[a_d] <= m;
        wb_d <= m;
        wb_a <= a_d;
        o_d <= m;
    end

    always @(posedge clk) begin
        if (!rst_n) begin
            v_d <= 1'b0;
            wb_v <= 1'b0;
            o_v <= 1'b0;
        end else begin
            v_d <= push;
            wb_v <= v_d;
            o_v <= v_d && last_d;
        end
    end

    // ------------------------------------------------------------------ output
    wire [PW-1:0] fifo_in;
    generate
        if (PW > DW) begin : g_pad
            assign fifo_in[PW-1:DW] = {(PW - DW){1'b0}};
        end
    endgenerate
    assign fifo_in[DW-1:0] = o_d;

    /* verilator lint_off PINCONNECTEMPTY */
    fifo #(.WIDTH(DW), .DEPTH(ODEPTH), .RAM_STYLE(1)) u_out (
        .clk(clk), .rst_n(rst_n),
        .s_axis_tdata(fifo_in), .s_axis_tvalid(o_v), .s_axis_tready(),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid),
        .m_axis_tready(m_axis_tready)
    );
    /* verilator lint_on PINCONNECTEMPTY */
endmodule
