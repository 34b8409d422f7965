"""facecore GPU kernels: kernels.triton (Triton, importable as facecore.kernels.triton); kernels/cuda holds the CUDA sources compiled into facecore._C."""
