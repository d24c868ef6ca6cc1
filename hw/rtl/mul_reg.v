// mul_reg.v -- registered multiplier: p = a * b, two clock cycles after a and b (netfabric
// RTL library)
//
// Pipeline: operand registers, multiplier, product register (latency 2, one product per
// cycle, no enable, no reset). The product is exact (both operands are widened by one bit
// to signed numbers, whatever their signedness) and then cut to PW bits, two's complement.
//
// Why a module: on ECP5, Yosys maps "*" to a purely combinational MULT18X18D and cannot
// move neighbouring flip-flops into the block's own input/output registers, so the ~4 ns
// multiply sits between two general routing hops. With the define NF_ECP5_DSP (set by the
// ECP5 flow, hw/flow/synth.py) this module instantiates MULT18X18D itself with
// REG_INPUTA_CLK / REG_INPUTB_CLK / REG_OUTPUT_CLK on CLK0: the whole path is then inside
// the DSP (clock -> P ~0.7 ns instead of 3.9 ns A -> P). Without the define (simulation,
// iCE40, other families) the same registers and "*" are written out generically.
// Operands that do not fit one 18x18 block (18 bits signed, 17 unsigned) always use the
// generic form.
// Parameters:
//   AW, ASIGNED   width / signedness of a;   BW, BSIGNED: of b
//   PW            product bits kept (AW + BW is exact for any signedness mix)
`default_nettype none

`ifdef __ICARUS__
`define NF_PARAM_ERROR(msg) initial begin $error msg; $fatal(1); end
`elsif VERILATOR
`define NF_PARAM_ERROR(msg) $error msg; initial begin $error msg; $fatal(1); end
`else
`define NF_PARAM_ERROR(msg) $error msg;
`endif

module mul_reg #(
    parameter AW = 8,
    parameter ASIGNED = 1,
    parameter BW = 8,
    parameter BSIGNED = 1,
    parameter PW = AW + BW
) (
    input  wire clk,
    input  wire [AW-1:0] a,
    input  wire [BW-1:0] b,
    output wire [PW-1:0] p
);
    generate
        if (AW < 1 || BW < 1 || PW < 1) begin : g_err_width
            `NF_PARAM_ERROR(("mul_reg: AW (%0d), BW (%0d), PW (%0d) must be >= 1", AW, BW, PW))
        end
    endgenerate

    // a and b as signed values (sign or zero extension by one bit)
    wire signed [AW:0] as = {(ASIGNED != 0) ? a[AW-1] : 1'b0, a};
    wire signed [BW:0] bs = {(BSIGNED != 0) ? b[BW-1] : 1'b0, b};

`ifdef NF_ECP5_DSP
    // operand widths as signed numbers: one MULT18X18D takes 18 bits each
    localparam AX = AW + ((ASIGNED != 0) ? 0 : 1);
    localparam BX = BW + ((BSIGNED != 0) ? 0 : 1);
    localparam USE_DSP = (AX <= 18) && (BX <= 18);
`else
    localparam USE_DSP = 0;
`endif

    generate
        if (USE_DSP) begin : g_ecp5
