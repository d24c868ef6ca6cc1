// swg.v -- sliding window generator (FINN ConvolutionInputGenerator; netfabric RTL library)
//
// Input: NHWC frames of IFM_H x IFM_W pixels x IFM_CH channels. Output: for every output pixel
// (oy, ox), row-major over OH x OW, the K x K window of the input in the order (ky, kx, c),
// c fastest: pixel (oy*S + ky, ox*S + kx). No padding (a separate layer), no dilation.
//
// Stream protocol (AXI-Stream valid/ready, element i of a beat at tdata[i*BITS +: BITS]):
//   s_axis: SIMD channels of BITS per beat; a pixel is CF = IFM_CH/SIMD beats, pixels in
//           row-major order; IFM_H*IFM_W*CF beats per frame, frames back to back.
//   m_axis: PARALLEL_WINDOW=0: SIMD channels per beat, OH*OW*K*K*CF beats per frame.
//           PARALLEL_WINDOW=1: a whole window per beat (K*K*SIMD elements, SIMD = IFM_CH),
//           OH*OW beats per frame (FINN's parallel_window output).
//   tdata ports are rounded up to whole bytes (pad bits: ignored in, zero out).
// Parameters: IFM_H, IFM_W, IFM_CH, SIMD (IFM_CH % SIMD == 0), K (kernel), S (stride),
//   BITS (element width), BUF_DEPTH (circular buffer size in beats; 0 = automatic, see below;
//   unused with PARALLEL_WINDOW=1), PARALLEL_WINDOW (0 or 1; 1 needs SIMD == IFM_CH).
//   OH = (IFM_H - K)/S + 1, OW = (IFM_W - K)/S + 1.
//
// PARALLEL_WINDOW=0 (FINN's default style, SIMD channels a beat):
//   One circular buffer (block RAM, power-of-two depth) holding the input stream linearly.
//   The writer stores every input beat; the reader walks the windows with address arithmetic
//   (K*CF contiguous beats per window row). A window is started once all its beats are in
//   the buffer; buffer space is released when the reader moves past it (the window origin),
//   so the input of the next rows -- and of the next frame -- is taken in while the current
//   windows are emitted. The RAM's read register feeds an output register (two-stage read
//   pipeline, full rate: the RAM output only drives a flip-flop).
//   Automatic depth: next power of two >= max((K+S)*IFM_W*CF + K*CF, REL_F + WIN_SPAN), where
//   WIN_SPAN = ((K-1)*IFM_W + K)*CF beats reach from a window origin to its last beat and
//   REL_F = beats from the last window origin of a frame to the next frame's start: the
//   next frame's first window then arrives while the last window of the current frame is
//   still being emitted (no gap between frames), and the next rows while a row is emitted.
//   Throughput: one output beat per cycle whenever the window is available. Steady state per
//   frame max(OH*OW*K*K*CF, IFM_H*IFM_W*CF) cycles (output-bound for K > S, input-bound for
//   K <= S), plus a small gap when the input rows the next frame starts with do not fit.
//   Latency: a window starts the cycle after its last input beat is written (cycle t+1 after
//   that beat's handshake at t); its first beat is on m_axis at t+3.
// PARALLEL_WINDOW=1 (FINN's parallel_window style, a window a beat):
//   A K x K register window (the output register) fed by the input and K-1 line buffers of
//   IFM_W - K pixels (one block/LUT RAM IFM_W - K deep and (K-1) pixels wide, read two
//   pixels ahead into its read register and a second register that feeds the window
//   registers; registers for 1 or 2 pixels, none for K = IFM_W). Every
//   input pixel shifts the window by one; a pixel that completes a window (row and column
//   at K-1 + a multiple of S) makes it valid on m_axis the next cycle (latency 1). Input is
//   held while a window waits for the sink (s_axis_tready = !m_axis_tvalid ||
//   m_axis_tready), so a window a cycle at most: IFM_H*IFM_W cycles per frame at full rate,
//   frames back to back (FINN's estimate: IFM_H*IFM_W + 2).
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

