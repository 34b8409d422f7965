// CUDA rasterizer: the same rules as csrc/cpu/rasterize.cpp (homogeneous clipping, 1/256 snapping, integer
// edge functions with the top-left rule, nearest z/w with ties to the lower id), as a GPU pipeline:
//   1. setup   : one thread per (image, triangle) counts its screen primitives (1, or 0..7 after clipping);
//                an exclusive scan gives offsets; a second pass writes them (primitive + per-triangle coef)
//   2. binning : primitives are counted into 8x8-pixel tiles (atomics), scanned, then their ids scattered
//   3. raster  : one 64-thread block per tile, one thread per pixel, walks the tile's list; because the
//                depth test is a lexicographic min over (z/w, id), the (atomic) list order does not matter
// Images are processed in chunks sized to a scratch budget, so large batches never exhaust memory.
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>
#include <algorithm>
#include <string>

#include "facecore/rasterize.h"

namespace facecore {

namespace {

using namespace raster;
constexpr int kTile = 8;
constexpr int kMaxPoly = 10;
constexpr size_t kScratchBudget = size_t(1) << 30;  // bytes of primitives per chunk of images

struct GPrim {
  double zw[3];
  long long c[3];
  int a[3], b[3];
  int x0, x1, y0, y1;
  int tri;   // triangle id
  int img;   // image inside the chunk
};

struct GCoef {
  double c0[3], c1[3], s[3];
};

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("rasterize (cuda): ") + what + ": " + cudaGetErrorString(e));
}

