// CUDA rasterizer: the triangle setup, coverage, depth test and barycentrics of csrc/cpu/rasterize.cpp (one
// implementation: facecore/raster_common.h; bit-identical results from the same input), as a GPU pipeline:
//   1. setup   : one thread per (image, triangle) counts its screen primitives (1, or 0..kMaxPoly-2 after
//                clipping); an exclusive scan gives offsets; a second pass writes them (primitive + coef)
//   2. binning : primitives are counted into 8x8-pixel tiles (atomics), scanned, then their ids scattered
//   3. raster  : one 64-thread block per tile, one thread per pixel, walks the tile's list; because the
//                depth test is a lexicographic min over (z/w, id), the (atomic) list order does not matter
// Images are processed in chunks sized to a scratch budget and to the grid limits, so large batches never
// exhaust memory nor overflow a launch.
#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <climits>
#include <string>

#include "cuda_common.cuh"
#include "facecore/rasterize.h"

namespace facecore {

namespace {

using namespace raster;
using cuda::blocks_for;
using cuda::check;
using cuda::check_launch;
using cuda::DeviceBuffer;
constexpr int kTile = 8;
constexpr size_t kScratchBudget = size_t(1) << 30;  // bytes of per-chunk scratch (prims, coefs, tile lists)
constexpr const char* kFwd = "rasterize";
constexpr const char* kBwd = "rasterize_backward";

struct GPrim : Edges {
  double zw[3];
  int tri;  // triangle id
  int img;  // image inside the chunk
};

struct GCoef {
  double c0[3], c1[3], s[3];
};

// Exclusive scan of n counts into out[0..n] (out[n] = total); returns the total (synchronises the stream).
long long exclusive_scan(const long long* in, long long* out, long long n, cudaStream_t s) {
  size_t temp = 0;
  check(cub::DeviceScan::ExclusiveSum(nullptr, temp, in, out, n + 1, s), kFwd, "scan (size)");
  DeviceBuffer<unsigned char> tmp(temp, s, kFwd);
  check(cub::DeviceScan::ExclusiveSum(tmp.ptr, temp, in, out, n + 1, s), kFwd, "scan");
  long long total = 0;
  check(cudaMemcpyAsync(&total, out + n, sizeof(long long), cudaMemcpyDeviceToHost, s), kFwd, "copy total");
  check(cudaStreamSynchronize(s), kFwd, "synchronize");
  return total;
}

struct SetupArgs {
  const float* pos;  // [nimg, V, 4] (chunk start)
  const int* tri;    // [T, 3]
  long long V, T;
  int nimg, H, W;
  double G;
  bool cull;
};

// Pass 1 (out == nullptr): count the primitives of each (image, triangle). Pass 2: write them at `offset`.
__global__ void setup_kernel(SetupArgs a, long long* count, const long long* offset, GPrim* out, GCoef* coef) {
  const long long gid = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (gid >= a.nimg * a.T) return;
  const int img = int(gid / a.T);
  const long long t = gid % a.T;
  const int* tr = a.tri + 3 * t;
  long long n = 0;
  if (triangle_ok(tr, a.V)) {  // checked by the caller; never read out of bounds anyway
    double v[3][4];
    for (int k = 0; k < 3; ++k)
      for (int j = 0; j < 4; ++j) v[k][j] = double(a.pos[(img * a.V + tr[k]) * 4 + j]);
    const Setup kind = classify(v, a.G);
    TriCoef tc;
    GPrim* dst = out ? out + offset[gid] : nullptr;
    n = kind == kCulled ? 0 : setup_triangle(v, kind, a.H, a.W, a.G, a.cull, tc, [&](const Edges& e) {
      if (!dst) return;
      GPrim pr;
      static_cast<Edges&>(pr) = e;
      for (int q = 0; q < 3; ++q) pr.zw[q] = tc.zw[q];
      pr.tri = int(t), pr.img = img;
      *dst++ = pr;
    });
    if (out && n) {
      GCoef& c = coef[gid];
      for (int q = 0; q < 3; ++q) c.c0[q] = tc.c0[q], c.c1[q] = tc.c1[q], c.s[q] = tc.s[q];
    }
  }
  if (!out) count[gid] = n;
}

__global__ void bin_kernel(const GPrim* prims, long long P, int ntx, int ntiles, long long* count,
                           const long long* start, long long* fill, int* list) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= P) return;
  const GPrim& pr = prims[i];
  for (int ty = pr.y0 / kTile; ty <= pr.y1 / kTile; ++ty)
    for (int tx = pr.x0 / kTile; tx <= pr.x1 / kTile; ++tx) {
      const long long tile = (long long)pr.img * ntiles + ty * ntx + tx;
      if (!list) atomicAdd(reinterpret_cast<unsigned long long*>(count + tile), 1ULL);
      else list[start[tile] + (long long)atomicAdd(reinterpret_cast<unsigned long long*>(fill + tile), 1ULL)] = int(i);
    }
}

