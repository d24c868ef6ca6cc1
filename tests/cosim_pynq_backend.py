"""cocotb test module (not collected by pytest): the runtime's `pynq` backend under cocotbpynq.

tests/test_pynq_cosim.py runs it in the simulator with ``NF_COSIM`` = JSON {package, output}:
``pynq`` is cocotbpynq here, so PynqBackend loads the package's .hwh and drives the RTL.
"""

import json
import os
import sys

import cocotbpynq
import numpy as np


def main(dut=None):
    sys.modules["pynq"] = cocotbpynq  # what `import pynq` finds inside the backend
    from netfabric.host.pynq_backend import PynqBackend

    p = json.loads(os.environ["NF_COSIM"])
    backend = PynqBackend(package=p["package"], batch=p.get("batch", 1000))
    x = np.load(os.path.join(p["package"], "dataset_x.npy"))
    np.save(p["output"], backend.run(x))


main = cocotbpynq.synctest(main)