template <class T>
struct DeviceBuffer {  // stream-ordered scratch allocation
  T* ptr = nullptr;
  cudaStream_t s;
  DeviceBuffer(size_t n, cudaStream_t stream) : s(stream) {
    if (n) check(cudaMallocAsync(reinterpret_cast<void**>(&ptr), n * sizeof(T), s), "cudaMallocAsync");
  }
  ~DeviceBuffer() {
    if (ptr) cudaFreeAsync(ptr, s);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// Exclusive scan of n counts into out[0..n] (out[n] = total); returns the total (synchronises the stream).
long long exclusive_scan(const long long* in, long long* out, long long n, cudaStream_t s) {
  size_t temp = 0;
  check(cub::DeviceScan::ExclusiveSum(nullptr, temp, in, out, n + 1, s), "scan (size)");
  DeviceBuffer<unsigned char> tmp(temp, s);
  check(cub::DeviceScan::ExclusiveSum(tmp.ptr, temp, in, out, n + 1, s), "scan");
  long long total = 0;
  check(cudaMemcpyAsync(&total, out + n, sizeof(long long), cudaMemcpyDeviceToHost, s), "copy total");
  check(cudaStreamSynchronize(s), "synchronize");
  return total;
}

__device__ __forceinline__ double plane(const double* v, int k, double G) {
  switch (k) {
    case 0: return v[2] + v[3];
    case 1: return v[3] - kWEps;
    case 2: return G * v[3] - v[0];
    case 3: return G * v[3] + v[0];
    case 4: return G * v[3] - v[1];
    default: return G * v[3] + v[1];
  }
}

__device__ __forceinline__ unsigned outside_bits(const double* v, double G) {
  unsigned m = 0;
  for (int k = 0; k < 6; ++k) m |= unsigned(!(plane(v, k, G) >= 0)) << k;
  return m;
}

__device__ bool lex_le(const double* p, const double* q) {
  for (int j = 0; j < 4; ++j)
    if (p[j] != q[j]) return p[j] < q[j];
  return true;
}

// Sutherland-Hodgman; the explicit _rn intrinsics keep nvcc from fusing into FMAs, so clipped corners are
// bit-identical to the CPU kernel's.
__device__ int clip_polygon(double (*poly)[4], int n, double G) {
  double out[kMaxPoly][4];
  for (int k = 0; k < 6 && n > 0; ++k) {
    int m = 0;
    for (int i = 0; i < n; ++i) {
      const double* p = poly[i];
      const double* q = poly[(i + 1) % n];
      const double dp = plane(p, k, G), dq = plane(q, k, G);
      if (dp >= 0)
        for (int j = 0; j < 4; ++j) out[m][j] = p[j];
      if (dp >= 0) ++m;
      if ((dp >= 0) != (dq >= 0)) {
        const bool keep = lex_le(p, q);
        const double* a = keep ? p : q;
        const double* b = keep ? q : p;
        const double da = keep ? dp : dq, db = keep ? dq : dp;
        const double t = __ddiv_rn(da, __dsub_rn(da, db));
        for (int j = 0; j < 4; ++j) out[m][j] = __dadd_rn(a[j], __dmul_rn(t, __dsub_rn(b[j], a[j])));
        ++m;
      }
    }
    n = m;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < 4; ++j) poly[i][j] = out[i][j];
  }
  return n;
}

__device__ __forceinline__ void snap(const double* v, double sx, double sy, long long& X, long long& Y) {
  X = (long long)rint(__dmul_rn(__dadd_rn(__ddiv_rn(v[0], v[3]), 1.0), sx));  // rint: half to even
  Y = (long long)rint(__dmul_rn(__dsub_rn(1.0, __ddiv_rn(v[1], v[3])), sy));
}

__device__ bool make_prim(const long long* X, const long long* Y, int tri, bool cull, int H, int W, GPrim& pr) {
  const long long area = (X[1] - X[0]) * (Y[2] - Y[0]) - (Y[1] - Y[0]) * (X[2] - X[0]);
  if (area == 0 || (cull && area > 0)) return false;
  const long long half = kSubpixel / 2;
  const long long xmin = min(X[0], min(X[1], X[2])), xmax = max(X[0], max(X[1], X[2]));
  const long long ymin = min(Y[0], min(Y[1], Y[2])), ymax = max(Y[0], max(Y[1], Y[2]));
  const long long x0 = max(0LL, -((half - xmin) >> kSubpixelBits)), x1 = min((long long)W - 1, (xmax - half) >> kSubpixelBits);
  const long long y0 = max(0LL, -((half - ymin) >> kSubpixelBits)), y1 = min((long long)H - 1, (ymax - half) >> kSubpixelBits);
  if (x0 > x1 || y0 > y1) return false;
  const long long sg = area > 0 ? 1 : -1;
  for (int e = 0; e < 3; ++e) {
    const int s = e, t = (e + 1) % 3;
    const long long a = -(Y[t] - Y[s]) * sg, b = (X[t] - X[s]) * sg;
    const long long tl = (a > 0 || (a == 0 && b > 0)) ? 1 : 0;
    pr.a[e] = int(a), pr.b[e] = int(b), pr.c[e] = -(a * X[s] + b * Y[s]) + tl;
  }
  pr.x0 = int(x0), pr.x1 = int(x1), pr.y0 = int(y0), pr.y1 = int(y1), pr.tri = tri;
  return true;
}

// Coefficients of the original triangle (see csrc/cpu/rasterize.cpp): edge functions and the z/w plane.
__device__ void tri_coef(const double (*v)[4], GCoef& tc, double* zw) {
  double cr[3][3];
  for (int i = 0; i < 3; ++i) {
    const double* pj = v[(i + 1) % 3];
    const double* pk = v[(i + 2) % 3];
    cr[i][0] = pj[1] * pk[3] - pj[3] * pk[1];
    cr[i][1] = pj[3] * pk[0] - pj[0] * pk[3];
    cr[i][2] = pj[0] * pk[1] - pj[1] * pk[0];
  }
  const double det = v[0][3] * cr[0][2] + v[1][3] * cr[1][2] + v[2][3] * cr[2][2];
  for (int q = 0; q < 3; ++q) {
    tc.c0[q] = cr[0][q], tc.c1[q] = cr[1][q], tc.s[q] = cr[0][q] + cr[1][q] + cr[2][q];
    zw[q] = (v[0][2] * cr[0][q] + v[1][2] * cr[1][q] + v[2][2] * cr[2][q]) / det;
  }
}

struct SetupArgs {
  const float* pos;   // [B, V, 4] (chunk start)
  const int* tri;     // [T, 3]
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
  double v[kMaxPoly][4];
  bool bad = false;
  for (int k = 0; k < 3; ++k) {
    const int idx = tr[k];
    bad |= idx < 0 || idx >= a.V;  // validated on the host; never read out of bounds anyway
    for (int j = 0; j < 4; ++j) v[k][j] = bad ? 0.0 : double(a.pos[(img * a.V + (bad ? 0 : idx)) * 4 + j]);
  }
  long long n = 0;
  const unsigned o0 = outside_bits(v[0], a.G), o1 = outside_bits(v[1], a.G), o2 = outside_bits(v[2], a.G);
  if (!bad && !(o0 & o1 & o2)) {
    GCoef tc;
    double zw[3];
    tri_coef(v, tc, zw);
    if (isfinite(zw[0] + zw[1] + zw[2])) {
      const double sx = double(a.W) * (kSubpixel / 2), sy = double(a.H) * (kSubpixel / 2);
      const int np = (o0 | o1 | o2) ? clip_polygon(v, 3, a.G) : 3;
      long long X[kMaxPoly], Y[kMaxPoly];
      for (int c = 0; c < np; ++c) snap(v[c], sx, sy, X[c], Y[c]);
      for (int k = 1; k + 1 < np; ++k) {
        const long long tx[3] = {X[0], X[k], X[k + 1]}, ty[3] = {Y[0], Y[k], Y[k + 1]};
        GPrim pr;
        if (!make_prim(tx, ty, int(t), a.cull, a.H, a.W, pr)) continue;
        if (out) {
          for (int q = 0; q < 3; ++q) pr.zw[q] = zw[q];
          pr.img = img;
          out[offset[gid] + n] = pr;
        }
        ++n;
      }
      if (out && n) coef[gid] = tc;
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
  const double px = (x + 0.5) * (2.0 / W) - 1.0, py = 1.0 - (y + 0.5) * (2.0 / H);
  double zbest = __longlong_as_double(0x7ff0000000000000LL);  // +inf
  int ibest = -1;
  for (long long l = start[tile]; l < start[tile + 1]; ++l) {
    const GPrim& pr = prims[list[l]];
    bool in = true;
    for (int e = 0; e < 3; ++e) in &= (long long)pr.a[e] * PX + (long long)pr.b[e] * PY + pr.c[e] > 0;
    if (!in) continue;
    const double z = pr.zw[0] * px + pr.zw[1] * py + pr.zw[2];
    if (z < zbest || (z == zbest && pr.tri < ibest)) zbest = z, ibest = pr.tri;
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
  const double S = tc.s[0] * px + tc.s[1] * py + tc.s[2];
  const double u = (tc.c0[0] * px + tc.c0[1] * py + tc.c0[2]) / S, v = (tc.c1[0] * px + tc.c1[1] * py + tc.c1[2]) / S;
  o[0] = float(u), o[1] = float(v), o[2] = float(zbest), o[3] = float(ibest + 1);
  if (d) {
    d[0] = float((tc.c0[0] - u * tc.s[0]) / S * (2.0 / W));
    d[1] = float(-(tc.c0[1] - u * tc.s[1]) / S * (2.0 / H));
    d[2] = float((tc.c1[0] - v * tc.s[0]) / S * (2.0 / W));
    d[3] = float(-(tc.c1[1] - v * tc.s[1]) / S * (2.0 / H));
  }
}

__global__ void backward_kernel(const float* pos, const int* tri, long long V, long long T, int B, int H, int W,
                                const float* rast, const float* grad_rast, float* grad_pos) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= (long long)B * H * W) return;
  const int b = int(i / ((long long)H * W));
  const int y = int((i / W) % H), x = int(i % W);
  const float id = rast[i * 4 + 3];
  const float gu = grad_rast[i * 4], gv = grad_rast[i * 4 + 1], gz = grad_rast[i * 4 + 2];
  if (!(id >= 0.5f && id < float(T) + 0.5f) || (gu == 0.f && gv == 0.f && gz == 0.f)) return;
  const long long t = (long long)(id + 0.5f) - 1;
  const int* tr = tri + 3 * t;
  float v[3][4];
  for (int k = 0; k < 3; ++k) {
    if (tr[k] < 0 || tr[k] >= V) return;
    for (int j = 0; j < 4; ++j) v[k][j] = pos[((long long)b * V + tr[k]) * 4 + j];
  }
  const float* pv[3] = {v[0], v[1], v[2]};
  float g[3][4] = {};
  const float px = (x + 0.5f) * (2.f / W) - 1.f, py = 1.f - (y + 0.5f) * (2.f / H);
  if (!bary_backward<float>(pv, px, py, gu, gv, gz, g)) return;
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 4; ++j) atomicAdd(grad_pos + ((long long)b * V + tr[k]) * 4 + j, g[k][j]);
}

inline unsigned blocks(long long n, int threads) { return unsigned((n + threads - 1) / threads); }

}  // namespace

