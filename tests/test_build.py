"""The build itself: build_info, the CLI, and the installed C++ package (find_package(facecore))."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import facecore


def test_build_info_keys():
    info = facecore.build_info()
    for key in ("version", "cuda", "cuda_archs", "triton", "threads", "compiler"):
        assert key in info, key
    assert info["version"] == facecore.__version__
    assert isinstance(info["cuda"], bool) and isinstance(info["triton"], bool)
    assert isinstance(info["cuda_archs"], list)
    assert info["cuda"] == bool(info["cuda_archs"])
    assert info["threads"] >= 1


def test_threads_follow_torch():
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert facecore.build_info()["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_cli_info_prints_build():
    out = subprocess.run([sys.executable, "-m", "facecore.cli", "info", "--json"], capture_output=True,
                         text=True, check=True).stdout
    assert '"version"' in out and '"cuda"' in out


CONSUMER_CMAKE = """
cmake_minimum_required(VERSION 3.24)
project(consumer LANGUAGES CXX)
find_package(facecore CONFIG REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE facecore::core)
"""

CONSUMER_MAIN = r"""
#include <cstdio>
#include <facecore/blendshape.h>

int main() {
  // two shapes, three vertices: out = neutral + 0.5 * d0 + 2 * d1
  const float w[2] = {0.5f, 2.0f};
  const float neutral[9] = {0, 0, 0, 1, 1, 1, 2, 2, 2};
  float deltas[18] = {0};
  deltas[0] = 1.0f;       // shape 0 moves vertex 0 in x
  deltas[9 + 8] = 1.0f;   // shape 1 moves vertex 2 in z
  facecore::BlendshapeParams<float> p;
  p.B = 1, p.K = 2, p.V = 3, p.weights = w, p.neutral = neutral, p.deltas = deltas;
  float out[9];
  facecore::blendshape_forward(p, out, facecore::CpuOptions{1});
  for (float x : out) std::printf("%g ", x);
  std::printf("\n");
  return 0;
}
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cpp_consumer_links_installed_package(tmp_path: Path):
    prefix = Path(facecore.cmake_prefix_path())
    if not (prefix / "lib" / "cmake" / "facecore" / "facecoreConfig.cmake").exists():
        pytest.fail(f"the installed package has no CMake config under {prefix}/lib/cmake/facecore")
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(textwrap.dedent(CONSUMER_CMAKE))
    (src / "main.cpp").write_text(CONSUMER_MAIN)
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", src, "-B", build, f"-DCMAKE_PREFIX_PATH={prefix}",
                    "-DCMAKE_BUILD_TYPE=Release"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", build], check=True, capture_output=True)
    out = subprocess.run([build / "consumer"], check=True, capture_output=True, text=True).stdout.split()
    assert [float(x) for x in out] == [0.5, 0, 0, 1, 1, 1, 2, 2, 4]


def test_cli_info_says_when_cuda_is_missing():
    res = subprocess.run([sys.executable, "-m", "facecore.cli", "info"], capture_output=True, text=True,
                         check=True)
    assert "cuda" in res.stdout
    if facecore.build_info()["cuda"]:
        assert "NO CUDA kernels" not in res.stderr
    else:
        assert "NO CUDA kernels" in res.stderr
