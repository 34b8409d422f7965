"""Triton kernels, one module per op family; imported lazily by facecore.ops when backend="triton"."""