void rasterize_forward_cuda(const RasterizeParams<float>& p, float* rast, float* db, Stream stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int H = int(p.H), W = int(p.W);
  const int ntx = (W + kTile - 1) / kTile, nty = (H + kTile - 1) / kTile, ntiles = ntx * nty;
  if (p.T_ == 0) {
    check(cudaMemsetAsync(rast, 0, sizeof(float) * p.B * H * W * 4, s), "memset");
    if (db) check(cudaMemsetAsync(db, 0, sizeof(float) * p.B * H * W * 4, s), "memset");
    return;
  }
  const long long per_image = p.T_ * (long long)(sizeof(GPrim) + sizeof(GCoef) + 2 * sizeof(long long));
  const int chunk = int(std::max<long long>(1, std::min<long long>(p.B, kScratchBudget / per_image)));
  for (long long b0 = 0; b0 < p.B; b0 += chunk) {
    const int n = int(std::min<long long>(chunk, p.B - b0));
    SetupArgs a{p.pos + b0 * p.V * 4, p.tri, p.V, p.T_, n, H, W, kGuard / double(std::max(H, W)), p.cull_backfaces};
    const long long NT = n * p.T_;
    DeviceBuffer<long long> count(NT + 1, s), offset(NT + 1, s);
    check(cudaMemsetAsync(count.ptr + NT, 0, sizeof(long long), s), "memset");
    setup_kernel<<<blocks(NT, 128), 128, 0, s>>>(a, count.ptr, nullptr, nullptr, nullptr);
    check(cudaGetLastError(), "setup (count)");
    const long long P = exclusive_scan(count.ptr, offset.ptr, NT, s);
    DeviceBuffer<GPrim> prims(P, s);
    DeviceBuffer<GCoef> coef(NT, s);
    if (P) setup_kernel<<<blocks(NT, 128), 128, 0, s>>>(a, nullptr, offset.ptr, prims.ptr, coef.ptr);
    check(cudaGetLastError(), "setup (emit)");
    const long long NTL = (long long)n * ntiles;
    DeviceBuffer<long long> tcount(NTL + 1, s), tstart(NTL + 1, s), tfill(NTL, s);
    check(cudaMemsetAsync(tcount.ptr, 0, sizeof(long long) * (NTL + 1), s), "memset");
    check(cudaMemsetAsync(tfill.ptr, 0, sizeof(long long) * NTL, s), "memset");
    if (P) bin_kernel<<<blocks(P, 128), 128, 0, s>>>(prims.ptr, P, ntx, ntiles, tcount.ptr, nullptr, nullptr, nullptr);
    check(cudaGetLastError(), "bin (count)");
    const long long L = exclusive_scan(tcount.ptr, tstart.ptr, NTL, s);
    DeviceBuffer<int> list(L, s);
    if (L) bin_kernel<<<blocks(P, 128), 128, 0, s>>>(prims.ptr, P, ntx, ntiles, nullptr, tstart.ptr, tfill.ptr, list.ptr);
    check(cudaGetLastError(), "bin (fill)");
    raster_kernel<<<unsigned(NTL), kTile * kTile, 0, s>>>(prims.ptr, coef.ptr, tstart.ptr, list.ptr, p.T_, H, W, ntx,
                                                          ntiles, rast + b0 * H * W * 4, db ? db + b0 * H * W * 4 : nullptr);
    check(cudaGetLastError(), "raster");
  }
}

void rasterize_backward_cuda(const RasterizeParams<float>& p, const float* rast, const float* grad_rast,
                             float* grad_pos, Stream stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  check(cudaMemsetAsync(grad_pos, 0, sizeof(float) * p.B * p.V * 4, s), "memset");
  const long long N = p.B * p.H * p.W;
  if (N == 0 || p.T_ == 0) return;
  backward_kernel<<<blocks(N, 256), 256, 0, s>>>(p.pos, p.tri, p.V, p.T_, int(p.B), int(p.H), int(p.W), rast,
                                                 grad_rast, grad_pos);
  check(cudaGetLastError(), "backward");
}

}  // namespace facecore
