// host_link.v -- framed UART host link in front of a stitched accelerator (netfabric)
//
// Connects a UART (uart_rx/uart_tx, 8N1) to the accelerator's input stream (m_axis here,
// the accelerator's s_axis) and output stream (s_axis here, its m_axis). Protocol (full
// description: hw/rtl/README.md, "Host link"; host side: host/link_protocol.py):
//   request:  0xA5, length (16 bits, little endian, must equal IN_BYTES), payload: the
//             frame's IN_BEATS input beats, each IN_W/8 bytes, least significant first.
//   response: status byte, then on success the frame's OUT_BEATS output beats, each
//             OUT_W/8 bytes, least significant first.
//   status:   0x00 ok, 0xE1 bad header, 0xE2 bad length, 0xE3 overflow (a received byte
//             was lost), 0xE4 timeout (more than TIMEOUT_CYCLES without a byte inside a
//             request). After an error the receiver discards bytes until the line has
//             been idle for TIMEOUT_CYCLES, then expects a new request (resync).
// A request broken off inside its payload has already sent part of a frame into the
// accelerator, which counts elements: the link completes that frame with filler beats and
// drops its output, so the next frame lines up again.
// Receiver and transmitter are independent: the next request may arrive while a response is
// being sent (up to 4 answers waiting, more stalls the receiver). Answers keep the order of
// the requests; a tag FIFO tells the transmitter, per request, whether to send an output
// frame, drop one (after a broken-off payload) or only send an error status.
// Parameters: IN_W / OUT_W: the accelerator's tdata widths (multiples of 8); IN_BEATS /
//   OUT_BEATS: beats per frame; CLKS_PER_BIT: clock / baud; TIMEOUT_CYCLES: inter-byte
//   timeout (> 2 byte times); RX_FIFO_DEPTH: receive FIFO in bytes (power of two).
// Status outputs (one-cycle pulses, for LEDs): rx_byte, resp_ok, resp_err.
// Requires: uart_rx.v, uart_tx.v.
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

