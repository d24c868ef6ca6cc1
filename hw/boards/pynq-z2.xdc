# TUL PYNQ-Z2 (xc7z020clg400-1): pins of the netfabric board shell (hw/flow/shell.py).
# Port names are the shell's; the board's own names are in the comments.

# 125 MHz PL oscillator (sysclk). The core clock comes from a PLLE2_BASE fed by this pin;
# Vivado derives the generated clock from it.
set_property -dict {PACKAGE_PIN H16 IOSTANDARD LVCMOS33} [get_ports clk_osc]
create_clock -name clk_osc -period 8.000 [get_ports clk_osc]

# 4 LEDs, active high (led[3:0]).
set_property -dict {PACKAGE_PIN R14 IOSTANDARD LVCMOS33} [get_ports {led[0]}]
set_property -dict {PACKAGE_PIN P14 IOSTANDARD LVCMOS33} [get_ports {led[1]}]
set_property -dict {PACKAGE_PIN N16 IOSTANDARD LVCMOS33} [get_ports {led[2]}]
set_property -dict {PACKAGE_PIN M14 IOSTANDARD LVCMOS33} [get_ports {led[3]}]
