"""facecore GPU kernels.

``facecore.kernels.triton`` holds the Triton kernels; ``kernels/cuda`` holds the CUDA sources that are
compiled into ``facecore._C``.
"""
