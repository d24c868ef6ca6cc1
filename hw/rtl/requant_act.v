// requant_act.v -- multi-threshold activation: requantizer where proven, else table search
//
//     out[c] = #{k : x[c] >= T[c][k]} + ACT_BIAS        (the FINN MultiThreshold count)
// computed per channel by one of two exact units:
//   requant.v        clip((x*M[c] + B[c]) >>> SHIFT, 0, LEVELS), for the channels where
//                    host/requant.py proved it equal to the table (no table stored at all);
//   thresh_search.v  the binary search over the stored table, for the other channels only
//                    (NT tables per lane, picked through "<THRESH_FILE>_idx.hex").
// The choice is per channel: the requantizer's constants carry a use bit, and a lane whose
// channel is not proven takes the search's result. Mode by parameters:
//   RQ = 0            tables only (thresh_search with NT = NF), as before requantizers
//   RQ = 1, NT = 0    requantizer only (every channel proven)
//   RQ = 1, NT >= 1   both; the requantizer's result waits for the search's
// Protocol as thresh_search.v (no backpressure, folds in order).
// Latency: LATENCY = 6 (RQ = 1, NT = 0) or 4*OBITS + 2 cycles (>= 6).
// Parameters: NF, PE, DBITS, OBITS, ACT_BIAS, THRESH_FILE, ROM_STYLE (thresh_search.v);
//   RQ, NT; LEVELS, MBITS, BBITS, SHIFT, RQ_FILE (requant.v).
// Requires: requant.v, thresh_search.v, banked_rom.v.
`default_nettype none

module requant_act #(
    parameter NF = 1,
    parameter PE = 1,
    parameter DBITS = 16,
    parameter OBITS = 4,
    parameter ACT_BIAS = 0,
    parameter THRESH_FILE = "",
    parameter ROM_STYLE = 0,
    parameter RQ = 0,
    parameter NT = 0,
    parameter LEVELS = 15,
    parameter MBITS = 16,
    parameter BBITS = 24,
    parameter SHIFT = 16,
    parameter RQ_FILE = ""
) (
    input  wire                  clk,
    input  wire                  rst_n,
    input  wire                  in_valid,
    input  wire [PE*DBITS-1:0]   in_data,
    output wire                  out_valid,
    output wire [PE*OBITS-1:0]   out_data
);
    localparam TS_LAT = 4 * OBITS + 2;
    localparam RQ_LAT = 6;   // requant.v (<= TS_LAT for every OBITS >= 1)
    localparam OW = PE * OBITS;

    wire          ts_v;
    wire [OW-1:0] ts_d;
    wire          rq_v;
    wire [OW-1:0] rq_d;
    wire [PE-1:0] rq_use;

    generate
        if (RQ == 0 || NT > 0) begin : g_ts
            thresh_search #(
                .NF(NF), .PE(PE), .DBITS(DBITS), .OBITS(OBITS), .ACT_BIAS(ACT_BIAS),
                .NT(RQ == 0 ? NF : NT), .IDX(RQ == 0 ? 0 : 1), .ROM_STYLE(ROM_STYLE),
                .THRESH_FILE(THRESH_FILE)
            ) u_thresh (
                .clk(clk), .rst_n(rst_n), .in_valid(in_valid), .in_data(in_data),
                .out_valid(ts_v), .out_data(ts_d)
            );
        end else begin : g_nots
            assign ts_v = 1'b0;
            assign ts_d = {OW{1'b0}};
        end

        if (RQ != 0) begin : g_rq
            requant #(
                .NF(NF), .PE(PE), .DBITS(DBITS), .OBITS(OBITS), .LEVELS(LEVELS),
                .MBITS(MBITS), .BBITS(BBITS), .SHIFT(SHIFT), .ACT_BIAS(ACT_BIAS),
                .RQ_FILE(RQ_FILE)
            ) u_rq (
                .clk(clk), .rst_n(rst_n), .in_valid(in_valid), .in_data(in_data),
                .out_valid(rq_v), .out_data(rq_d), .out_use(rq_use)
            );
        end else begin : g_norq
            assign rq_v = 1'b0;
            assign rq_d = {OW{1'b0}};
            assign rq_use = {PE{1'b0}};
        end

        if (RQ == 0) begin : g_out_ts
            assign out_valid = ts_v;
            assign out_data = ts_d;
        end else if (NT == 0) begin : g_out_rq
            assign out_valid = rq_v;
            assign out_data = rq_d;
        end else begin : g_out_mix
            // The requantizer's results (and use bits) wait for the search's; validity
            // comes from the search, which sees the same inputs.
            localparam DL = TS_LAT - RQ_LAT;
            wire [OW-1:0] rq_dd;
            wire [PE-1:0] use_dd;
            if (DL == 0) begin : g_nodly  // OBITS = 1: both units take 6 cycles
                assign rq_dd = rq_d;
                assign use_dd = rq_use;
            end else begin : g_dly
                reg [DL*(OW+PE)-1:0] dly;
                if (DL == 1) begin : g_one
                    always @(posedge clk) dly <= {rq_use, rq_d};
                end else begin : g_more
                    always @(posedge clk)
                        dly <= {dly[(DL-1)*(OW+PE)-1:0], rq_use, rq_d};
                end
                assign rq_dd = dly[(DL-1)*(OW+PE) +: OW];
                assign use_dd = dly[(DL-1)*(OW+PE) + OW +: PE];
            end
            genvar p;
            for (p = 0; p < PE; p = p + 1) begin : g_sel
                assign out_data[p*OBITS +: OBITS] = use_dd[p] ? rq_dd[p*OBITS +: OBITS]
                                                             : ts_d[p*OBITS +: OBITS];
            end
            assign out_valid = ts_v;
        end
    endgenerate
endmodule

`default_nettype wire