`ifdef NF_ECP5_DSP
            // Both operands sign-extended to 18 bits, multiplied as signed: the 36-bit P is
            // the exact product.
            wire [35:0] a_x = {{(35-AW){as[AW]}}, as};
            wire [35:0] b_x = {{(35-BW){bs[BW]}}, bs};
            wire [17:0] a18 = a_x[17:0];
            wire [17:0] b18 = b_x[17:0];
            wire [35:0] p36;
            wire [PW+35:0] p_x = {{PW{p36[35]}}, p36};   // sign-extended, then cut to PW
            MULT18X18D #(
                .REG_INPUTA_CLK("CLK0"), .REG_INPUTA_CE("CE0"), .REG_INPUTA_RST("RST0"),
                .REG_INPUTB_CLK("CLK0"), .REG_INPUTB_CE("CE0"), .REG_INPUTB_RST("RST0"),
                .REG_INPUTC_CLK("NONE"),
                .REG_PIPELINE_CLK("NONE"),
                .REG_OUTPUT_CLK("CLK0"), .REG_OUTPUT_CE("CE0"), .REG_OUTPUT_RST("RST0"),
                .CLK0_DIV("ENABLED"), .CLK1_DIV("ENABLED"), .CLK2_DIV("ENABLED"),
                .CLK3_DIV("ENABLED"), .HIGHSPEED_CLK("NONE"), .GSR("DISABLED"),
                .CAS_MATCH_REG("FALSE"), .SOURCEB_MODE("B_SHIFT"),
                .MULT_BYPASS("DISABLED"), .RESETMODE("SYNC")
            ) u_dsp (
                // Unused inputs (C, SRIA/SRIB, CLK1-3, CE1-3, RST1-3) stay unconnected:
                // nextpnr ties them off inside the block, whereas constants wired here
                // must be routed from the fabric, thousands of sinks in a wide MVAU,
                // which made routing fail ("Failed to find a route ... $PACKER_GND_NET").
                .A0(a18[0]), .A1(a18[1]), .A2(a18[2]), .A3(a18[3]), .A4(a18[4]), .A5(a18[5]),
                .A6(a18[6]), .A7(a18[7]), .A8(a18[8]), .A9(a18[9]), .A10(a18[10]),
                .A11(a18[11]), .A12(a18[12]), .A13(a18[13]), .A14(a18[14]), .A15(a18[15]),
                .A16(a18[16]), .A17(a18[17]),
                .B0(b18[0]), .B1(b18[1]), .B2(b18[2]), .B3(b18[3]), .B4(b18[4]), .B5(b18[5]),
                .B6(b18[6]), .B7(b18[7]), .B8(b18[8]), .B9(b18[9]), .B10(b18[10]),
                .B11(b18[11]), .B12(b18[12]), .B13(b18[13]), .B14(b18[14]), .B15(b18[15]),
                .B16(b18[16]), .B17(b18[17]),
                .SIGNEDA(1'b1), .SIGNEDB(1'b1), .SOURCEA(1'b0), .SOURCEB(1'b0),
                .CLK0(clk), .CE0(1'b1), .RST0(1'b0),
                .P0(p36[0]), .P1(p36[1]), .P2(p36[2]), .P3(p36[3]), .P4(p36[4]),
                .P5(p36[5]), .P6(p36[6]), .P7(p36[7]), .P8(p36[8]), .P9(p36[9]),
                .P10(p36[10]), .P11(p36[11]), .P12(p36[12]), .P13(p36[13]), .P14(p36[14]),
                .P15(p36[15]), .P16(p36[16]), .P17(p36[17]), .P18(p36[18]), .P19(p36[19]),
                .P20(p36[20]), .P21(p36[21]), .P22(p36[22]), .P23(p36[23]), .P24(p36[24]),
                .P25(p36[25]), .P26(p36[26]), .P27(p36[27]), .P28(p36[28]), .P29(p36[29]),
                .P30(p36[30]), .P31(p36[31]), .P32(p36[32]), .P33(p36[33]), .P34(p36[34]),
                .P35(p36[35])
            );
            assign p = p_x[PW-1:0];
`endif
        end else begin : g_generic
            // the same two registers around a plain "*"
            reg signed [AW:0] a_r;
            reg signed [BW:0] b_r;
            reg [PW-1:0] p_r;
            wire signed [AW+BW+1:0] prod = a_r * b_r;
            wire [PW+AW+BW+1:0] prod_x = {{PW{prod[AW+BW+1]}}, prod};   // cut to PW below
            always @(posedge clk) begin
                a_r <= as;
                b_r <= bs;
                p_r <= prod_x[PW-1:0];
            end
            assign p = p_r;
        end
    endgenerate
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
