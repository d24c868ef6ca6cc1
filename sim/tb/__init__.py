"""cocotb testbenches of the hw/rtl module library (run through netfabric.sim.runner)."""