module host_link #(
    parameter IN_W = 8,
    parameter IN_BEATS = 1,
    parameter OUT_W = 8,
    parameter OUT_BEATS = 1,
    parameter CLKS_PER_BIT = 33,
    parameter TIMEOUT_CYCLES = 1000000,
    parameter RX_FIFO_DEPTH = 16
) (
    input  wire             clk,
    input  wire             rst_n,
    input  wire             uart_rx,
    output wire             uart_tx,
    output reg  [IN_W-1:0]  m_axis_tdata,
    output reg              m_axis_tvalid,
    input  wire             m_axis_tready,
    input  wire [OUT_W-1:0] s_axis_tdata,
    input  wire             s_axis_tvalid,
    output wire             s_axis_tready,
    output wire             rx_byte,
    output reg              resp_ok,
    output reg              resp_err
);
    localparam IN_BPB = IN_W / 8;                  // bytes per input beat
    localparam OUT_BPB = OUT_W / 8;
    localparam integer IN_BYTES = IN_BPB * IN_BEATS;
    localparam [15:0] LEN = IN_BYTES[15:0];
    localparam [7:0] MAGIC = 8'hA5;
    localparam IBW = (IN_BPB > 1) ? $clog2(IN_BPB) : 1;
    localparam INW = (IN_BEATS > 1) ? $clog2(IN_BEATS) : 1;
    localparam OBW = (OUT_BPB > 1) ? $clog2(OUT_BPB) : 1;
    localparam ONW = (OUT_BEATS > 1) ? $clog2(OUT_BEATS) : 1;
    localparam integer IN_BPB_L = IN_BPB - 1;
    localparam integer IN_BEATS_L = IN_BEATS - 1;
    localparam integer OUT_BPB_L = OUT_BPB - 1;
    localparam integer OUT_BEATS_L = OUT_BEATS - 1;
    localparam GW = $clog2(TIMEOUT_CYCLES + 1);
    localparam QAW = (RX_FIFO_DEPTH > 2) ? $clog2(RX_FIFO_DEPTH) : 1;
    localparam integer TIMEOUT_I = TIMEOUT_CYCLES;
    localparam [GW-1:0] TIMEOUT = TIMEOUT_I[GW-1:0];
    // error codes (status byte = 0xE0 | code; 0 = ok)
    localparam [2:0] E_OK = 3'd0, E_HDR = 3'd1, E_LEN = 3'd2, E_OVF = 3'd3, E_TMO = 3'd4;

    generate
        if (IN_W < 8 || IN_W % 8 != 0) begin : g_err_in_w
            `NF_PARAM_ERROR(("host_link: IN_W (%0d) must be a positive multiple of 8", IN_W))
        end
        if (OUT_W < 8 || OUT_W % 8 != 0) begin : g_err_out_w
            `NF_PARAM_ERROR(("host_link: OUT_W (%0d) must be a positive multiple of 8", OUT_W))
        end
        if (IN_BEATS < 1 || OUT_BEATS < 1) begin : g_err_beats
            `NF_PARAM_ERROR(("host_link: IN_BEATS (%0d) and OUT_BEATS (%0d) must be >= 1",
                             IN_BEATS, OUT_BEATS))
        end
        if (IN_BYTES > 65535) begin : g_err_len
            `NF_PARAM_ERROR(("host_link: a request of %0d bytes exceeds the 16-bit length field",
                             IN_BYTES))
        end
        if (RX_FIFO_DEPTH < 2 || (RX_FIFO_DEPTH & (RX_FIFO_DEPTH - 1)) != 0) begin : g_err_fifo
            `NF_PARAM_ERROR(("host_link: RX_FIFO_DEPTH (%0d) must be a power of two >= 2",
                             RX_FIFO_DEPTH))
        end
        if (TIMEOUT_CYCLES < 20 * CLKS_PER_BIT) begin : g_err_timeout
            `NF_PARAM_ERROR(("host_link: TIMEOUT_CYCLES (%0d) must be >= 2 byte times (%0d)",
                             TIMEOUT_CYCLES, 20 * CLKS_PER_BIT))
        end
    endgenerate

    // ------------------------------------------------------------------ UART
    wire [7:0] rx_data;
    wire rx_valid;
    wire [7:0] tx_data;
    wire tx_valid, tx_ready;
    /* verilator lint_off PINCONNECTEMPTY */
    uart_rx #(.CLKS_PER_BIT(CLKS_PER_BIT)) u_rx (
        .clk(clk), .rst_n(rst_n), .rx(uart_rx), .m_tdata(rx_data), .m_tvalid(rx_valid),
        .frame_error());  // a dropped byte shows up as a timeout or a bad length/header
    /* verilator lint_on PINCONNECTEMPTY */
    uart_tx #(.CLKS_PER_BIT(CLKS_PER_BIT)) u_tx (
        .clk(clk), .rst_n(rst_n), .s_tdata(tx_data), .s_tvalid(tx_valid), .s_tready(tx_ready),
        .tx(uart_tx));
    assign rx_byte = rx_valid;

    // Receive FIFO of RX_FIFO_DEPTH bytes in front of a one-byte output register (rb): the
    // line never waits for the accelerator, which may take its input slower than the UART
    // delivers it (an unfolded first layer). A byte arriving while the FIFO is full is lost:
    // overflow. The shell sizes the FIFO for the host's window of requests in flight, so
    // only a host that sends more than that ahead can overflow it. The memory's read register
    // (q_dout, inside the block RAM) feeds rm, a fabric register with no other job than to
    // sit beside the RAM, and rm feeds rb: the FSM never decodes straight from the block
    // RAM's slow output (87 MHz), and that output (~5.8 ns clock-to-out on ECP5) never has to
    // reach rb's load mux across the chip (7.65 ns, the MLP's critical path at 130.7 MHz).
    // A read never meets a write of the same byte (a pop needs a byte queued, a push a free
    // slot, so the two pointers differ whenever both happen): no_rw_check tells Yosys so,
    // and it drops the collision bypass it otherwise builds after the block RAM's output (a
    // LUT between the RAM's 5.8 ns clock-to-out and rm: the MLP's critical path on seed 2,
    // 7.9 ns at 8ed6c05).
    (* no_rw_check *)
    reg [7:0] rxq [0:RX_FIFO_DEPTH-1];
    reg [QAW-1:0] q_wp, q_rp;
    reg [QAW:0] q_n;
    wire q_full = (q_n == RX_FIFO_DEPTH[QAW:0]);
    wire q_push = rx_valid && !q_full;
    reg [7:0] q_dout, rm, rb;
    reg q_dv, rm_v, rb_v, ovf;
    wire take;          // the receive FSM consumes rb this cycle
    wire rb_load = rm_v && (!rb_v || take);
    wire rm_load = q_dv && (!rm_v || rb_load);
    wire q_pop = (q_n != {(QAW + 1){1'b0}}) && (!q_dv || rm_load);
    reg ovf_clr;
    always @(posedge clk) begin
        if (q_push) rxq[q_wp] <= rx_data;
        if (q_pop) q_dout <= rxq[q_rp];
        if (rm_load) rm <= q_dout;
        if (rb_load) rb <= rm;
        if (!rst_n) begin
            q_wp <= {QAW{1'b0}};
            q_rp <= {QAW{1'b0}};
            q_n <= {(QAW + 1){1'b0}};
            q_dv <= 1'b0;
            rm_v <= 1'b0;
            rb_v <= 1'b0;
            ovf <= 1'b0;
        end else begin
            if (q_push) q_wp <= q_wp + 1'b1;
            if (q_pop) q_rp <= q_rp + 1'b1;
            if (q_push && !q_pop) q_n <= q_n + 1'b1;
            else if (!q_push && q_pop) q_n <= q_n - 1'b1;
            if (q_pop) q_dv <= 1'b1;
            else if (rm_load) q_dv <= 1'b0;
            if (rm_load) rm_v <= 1'b1;
            else if (rb_load) rm_v <= 1'b0;
            if (rb_load) rb_v <= 1'b1;
            else if (take) rb_v <= 1'b0;
            if (rx_valid && q_full) ovf <= 1'b1;
            else if (ovf_clr) ovf <= 1'b0;
        end
    end

    // Cycles since the last received byte, saturating at TIMEOUT.
    reg [GW-1:0] gap;
    wire timeout = (gap == TIMEOUT);
    // Waiting for a byte that has not come: the line has been idle for TIMEOUT and nothing
    // received is still queued (a slow accelerator may leave bytes in the FIFO long after
    // the line went quiet; that is not a broken-off request).
    wire starved = timeout && !rb_v && !rm_v && !q_dv && (q_n == {(QAW + 1){1'b0}});
    always @(posedge clk) begin
        if (!rst_n || rx_valid) gap <= {GW{1'b0}};
        else if (!timeout) gap <= gap + 1'b1;
    end

    // ------------------------------------------------------------------ tag FIFO (rx -> tx)
    // tag = {drop an output frame, error code}
    reg [3:0] tags [0:3];
    reg [1:0] tag_wp, tag_rp;
    reg [2:0] tag_n;
    wire tag_push, tag_pop;
    reg [3:0] tag_in;
    wire tag_full = tag_n[2];
    wire tag_empty = (tag_n == 3'd0);
    always @(posedge clk) begin
        if (tag_push) tags[tag_wp] <= tag_in;
        if (!rst_n) begin
            tag_wp <= 2'd0;
            tag_rp <= 2'd0;
            tag_n <= 3'd0;
        end else begin
            if (tag_push) tag_wp <= tag_wp + 2'd1;
            if (tag_pop) tag_rp <= tag_rp + 2'd1;
            if (tag_push && !tag_pop) tag_n <= tag_n + 3'd1;
            else if (!tag_push && tag_pop) tag_n <= tag_n - 3'd1;
        end
    end

    // ------------------------------------------------------------------ receive FSM
    localparam [2:0] R_HDR = 3'd0, R_LEN0 = 3'd1, R_LEN1 = 3'd2, R_DATA = 3'd3,
                     R_FLUSH = 3'd4, R_TAG = 3'd5, R_DRAIN = 3'd6;
    reg [2:0] rstate;
    reg [7:0] len_lo;
    reg [IBW-1:0] nbyte;
    reg [INW-1:0] nbeat;
    wire m_hs = m_axis_tvalid && m_axis_tready;
    wire last_byte = (nbyte == IN_BPB_L[IBW-1:0]);
    wire last_beat = (nbeat == IN_BEATS_L[INW-1:0]);
    assign take = rb_v && (rstate == R_HDR || rstate == R_LEN0 || rstate == R_LEN1 ||
                           rstate == R_DRAIN || (rstate == R_DATA && !m_axis_tvalid && !ovf));
    assign tag_push = (rstate == R_TAG) && !tag_full;
    // A payload byte shifts into the beat register: take in R_DATA, which already excludes
    // every other branch of R_DATA below (a pending beat, an overflow, a starved line). Spelt
    // out from registers so the 128-wide clock enable is one LUT from flip-flops: inside the
    // FSM's if-chain Yosys built it from the accelerator's tready and the FIFO's counters
    // (8.0 ns, the MLP's critical path on seed 3 at 8ed6c05).
    wire take_payload = rb_v && (rstate == R_DATA) && !m_axis_tvalid && !ovf;

    wire [IN_W-1:0] shifted;  // rb enters at the top: after IN_BPB bytes the first is lowest
    generate
        if (IN_W == 8) begin : g_shift8
            assign shifted = rb;
        end else begin : g_shift
            assign shifted = {rb, m_axis_tdata[IN_W-1:8]};
        end
    endgenerate

    always @(posedge clk) begin
        if (take_payload) m_axis_tdata <= shifted;
    end

    always @(posedge clk) begin
        ovf_clr <= 1'b0;
        if (!rst_n) begin
            rstate <= R_HDR;
            m_axis_tvalid <= 1'b0;
            nbyte <= {IBW{1'b0}};
            nbeat <= {INW{1'b0}};
            tag_in <= 4'd0;
        end else begin
            case (rstate)
                R_HDR: begin
                    if (ovf) begin
                        tag_in <= {1'b0, E_OVF};
                        ovf_clr <= 1'b1;
                        rstate <= R_TAG;
                    end else if (rb_v) begin
                        tag_in <= {1'b0, E_HDR};
                        rstate <= (rb == MAGIC) ? R_LEN0 : R_TAG;
                    end
                end
                R_LEN0, R_LEN1: begin
                    if (ovf || starved) begin
                        tag_in <= {1'b0, ovf ? E_OVF : E_TMO};
                        ovf_clr <= ovf;
                        rstate <= R_TAG;
                    end else if (rb_v) begin
                        len_lo <= rb;
                        tag_in <= {1'b0, E_LEN};
                        if (rstate == R_LEN0) rstate <= R_LEN1;
                        else rstate <= ({rb, len_lo} == LEN) ? R_DATA : R_TAG;
                    end
                end
                R_DATA: begin
                    if (m_hs) begin
                        m_axis_tvalid <= 1'b0;
                        nbeat <= last_beat ? {INW{1'b0}} : nbeat + 1'b1;
                        if (last_beat) begin
                            tag_in <= {1'b0, E_OK};
                            rstate <= R_TAG;
                        end
                    end else if (ovf || (!m_axis_tvalid && starved)) begin
                        // broken off inside the frame: complete it with filler beats
                        tag_in <= {1'b1, ovf ? E_OVF : E_TMO};
                        ovf_clr <= ovf;
                        m_axis_tvalid <= 1'b1;
                        nbyte <= {IBW{1'b0}};
                        rstate <= R_FLUSH;
                    end else if (take) begin
                        nbyte <= last_byte ? {IBW{1'b0}} : nbyte + 1'b1;
                        if (last_byte) m_axis_tvalid <= 1'b1;
                    end
                end
                R_FLUSH: begin
                    if (m_hs) begin
                        nbeat <= last_beat ? {INW{1'b0}} : nbeat + 1'b1;
                        if (last_beat) begin
                            m_axis_tvalid <= 1'b0;
                            rstate <= R_TAG;
                        end
                    end
                end
                R_TAG: begin
                    if (!tag_full) rstate <= (tag_in[2:0] == E_OK) ? R_HDR : R_DRAIN;
                end
                default: begin  // R_DRAIN: discard until the line is idle, then resync
                    if (starved) begin
                        ovf_clr <= 1'b1;
                        rstate <= R_HDR;
                    end
                end
            endcase
        end
    end

    // ------------------------------------------------------------------ transmit FSM
    localparam [2:0] T_IDLE = 3'd0, T_DROP = 3'd1, T_STATUS = 3'd2, T_LOAD = 3'd3,
                     T_SEND = 3'd4;
    reg [2:0] tstate;
    reg [2:0] tcode;
    reg [OUT_W-1:0] obuf;
    reg [OBW-1:0] obyte;
    reg [ONW-1:0] obeat;
    wire s_hs = s_axis_tvalid && s_axis_tready;
    wire tx_hs = tx_valid && tx_ready;
    wire o_last_byte = (obyte == OUT_BPB_L[OBW-1:0]);
    wire o_last_beat = (obeat == OUT_BEATS_L[ONW-1:0]);
    assign tag_pop = (tstate == T_IDLE) && !tag_empty;
    assign s_axis_tready = (tstate == T_DROP) || (tstate == T_LOAD);
    assign tx_valid = (tstate == T_STATUS) || (tstate == T_SEND);
    assign tx_data = (tstate == T_SEND) ? obuf[7:0]
                   : (tcode == E_OK) ? 8'h00 : {5'b11100, tcode};

    always @(posedge clk) begin
        resp_ok <= 1'b0;
        resp_err <= 1'b0;
        if (!rst_n) begin
            tstate <= T_IDLE;
            tcode <= E_OK;
            obyte <= {OBW{1'b0}};
            obeat <= {ONW{1'b0}};
        end else begin
            case (tstate)
                T_IDLE: begin
                    if (tag_pop) begin
                        tcode <= tags[tag_rp][2:0];
                        tstate <= tags[tag_rp][3] ? T_DROP : T_STATUS;
                    end
                end
                T_DROP: begin  // the output frame of a request broken off: discard it
                    if (s_hs) begin
                        obeat <= o_last_beat ? {ONW{1'b0}} : obeat + 1'b1;
                        if (o_last_beat) tstate <= T_STATUS;
                    end
                end
                T_STATUS: begin
                    if (tx_hs) begin
                        resp_ok <= (tcode == E_OK);
                        resp_err <= (tcode != E_OK);
                        tstate <= (tcode == E_OK) ? T_LOAD : T_IDLE;
                    end
                end
                T_LOAD: begin
                    if (s_hs) begin
                        obuf <= s_axis_tdata;
                        tstate <= T_SEND;
                    end
                end
                default: begin  // T_SEND
                    if (tx_hs) begin
                        obuf <= obuf >> 8;
                        obyte <= o_last_byte ? {OBW{1'b0}} : obyte + 1'b1;
                        if (o_last_byte) begin
                            obeat <= o_last_beat ? {ONW{1'b0}} : obeat + 1'b1;
                            tstate <= o_last_beat ? T_IDLE : T_LOAD;
                        end
                    end
                end
            endcase
        end
    end
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
