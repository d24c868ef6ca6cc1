// banked_rom.v -- a ROM deeper than one block RAM, as banks side by side (netfabric RTL library)
//
// data = rom[addr] two cycles after addr, for a ROM of DEPTH words split into banks of
// 2^BANK_AW words. Each bank is its own memory loaded from its own file (Yosys keeps every
// word of a memory, even those a constant address part never reads), read with the low
// address bits into its read register, then registered once more beside it (the ECP5 flow
// moves that register into the block RAM's output register, hw/flow/bram_outreg.py). The
// bank select travels alongside, and the bank multiplexer runs from those registers: no
// multiplexer sits between a block-RAM output and a register. `data` is that multiplexer's
// output (combinational): the user registers it. Used by mvau.v (deep weight ROMs) and
// thresh_search.v (deep threshold stages).
//
// Parameters:
//   WIDTH     bits per word
//   DEPTH     words; more than one bank (DEPTH > 2^BANK_AW), at most 1000 banks
//   BANK_AW   log2 of the words per bank (the last bank holds the rest)
//   FILE      $readmemh prefix: bank b reads "<FILE>_b<bbb>.hex" (b in three decimal
//             digits, the words b*2^BANK_AW on); "" leaves the banks unloaded
// Latency: 2 cycles from addr to data.
`default_nettype none

`ifdef __ICARUS__
`define NF_PARAM_ERROR(msg) initial begin $error msg; $fatal(1); end
`elsif VERILATOR
`define NF_PARAM_ERROR(msg) $error msg; initial begin $error msg; $fatal(1); end
`else
`define NF_PARAM_ERROR(msg) $error msg;
`endif

module banked_rom #(
    parameter WIDTH = 8,
    parameter DEPTH = 4,
    parameter BANK_AW = 1,
    parameter FILE = ""
) (
    input  wire clk,
    input  wire [((DEPTH > 1) ? $clog2(DEPTH) : 1)-1:0] addr,
    output wire [WIDTH-1:0] data
);
    localparam AW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam NBANK = (BANK_AW >= 1 && BANK_AW < AW)
                       ? (DEPTH + (1 << BANK_AW) - 1) >> BANK_AW : 2;
    localparam BSW = $clog2(NBANK);

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

    generate
        if (WIDTH < 1) begin : g_err_width
            `NF_PARAM_ERROR(("banked_rom: WIDTH (%0d) must be >= 1", WIDTH))
        end
        if (BANK_AW < 1 || DEPTH <= (1 << BANK_AW)) begin : g_err_banks
            `NF_PARAM_ERROR(("banked_rom: DEPTH (%0d) must exceed one bank of 2^%0d words",
                             DEPTH, BANK_AW))
        end
        if (NBANK > 1000) begin : g_err_nbank
            `NF_PARAM_ERROR(("banked_rom: %0d banks of 2^%0d words, at most 1000", NBANK,
                             BANK_AW))
        end
    endgenerate

    wire [BSW-1:0] bsel = addr[AW-1:AW-BSW];
    reg  [BSW-1:0] bsel_q;
    reg  [BSW-1:0] bsel_m;
    wire [(1<<BSW)*WIDTH-1:0] q_all;
    genvar b;
    generate
        for (b = 0; b < (1 << BSW); b = b + 1) begin : g_bank
            if (b < NBANK) begin : g_real
                // (at least 1: keeps illegal parameters elaborating up to their $error)
                localparam integer BWORDS = (b < NBANK - 1) ? (1 << BANK_AW)
                                            : (DEPTH > (b << BANK_AW)) ? DEPTH - (b << BANK_AW)
                                            : 1;
                localparam [23:0] BNUM = bank_number(b);
                // index bits of this bank (the last one may be smaller than 2^BANK_AW)
                localparam integer BAB = (BWORDS > 1) ? $clog2(BWORDS) : 1;
                /* verilator lint_off UNDRIVEN */  // ROM: contents come from FILE
                reg [WIDTH-1:0] mem [0:BWORDS-1];
                /* verilator lint_on UNDRIVEN */
                if (FILE != "") begin : g_init
                    initial $readmemh({FILE, "_b", BNUM, ".hex"}, mem);
                end
                reg [WIDTH-1:0] q;      // the block RAM's read register
                reg [WIDTH-1:0] q_m;    // beside it (moved into its output register)
                always @(posedge clk) begin
                    q <= mem[addr[BAB-1:0]];
                    q_m <= q;
                end
                assign q_all[b*WIDTH +: WIDTH] = q_m;
            end else begin : g_none
                assign q_all[b*WIDTH +: WIDTH] = {WIDTH{1'b0}};
            end
        end
    endgenerate
    always @(posedge clk) begin
        bsel_q <= bsel;
        bsel_m <= bsel_q;
    end
    assign data = q_all[bsel_m*WIDTH +: WIDTH];
endmodule

`undef NF_PARAM_ERROR
`default_nettype wire