module swg #(
    parameter IFM_H = 8,
    parameter IFM_W = 8,
    parameter IFM_CH = 4,
    parameter SIMD = 2,
    parameter K = 3,
    parameter S = 1,
    parameter BITS = 8,
    parameter BUF_DEPTH = 0,
    parameter PARALLEL_WINDOW = 0
) (
    input  wire clk,
    input  wire rst_n,
    /* verilator lint_off UNUSEDSIGNAL */  // byte-padding bits
    input  wire [((SIMD * BITS + 7) / 8) * 8 - 1:0] s_axis_tdata,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire s_axis_tvalid,
    output wire s_axis_tready,
    output wire [(((PARALLEL_WINDOW != 0 ? K * K : 1) * SIMD * BITS + 7) / 8) * 8 - 1:0]
        m_axis_tdata,
    output wire m_axis_tvalid,
    input  wire m_axis_tready
);
    localparam CF = IFM_CH / SIMD;
    localparam OH = (IFM_H - K) / S + 1;
    localparam OW = (IFM_W - K) / S + 1;
    localparam DW = SIMD * BITS;
    localparam ODW = (PARALLEL_WINDOW != 0 ? K * K : 1) * DW;   // output beat payload
    localparam OPW = ((ODW + 7) / 8) * 8;
    localparam WIN_SPAN = ((K - 1) * IFM_W + K) * CF;     // beats from window origin to end
    // Release at a frame end = distance from the last window origin to the next frame.
    localparam REL_F_BEATS = (IFM_H * IFM_W - (OH - 1) * S * IFM_W - (OW - 1) * S) * CF;
    localparam AUTO_A = (K + S) * IFM_W * CF + K * CF;
    localparam AUTO_B = REL_F_BEATS + WIN_SPAN;
    localparam AUTO_DEPTH = (AUTO_A > AUTO_B) ? AUTO_A : AUTO_B;
    localparam NEED = (BUF_DEPTH > 0) ? BUF_DEPTH : AUTO_DEPTH;
    localparam MINN = (NEED > WIN_SPAN) ? NEED : WIN_SPAN;   // a window must fit
    localparam AW = (MINN > 2) ? $clog2(MINN) : 1;
    localparam N = 1 << AW;
    // Signed occupancy: can dip below zero by at most the beats skipped at a frame end.
    localparam OCW = $clog2(N + IFM_H * IFM_W * CF + 1) + 1;
    localparam SEG = K * CF;                  // contiguous beats per window row
    localparam SGW = (SEG > 1) ? $clog2(SEG) : 1;
    localparam KW = (K > 1) ? $clog2(K) : 1;
    localparam OXW = (OW > 1) ? $clog2(OW) : 1;
    localparam OYW = (OH > 1) ? $clog2(OH) : 1;

    // Address steps (mod N) and the buffer space released when the window origin moves.
    localparam integer ROW_I = (IFM_W * CF) % N;
    localparam integer XSTEP_I = (S * CF) % N;
    localparam integer YSTEP_I = (S * IFM_W * CF) % N;
    localparam integer FSTEP_I = (IFM_H * IFM_W * CF) % N;
    localparam integer REL_X_I = S * CF;
    localparam integer REL_Y_I = (S * IFM_W - (OW - 1) * S) * CF;
    localparam integer REL_F_I = REL_F_BEATS;
    localparam integer SEG_LAST_I = SEG - 1;
    localparam integer K_LAST_I = K - 1;
    localparam integer OX_LAST_I = OW - 1;
    localparam integer OY_LAST_I = OH - 1;
    localparam integer N_I = N;
    localparam integer SPAN_I = WIN_SPAN;
    localparam integer ONE_I = 1;
    localparam [AW-1:0] ROW = ROW_I[AW-1:0];
    localparam [AW-1:0] XSTEP = XSTEP_I[AW-1:0];
    localparam [AW-1:0] YSTEP = YSTEP_I[AW-1:0];
    localparam [AW-1:0] FSTEP = FSTEP_I[AW-1:0];
    localparam [OCW-1:0] REL_X = REL_X_I[OCW-1:0];
    localparam [OCW-1:0] REL_Y = REL_Y_I[OCW-1:0];
    localparam [OCW-1:0] REL_F = REL_F_I[OCW-1:0];
    localparam [OCW-1:0] OCC_N = N_I[OCW-1:0];
    localparam [OCW-1:0] OCC_SPAN = SPAN_I[OCW-1:0];
    localparam [OCW-1:0] OCC_ONE = ONE_I[OCW-1:0];
    localparam [AW-1:0] A_ONE = ONE_I[AW-1:0];
    localparam [SGW-1:0] SEG_LAST = SEG_LAST_I[SGW-1:0];
    localparam [KW-1:0] K_LAST = K_LAST_I[KW-1:0];
    localparam [OXW-1:0] OX_LAST = OX_LAST_I[OXW-1:0];
    localparam [OYW-1:0] OY_LAST = OY_LAST_I[OYW-1:0];

    // ------------------------------------------------------------------ parameter checks
    generate
        if (IFM_H < 1) begin : g_err_ifm_h
            `NF_PARAM_ERROR(("swg: IFM_H (%0d) must be >= 1", IFM_H))
        end
        if (IFM_W < 1) begin : g_err_ifm_w
            `NF_PARAM_ERROR(("swg: IFM_W (%0d) must be >= 1", IFM_W))
        end
        if (IFM_CH < 1) begin : g_err_ifm_ch
            `NF_PARAM_ERROR(("swg: IFM_CH (%0d) must be >= 1", IFM_CH))
        end
        if (SIMD < 1) begin : g_err_simd
            `NF_PARAM_ERROR(("swg: SIMD (%0d) must be >= 1", SIMD))
        end
        if (K < 1) begin : g_err_k
            `NF_PARAM_ERROR(("swg: K (%0d) must be >= 1", K))
        end
        if (S < 1) begin : g_err_s
            `NF_PARAM_ERROR(("swg: S (%0d) must be >= 1", S))
        end
        if (BITS < 1) begin : g_err_bits
            `NF_PARAM_ERROR(("swg: BITS (%0d) must be >= 1", BITS))
        end
        if (IFM_CH % SIMD != 0) begin : g_err_ch_simd
            `NF_PARAM_ERROR(("swg: IFM_CH (%0d) must be a multiple of SIMD (%0d)",
                             IFM_CH, SIMD))
        end
        if (K > IFM_H) begin : g_err_k_h
            `NF_PARAM_ERROR(("swg: K (%0d) must be <= IFM_H (%0d)", K, IFM_H))
        end
        if (K > IFM_W) begin : g_err_k_w
            `NF_PARAM_ERROR(("swg: K (%0d) must be <= IFM_W (%0d)", K, IFM_W))
        end
        if (BUF_DEPTH < 0) begin : g_err_buf_depth
            `NF_PARAM_ERROR(("swg: BUF_DEPTH (%0d) must be >= 0 (0 = automatic)", BUF_DEPTH))
        end
        if (PARALLEL_WINDOW != 0 && PARALLEL_WINDOW != 1) begin : g_err_par
            `NF_PARAM_ERROR(("swg: PARALLEL_WINDOW (%0d) must be 0 or 1", PARALLEL_WINDOW))
        end
        if (PARALLEL_WINDOW != 0 && SIMD != IFM_CH) begin : g_err_par_simd
            `NF_PARAM_ERROR(("swg: PARALLEL_WINDOW=1 needs SIMD (%0d) == IFM_CH (%0d)",
                             SIMD, IFM_CH))
        end
    endgenerate

    generate
        if (OPW > ODW) begin : g_pad
            assign m_axis_tdata[OPW-1:ODW] = {(OPW - ODW){1'b0}};
        end

        if (PARALLEL_WINDOW == 0) begin : g_buf
            // ---------------------------------------------------------- buffer + writer
            // Synchronous read: block RAM unless tiny. no_rw_check (Yosys): a read never hits
            // the word written in the same cycle (reads stay in [origin, origin + SPAN), which
            // is written before the window's first read; the writer is at origin + occ, with
            // SPAN <= occ < N while a window is read). Without it Yosys guards the case with an
            // address compare and a mux after the RAM: on the CNN (2c0f664, seed 2) the RAM ->
            // mux -> o path was the critical path (10.03 ns, 99.7 MHz).
            (* no_rw_check *) reg [DW-1:0] mem [0:N-1];
            reg  [AW-1:0] wr_ptr;
            reg  [OCW-1:0] occ;      // beats written beyond the current window origin (signed)

            assign s_axis_tready = ($signed(occ) < $signed(OCC_N));
            wire push = s_axis_tvalid && s_axis_tready;

            // ---------------------------------------------------------- reader
            reg  [SGW-1:0] seg;
            reg  [KW-1:0]  ky;
            reg  [OXW-1:0] ox;
            reg  [OYW-1:0] oy;
            reg  [AW-1:0]  rd_addr, seg_addr, win_addr, row_addr, frame_addr;
            reg  [DW-1:0]  q;        // the RAM's read register
            reg            q_valid;
            reg  [DW-1:0]  o;        // output register (the RAM output drives only flip-flops)
            reg            o_valid;

            wire in_window = (seg != {SGW{1'b0}}) || (ky != {KW{1'b0}});
            wire avail = in_window || ($signed(occ) >= $signed(OCC_SPAN));
            wire q_move = q_valid && (!o_valid || m_axis_tready);   // q -> o this cycle
            wire rd = avail && (!q_valid || q_move);

            wire seg_end = (seg == SEG_LAST);
            wire ky_end = (ky == K_LAST);
            wire ox_end = (ox == OX_LAST);
            wire oy_end = (oy == OY_LAST);
            wire win_end = seg_end && ky_end;

            // Next window origin (when the current window ends) and the space released.
            wire [AW-1:0]  frame_nx = frame_addr + FSTEP;
            wire [AW-1:0]  row_nx = oy_end ? frame_nx : row_addr + YSTEP;
            wire [AW-1:0]  win_nx = ox_end ? row_nx : win_addr + XSTEP;
            wire [OCW-1:0] release_n = !ox_end ? REL_X : (!oy_end ? REL_Y : REL_F);
            wire [AW-1:0]  seg_nx = seg_addr + ROW;

            always @(posedge clk) begin
                if (push) mem[wr_ptr] <= s_axis_tdata[DW-1:0];
                if (rd) q <= mem[rd_addr];
                if (q_move) o <= q;
            end

            always @(posedge clk) begin
                if (!rst_n) begin
                    wr_ptr <= {AW{1'b0}};
                    occ <= {OCW{1'b0}};
                    seg <= {SGW{1'b0}};
                    ky <= {KW{1'b0}};
                    ox <= {OXW{1'b0}};
                    oy <= {OYW{1'b0}};
                    rd_addr <= {AW{1'b0}};
                    seg_addr <= {AW{1'b0}};
                    win_addr <= {AW{1'b0}};
                    row_addr <= {AW{1'b0}};
                    frame_addr <= {AW{1'b0}};
                    q_valid <= 1'b0;
                    o_valid <= 1'b0;
                end else begin
                    if (push) wr_ptr <= wr_ptr + A_ONE;
                    occ <= occ + (push ? OCC_ONE : {OCW{1'b0}})
                               - ((rd && win_end) ? release_n : {OCW{1'b0}});
                    if (rd) q_valid <= 1'b1;
                    else if (q_move) q_valid <= 1'b0;
                    if (q_move) o_valid <= 1'b1;
                    else if (m_axis_tready) o_valid <= 1'b0;

                    if (rd) begin
                        if (!seg_end) begin
                            seg <= seg + 1'b1;
                            rd_addr <= rd_addr + A_ONE;
                        end else begin
                            seg <= {SGW{1'b0}};
                            if (!ky_end) begin
                                ky <= ky + 1'b1;
                                seg_addr <= seg_nx;
                                rd_addr <= seg_nx;
                            end else begin
                                ky <= {KW{1'b0}};
                                seg_addr <= win_nx;
                                rd_addr <= win_nx;
                                win_addr <= win_nx;
                                if (!ox_end) begin
                                    ox <= ox + 1'b1;
                                end else begin
                                    ox <= {OXW{1'b0}};
                                    row_addr <= row_nx;
                                    if (!oy_end) begin
                                        oy <= oy + 1'b1;
                                    end else begin
                                        oy <= {OYW{1'b0}};
                                        frame_addr <= frame_nx;
                                    end
                                end
                            end
                        end
                    end
                end
            end

            assign m_axis_tdata[DW-1:0] = o;
            assign m_axis_tvalid = o_valid;
        end else begin : g_par
            // ---------------------------------------------------------- window-parallel
            // win: the K x K window registers, element e = ky*K + kx at [e*DW +: DW]
            // (the output beat); row K-1 is the newest, kx = K-1 the newest pixel of a row.
            // Line buffer ky (0..K-2) delays the pixel leaving window row ky+1 (kx = 0) by
            // LB = IFM_W - K pixels before it enters row ky at kx = K-1.
            localparam LB = IFM_W - K;
            localparam LBD = (K > 1) ? K - 1 : 1;           // line buffers (1 when unused)
            localparam XW = (IFM_W > 1) ? $clog2(IFM_W) : 1;
            localparam YW = (IFM_H > 1) ? $clog2(IFM_H) : 1;
            localparam PH = (K > S) ? K : S;                // stride phase counter range
            localparam PHW = (PH > 1) ? $clog2(PH) : 1;
            localparam integer W_LAST_I = IFM_W - 1;
            localparam integer H_LAST_I = IFM_H - 1;
            localparam integer K_FIRST_I = K - 1;           // phase: pixels to the first hit
            localparam integer S_NEXT_I = S - 1;            // phase after a hit
            localparam [XW-1:0] W_LAST = W_LAST_I[XW-1:0];
            localparam [YW-1:0] H_LAST = H_LAST_I[YW-1:0];
            localparam [PHW-1:0] PH_FIRST = K_FIRST_I[PHW-1:0];
            localparam [PHW-1:0] PH_NEXT = S_NEXT_I[PHW-1:0];
            localparam [PHW-1:0] PH_ONE = ONE_I[PHW-1:0];

            reg  [K*K*DW-1:0] win;
            reg               win_valid;
            reg  [XW-1:0]     cx;        // column / row of the next input pixel
            reg  [YW-1:0]     cy;
            reg  [PHW-1:0]    px, py;    // pixels / rows until the next window column / row
            /* verilator lint_off UNUSEDSIGNAL */  // K = 1: no line buffers
            wire [LBD*DW-1:0] lb_in, lb_out;   // line buffer ky at [ky*DW +: DW]
            /* verilator lint_on UNUSEDSIGNAL */
            wire [K*K*DW-1:0] win_nx;

            wire hit = (px == {PHW{1'b0}}) && (py == {PHW{1'b0}});   // next pixel ends a window
            assign s_axis_tready = !win_valid || m_axis_tready;
            wire shift = s_axis_tvalid && s_axis_tready;
            wire row_end = (cx == W_LAST);
            wire frame_end = row_end && (cy == H_LAST);

            genvar gy, gx;
            for (gy = 0; gy < K; gy = gy + 1) begin : g_row
                for (gx = 0; gx < K; gx = gx + 1) begin : g_col
                    localparam integer E = gy * K + gx;
                    if (gx < K - 1) begin : g_shift
                        assign win_nx[E*DW +: DW] = win[(E+1)*DW +: DW];
                    end else if (gy == K - 1) begin : g_in
                        assign win_nx[E*DW +: DW] = s_axis_tdata[DW-1:0];
                    end else begin : g_lb
                        assign win_nx[E*DW +: DW] = lb_out[gy*DW +: DW];
                    end
                end
                if (gy < K - 1) begin : g_lb_in
                    assign lb_in[gy*DW +: DW] = win[(gy + 1)*K*DW +: DW];
                end
            end
            if (K == 1) begin : g_no_lb
                assign lb_in = {DW{1'b0}};
                assign lb_out = {DW{1'b0}};
            end else if (LB == 0) begin : g_lb0   // K == IFM_W: rows are contiguous
                assign lb_out = lb_in;
            end else if (LB == 1) begin : g_lb1
                reg [LBD*DW-1:0] lb_r;
                always @(posedge clk) if (shift) lb_r <= lb_in;
                assign lb_out = lb_r;
            end else if (LB == 2) begin : g_lb2
                reg [LBD*DW-1:0] lb_r0, lb_r1;
                always @(posedge clk) if (shift) {lb_r1, lb_r0} <= {lb_r0, lb_in};
                assign lb_out = lb_r1;
            end else begin : g_lbram
                // LB deep, all line buffers side by side. Shift k writes slot k mod LB and
                // reads slot (k+2) mod LB (the pixel needed two shifts later: never the slot
                // being written, LB >= 3) into the RAM's read register lb_q; lb_r takes lb_q
                // at the next shift, so it holds mem[p] when slot p is next written. The RAM
                // output (slow clock-to-out) only drives lb_r, and both addresses come
                // straight from registers.
                localparam LAW = $clog2(LB);
                localparam integer LB_LAST_I = LB - 1;
                localparam integer TWO_I = 2;
                localparam [LAW-1:0] LB_LAST = LB_LAST_I[LAW-1:0];
                localparam [LAW-1:0] LA_ONE = ONE_I[LAW-1:0];
                localparam [LAW-1:0] LA_TWO = TWO_I[LAW-1:0];
                reg  [LBD*DW-1:0] lb_mem [0:LB-1];
                reg  [LBD*DW-1:0] lb_q;
                reg  [LBD*DW-1:0] lb_r;
                reg  [LAW-1:0]    lp;      // write slot
                reg  [LAW-1:0]    rp;      // read slot, lp + 2 mod LB
                always @(posedge clk) begin
                    if (shift) begin
                        lb_mem[lp] <= lb_in;
                        lb_q <= lb_mem[rp];
                        lb_r <= lb_q;
                    end
                end
                always @(posedge clk) begin
                    if (!rst_n) begin
                        lp <= {LAW{1'b0}};
                        rp <= LA_TWO;
                    end else if (shift) begin
                        lp <= (lp == LB_LAST) ? {LAW{1'b0}} : lp + LA_ONE;
                        rp <= (rp == LB_LAST) ? {LAW{1'b0}} : rp + LA_ONE;
                    end
                end
                assign lb_out = lb_r;
            end

            always @(posedge clk) begin
                if (shift) win <= win_nx;
            end

            always @(posedge clk) begin
                if (!rst_n) begin
                    win_valid <= 1'b0;
                    cx <= {XW{1'b0}};
                    cy <= {YW{1'b0}};
                    px <= PH_FIRST;
                    py <= PH_FIRST;
                end else begin
                    if (shift) win_valid <= hit;
                    else if (m_axis_tready) win_valid <= 1'b0;
                    if (shift) begin
                        cx <= row_end ? {XW{1'b0}} : cx + 1'b1;
                        if (row_end) px <= PH_FIRST;
                        else px <= (px == {PHW{1'b0}}) ? PH_NEXT : px - PH_ONE;
                        if (frame_end) begin
                            cy <= {YW{1'b0}};
                            py <= PH_FIRST;
                        end else if (row_end) begin
                            cy <= cy + 1'b1;
                            py <= (py == {PHW{1'b0}}) ? PH_NEXT : py - PH_ONE;
                        end
                    end
                end
            end

            assign m_axis_tdata[ODW-1:0] = win;
            assign m_axis_tvalid = win_valid;
        end
    endgenerate
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