__global__ void raster_kernel(const GPrim* prims, const GCoef* coef, const long long* start, const int* list,
                              long long T, int H, int W, int ntx, int ntiles, float* rast, float* db) {
  const long long tile = blockIdx.x;
  const int img = int(tile / ntiles), tl = int(tile % ntiles);
  const int x = (tl % ntx) * kTile + int(threadIdx.x % kTile), y = (tl / ntx) * kTile + int(threadIdx.x / kTile);
  const long long PX = (long long)x * kSubpixel + kSubpixel / 2, PY = (long long)y * kSubpixel + kSubpixel / 2;
  const PixelGrid g(H, W);
  const double px = g.px(x), py = g.py(y);
  double zbest = __longlong_as_double(0x7ff0000000000000LL);  // +inf
  int ibest = -1;
  for (long long l = start[tile]; l < start[tile + 1]; ++l) {
    const GPrim& pr = prims[list[l]];
    if (!covers(pr, PX, PY)) continue;
    const double z = plane_at(pr.zw, px, py);
    if (nearer(z, pr.tri, zbest, ibest)) zbest = z, ibest = pr.tri;
  }
  if (x >= W || y >= H) return;
  float* o = rast + (((long long)img * H + y) * W + x) * 4;
  float* d = db ? db + (((long long)img * H + y) * W + x) * 4 : nullptr;
  if (ibest < 0) {
    o[0] = o[1] = o[2] = o[3] = 0.f;
    if (d) d[0] = d[1] = d[2] = d[3] = 0.f;
    return;
  }
  const GCoef& tc = coef[(long long)img * T + ibest];
  double u, v, dd[4];
  pixel_barycentrics(tc.c0, tc.c1, tc.s, px, py, g, u, v, d ? dd : nullptr);
  o[0] = float(u), o[1] = float(v), o[2] = float(zbest), o[3] = float(ibest + 1);
  if (d) d[0] = float(dd[0]), d[1] = float(dd[1]), d[2] = float(dd[2]), d[3] = float(dd[3]);
}

__global__ void backward_kernel(const float* pos, const int* tri, long long V, long long T, long long N, int H,
                                int W, const float* rast, const float* grad_rast, float* grad_pos) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= N) return;
  const long long b = i / ((long long)H * W);
  const int y = int((i / W) % H), x = int(i % W);
  const float gu = grad_rast[i * 4], gv = grad_rast[i * 4 + 1], gz = grad_rast[i * 4 + 2];
  const long long t = pixel_triangle(rast + i * 4, T);
  if (t < 0 || (gu == 0.f && gv == 0.f && gz == 0.f)) return;
  const int* tr = tri + 3 * t;
  if (!triangle_ok(tr, V)) return;
  float v[3][4];
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 4; ++j) v[k][j] = pos[(b * V + tr[k]) * 4 + j];
  const float* pv[3] = {v[0], v[1], v[2]};
  float g[3][4] = {};
  const PixelGrid grid(H, W);
  if (!bary_backward<float>(pv, float(grid.px(x)), float(grid.py(y)), gu, gv, gz, g)) return;
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 4; ++j) atomicAdd(grad_pos + (b * V + tr[k]) * 4 + j, g[k][j]);
}

}  // namespace

