"""One module per family of HW-layer ops; each calls ``define_op`` for its ops.

Adding an op: write its definition in a module here (semantics, cost model, conformance
sample), list the module in ``MODULES``, then register each backend's piece where that backend
lives (``host/`` for cpu and triton, ``hw/rtl_ops.py`` for rtl). See the README.
"""

MODULES = ("mvau", "thresholding", "window", "label_select", "streaming", "elementwise",
           "segments")
