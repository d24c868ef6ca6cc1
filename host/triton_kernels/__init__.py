"""Triton kernels of the ``triton`` backend, one module per job.

Every kernel takes torch tensors and computes exactly the integers of the op's numpy semantics
(``netfabric/ops/defs``). On a CUDA GPU they compile for it; on a CPU they run only under
Triton's interpreter, which reads ``TRITON_INTERPRET=1`` when these modules are imported.
"""