void rasterize_forward_cuda(const RasterizeParams<float>& p, float* rast, float* db, Stream stream) {
  check_triangle_count<float>(kFwd, p.T_);
  if (p.H > INT_MAX || p.W > INT_MAX) throw Error(std::string(kFwd) + ": the resolution exceeds 2^31 - 1");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int H = int(p.H), W = int(p.W);
  const long long ntx = (W + kTile - 1) / kTile, nty = (H + kTile - 1) / kTile, ntiles = ntx * nty;
  if (ntiles > cuda::kMaxGridX) throw Error(std::string(kFwd) + ": the resolution needs too many 8x8 tiles");
  if (p.B == 0) return;
  if (p.T_ == 0) {
    check(cudaMemsetAsync(rast, 0, sizeof(float) * p.B * H * W * 4, s), kFwd, "memset");
    if (db) check(cudaMemsetAsync(db, 0, sizeof(float) * p.B * H * W * 4, s), kFwd, "memset");
    return;
  }
  // Images per chunk: within the scratch budget (one primitive per triangle, most are not clipped), one
  // raster block per tile within gridDim.x, and primitive ids within int (list entries).
  const long long per_image =
      p.T_ * (long long)(sizeof(GPrim) + sizeof(GCoef) + 2 * sizeof(long long)) + ntiles * 3 * (long long)sizeof(long long);
  long long chunk = std::min<long long>(p.B, std::max<long long>(1, (long long)kScratchBudget / per_image));
  chunk = std::min<long long>(chunk, std::max<long long>(1, cuda::kMaxGridX / ntiles));
  chunk = std::min<long long>(chunk, std::max<long long>(1, INT_MAX / (p.T_ * (kMaxPoly - 2))));
  for (long long b0 = 0; b0 < p.B; b0 += chunk) {
    const int n = int(std::min<long long>(chunk, p.B - b0));
    SetupArgs a{p.pos + b0 * p.V * 4, p.tri, p.V, p.T_, n, H, W, kGuard / double(std::max(H, W)), p.cull_backfaces};
    const long long NT = n * p.T_;
    DeviceBuffer<long long> count(NT + 1, s, kFwd), offset(NT + 1, s, kFwd);
    check(cudaMemsetAsync(count.ptr + NT, 0, sizeof(long long), s), kFwd, "memset");
    const unsigned setup_blocks = blocks_for(NT, 128, kFwd);
    setup_kernel<<<setup_blocks, 128, 0, s>>>(a, count.ptr, nullptr, nullptr, nullptr);
    check_launch(kFwd, "setup (count)");
    const long long P = exclusive_scan(count.ptr, offset.ptr, NT, s);
    DeviceBuffer<GPrim> prims(P, s, kFwd);
    DeviceBuffer<GCoef> coef(NT, s, kFwd);
    if (P) {
      setup_kernel<<<setup_blocks, 128, 0, s>>>(a, nullptr, offset.ptr, prims.ptr, coef.ptr);
      check_launch(kFwd, "setup (emit)");
    }
    const long long NTL = (long long)n * ntiles;
    DeviceBuffer<long long> tcount(NTL + 1, s, kFwd), tstart(NTL + 1, s, kFwd), tfill(NTL, s, kFwd);
    check(cudaMemsetAsync(tcount.ptr, 0, sizeof(long long) * (NTL + 1), s), kFwd, "memset");
    check(cudaMemsetAsync(tfill.ptr, 0, sizeof(long long) * NTL, s), kFwd, "memset");
    if (P) {
      bin_kernel<<<blocks_for(P, 128, kFwd), 128, 0, s>>>(prims.ptr, P, int(ntx), int(ntiles), tcount.ptr, nullptr,
                                                          nullptr, nullptr);
      check_launch(kFwd, "bin (count)");
    }
    const long long L = exclusive_scan(tcount.ptr, tstart.ptr, NTL, s);
    DeviceBuffer<int> list(L, s, kFwd);
    if (L) {
      bin_kernel<<<blocks_for(P, 128, kFwd), 128, 0, s>>>(prims.ptr, P, int(ntx), int(ntiles), nullptr, tstart.ptr,
                                                          tfill.ptr, list.ptr);
      check_launch(kFwd, "bin (fill)");
    }
    raster_kernel<<<unsigned(NTL), kTile * kTile, 0, s>>>(prims.ptr, coef.ptr, tstart.ptr, list.ptr, p.T_, H, W,
                                                          int(ntx), int(ntiles), rast + b0 * H * W * 4,
                                                          db ? db + b0 * H * W * 4 : nullptr);
    check_launch(kFwd, "raster");
  }
}

void rasterize_backward_cuda(const RasterizeParams<float>& p, const float* rast, const float* grad_rast,
                             float* grad_pos, Stream stream) {
  if (p.H > INT_MAX || p.W > INT_MAX) throw Error(std::string(kBwd) + ": the resolution exceeds 2^31 - 1");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  check(cudaMemsetAsync(grad_pos, 0, sizeof(float) * p.B * p.V * 4, s), kBwd, "memset");
  const long long N = p.B * p.H * p.W;
  if (N == 0 || p.T_ == 0) return;
  backward_kernel<<<blocks_for(N, 256, kBwd), 256, 0, s>>>(p.pos, p.tri, p.V, p.T_, N, int(p.H), int(p.W), rast,
                                                           grad_rast, grad_pos);
  check_launch(kBwd, "backward");
}

}  // namespace facecore
