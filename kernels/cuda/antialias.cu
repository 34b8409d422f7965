// CUDA analytic antialiasing, same rules (and edge functions, raster_common.h) as csrc/cpu/antialias.cpp. Topology on the GPU: the 3T directed
// edges are radix-sorted by their (smaller, larger) vertex key and runs of exactly two become neighbours.
// Forward and the colour gradient gather per pixel (no atomics); the position gradient of a pair is
// added with atomics by the pair's left/top pixel.
#include <cub/device/device_radix_sort.cuh>

#include <climits>
#include <string>

#include "cuda_common.cuh"
#include "facecore/antialias.h"
#include "facecore/rasterize.h"

namespace facecore {

namespace {

using cuda::blocks_for;
using cuda::check;
using cuda::check_launch;
using cuda::DeviceBuffer;
using raster::triangle_ok;

constexpr int kMaxWalk = 4;            // triangles a pair's segment may cross (see csrc/cpu/antialias.cpp)
constexpr unsigned char kNear = 8;     // sil bit 3: a silhouette edge is within kMaxWalk - 1 steps

__global__ void edge_keys_kernel(const int* tri, long long T, unsigned long long* keys, int* vals, int* nbr) {
  const long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (e >= 3 * T) return;
  const int* t = tri + (e / 3) * 3;
  const int k = int(e % 3);
  const unsigned a = unsigned(t[(k + 1) % 3]), b = unsigned(t[(k + 2) % 3]);
  keys[e] = (unsigned long long)min(a, b) << 32 | max(a, b);
  vals[e] = int(e);
  nbr[e] = -1;
}

__global__ void pair_runs_kernel(const unsigned long long* keys, const int* vals, long long n, int* nbr) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i + 1 >= n || keys[i] != keys[i + 1]) return;
  if (i > 0 && keys[i - 1] == keys[i]) return;
  if (i + 2 < n && keys[i + 2] == keys[i]) return;  // non-manifold: leave -1
  nbr[vals[i]] = vals[i + 1], nbr[vals[i + 1]] = vals[i];
}

// Screen-space facing of every (image, triangle); 0 (degenerate: all its edges are silhouettes, and the pair
// walk never reads its corners) for a triangle with an index outside [0, V), which the caller has rejected.
__global__ void orient_kernel(const float* pos, const int* tri, long long V, long long T, long long B,
                              signed char* orient) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= B * T) return;
  const long long b = i / T, t = i % T;
  const float* P = pos + b * V * 4;
  const int* tr = tri + 3 * t;
  if (!triangle_ok(tr, V)) {
    orient[i] = 0;
    return;
  }
  const float* a = P + (long long)tr[0] * 4;
  const float* c1 = P + (long long)tr[1] * 4;
  const float* c2 = P + (long long)tr[2] * 4;
  const double d = double(a[0]) * (double(c1[1]) * c2[3] - double(c1[3]) * c2[1]) -
                   double(a[1]) * (double(c1[0]) * c2[3] - double(c1[3]) * c2[0]) +
                   double(a[3]) * (double(c1[0]) * c2[1] - double(c1[1]) * c2[0]);
  orient[i] = static_cast<signed char>((d > 0) - (d < 0));
}

__global__ void sil_kernel(const signed char* orient, const int* nbr, long long T, long long B, unsigned char* sil) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= B * T) return;
  const long long b = i / T, t = i % T;
  const int o = orient[i];
  unsigned char bits = 0;
  for (int k = 0; k < 3; ++k) {
    const int n = nbr[3 * t + k];
    bits |= (unsigned char)(n < 0 || o == 0 || orient[b * T + n / 3] != o) << k;
  }
  sil[i] = bits ? (unsigned char)(bits | kNear) : 0;
}

// One step of growing the kNear flag to edge neighbours.
__global__ void grow_kernel(const unsigned char* sil, const int* nbr, long long T, long long B, unsigned char* out) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= B * T) return;
  const long long b = i / T, t = i % T;
  bool near = sil[i] & kNear;
  for (int k = 0; k < 3 && !near; ++k) near = nbr[3 * t + k] >= 0 && (sil[b * T + nbr[3 * t + k] / 3] & kNear);
  out[i] = sil[i] | (near ? kNear : 0);
}

struct Pair {
  bool active;
  bool a_front;
  double e;
  long long t;
  int k;
};

__device__ __forceinline__ long long tri_id(const float* r, long long T) {  // 1-based, 0 = background
  return raster::pixel_triangle(r, T) + 1;
}

__device__ Pair eval_pair(const float* rA, const float* rB, double pxA, double pyA, double pxB, double pyB,
                          const float* pos, const int* tri, long long V, long long T, const unsigned char* sil,
                          const signed char* orient, const int* nbr, bool horizontal, double H, double W) {
  Pair q{false, false, 0.0, 0, 0};
  const long long tA = tri_id(rA, T), tB = tri_id(rB, T);
  if (tA == tB) return q;
  const float zA = rA[2], zB = rB[2];
  q.a_front = tA > 0 && (tB == 0 || zA < zB || (zA == zB && tA < tB));
  long long cur = (q.a_front ? tA : tB) - 1;
  if (!(sil[cur] & kNear)) return q;
  const double pxF = q.a_front ? pxA : pxB, pyF = q.a_front ? pyA : pyB;
  const double pxO = q.a_front ? pxB : pxA, pyO = q.a_front ? pyB : pyA;
  for (int step = 0; step < kMaxWalk; ++step) {
    if (!triangle_ok(tri + 3 * cur, V)) return q;  // rejected by the caller; never read out of bounds
    double v[3][4];
    for (int c = 0; c < 3; ++c)
      for (int j = 0; j < 4; ++j) v[c][j] = double(pos[(long long)tri[3 * cur + c] * 4 + j]);
    const double o = orient[cur];
    double best = 1.0;
    int k = -1;
    for (int i = 0; i < 3; ++i) {
      const double n0 = o * raster::edge(v[(i + 1) % 3], v[(i + 2) % 3], pxF, pyF);
      const double n1 = o * raster::edge(v[(i + 1) % 3], v[(i + 2) % 3], pxO, pyO);
      if (n0 >= 0 && n1 < n0) {
        const double e = n0 / (n0 - n1);
        if (e < best) best = e, k = i;
      }
    }
    if (k < 0) return q;
    if ((sil[cur] >> k) & 1) {  // one pair direction per edge (see csrc/cpu/antialias.cpp)
      const double* pj = v[(k + 1) % 3];
      const double* pk = v[(k + 2) % 3];
      const double ax = fabs(pj[1] * pk[3] - pj[3] * pk[1]) * H, ay = fabs(pj[3] * pk[0] - pj[0] * pk[3]) * W;
      if ((ax >= ay) != horizontal) return q;
      q.active = true, q.e = best, q.t = cur, q.k = k;
      return q;
    }
    const int n = nbr[3 * cur + k];
    if (n < 0) return q;
    cur = n / 3;
  }
  return q;
}

struct Args {
  AntialiasParams<float> p;
  const unsigned char* sil;    // [B, T]
  const signed char* orient;   // [B, T]
  const int* nbr;              // [3T] neighbour triangle-edge or -1
};

// mode 0: forward (out = colour + deltas); mode 1: backward (grad_color gather + grad_pos atomics).
template <int mode>
__global__ void pixel_kernel(Args a, const float* grad_out, float* out, float* grad_pos) {
  const AntialiasParams<float>& p = a.p;
  const long long gi = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (gi >= p.B * p.H * p.W) return;
  const long long H = p.H, W = p.W, C = p.C, b = gi / (H * W), i = gi % (H * W), y = i / W, x = i % W;
  const raster::PixelGrid g(H, W);
  const float* rast = p.rast + b * H * W * 4;
  const float* col = p.color + b * H * W * C;
  const float* pos = p.pos + b * p.V * 4;
  const unsigned char* sil = a.sil + b * p.T_;
  const signed char* orient = a.orient + b * p.T_;
  const float* go = mode ? grad_out + b * H * W * C : nullptr;
  float* d = out + gi * C;
  for (long long c = 0; c < C; ++c) d[c] = mode ? go[i * C + c] : col[i * C + c];
  const long long nb[4] = {x + 1 < W ? i + 1 : -1, x > 0 ? i - 1 : -1, y + 1 < H ? i + W : -1, y > 0 ? i - W : -1};
  const long long dx[4] = {1, -1, 0, 0}, dy[4] = {0, 0, 1, -1};
  const long long self_id = tri_id(rast + i * 4, p.T_);
  for (int n = 0; n < 4; ++n) {
    if (nb[n] < 0 || tri_id(rast + nb[n] * 4, p.T_) == self_id) continue;
    const bool self_a = n % 2 == 0;
    const long long ia = self_a ? i : nb[n], ib = self_a ? nb[n] : i;
    const long long xa = self_a ? x : x + dx[n], ya = self_a ? y : y + dy[n];
    const long long xb = self_a ? x + dx[n] : x, yb = self_a ? y + dy[n] : y;
    const double pxA = g.px(xa), pyA = g.py(ya), pxB = g.px(xb), pyB = g.py(yb);
    const Pair q = eval_pair(rast + ia * 4, rast + ib * 4, pxA, pyA, pxB, pyB, pos, p.tri, p.V, p.T_, sil, orient,
                             a.nbr, n < 2, double(H), double(W));
    if (!q.active) continue;
    const long long f = q.a_front ? ia : ib, o = q.a_front ? ib : ia;
    const bool far = q.e > 0.5;
    const double m = far ? q.e - 0.5 : 0.5 - q.e;
    if (mode == 0) {
      const bool self_f = self_a == q.a_front;
      if (far && !self_f)
        for (long long c = 0; c < C; ++c) d[c] += float(m) * (col[f * C + c] - col[o * C + c]);
      else if (!far && self_f)
        for (long long c = 0; c < C; ++c) d[c] += float(m) * (col[o * C + c] - col[f * C + c]);
      continue;
    }
    const long long target = far ? o : f;
    const float* gX = go + target * C;
    const float sgn = (i == target) ? -1.f : 1.f;
    for (long long c = 0; c < C; ++c) d[c] += sgn * float(m) * gX[c];
    if (!self_a) continue;
    double dlde = 0;
    for (long long c = 0; c < C; ++c) dlde += double(gX[c]) * (double(col[f * C + c]) - double(col[o * C + c]));
    if (dlde == 0) continue;
    const int* tr = p.tri + 3 * q.t;
    const int j = (q.k + 1) % 3, k = (q.k + 2) % 3;
    double vj[4], vk[4], gj[4] = {0, 0, 0, 0}, gk[4] = {0, 0, 0, 0};
    for (int c = 0; c < 4; ++c) vj[c] = double(pos[(long long)tr[j] * 4 + c]), vk[c] = double(pos[(long long)tr[k] * 4 + c]);
    const double pxF = q.a_front ? pxA : pxB, pyF = q.a_front ? pyA : pyB;
    const double pxO = q.a_front ? pxB : pxA, pyO = q.a_front ? pyB : pyA;
    const double cF = raster::edge(vj, vk, pxF, pyF), cO = raster::edge(vj, vk, pxO, pyO);
    const double den = cF - cO;
    raster::edge_backward(vj, vk, pxF, pyF, -cO / (den * den) * dlde, gj, gk);
    raster::edge_backward(vj, vk, pxO, pyO, cF / (den * den) * dlde, gj, gk);
    float* gp = grad_pos + b * p.V * 4;
    for (int c = 0; c < 4; ++c) {
      atomicAdd(gp + (long long)tr[j] * 4 + c, float(gj[c]));
      atomicAdd(gp + (long long)tr[k] * 4 + c, float(gk[c]));
    }
  }
}

// Topology and silhouette bits for every (image, triangle), kept alive for the pixel kernels.
struct Silhouettes {
  DeviceBuffer<int> nbr;
  DeviceBuffer<signed char> orient;
  DeviceBuffer<unsigned char> sil, tmp;
  Silhouettes(const AntialiasParams<float>& p, cudaStream_t s, const char* fn)
      : nbr(3 * p.T_, s, fn), orient(p.B * p.T_, s, fn), sil(p.B * p.T_, s, fn), tmp(p.B * p.T_, s, fn) {
    const long long E = 3 * p.T_, BT = p.B * p.T_;
    DeviceBuffer<unsigned long long> keys(E, s, fn), keys2(E, s, fn);
    DeviceBuffer<int> vals(E, s, fn), vals2(E, s, fn);
    edge_keys_kernel<<<blocks_for(E, 256, fn), 256, 0, s>>>(p.tri, p.T_, keys.ptr, vals.ptr, nbr.ptr);
    check_launch(fn, "edge keys");
    size_t temp = 0;
    check(cub::DeviceRadixSort::SortPairs(nullptr, temp, keys.ptr, keys2.ptr, vals.ptr, vals2.ptr, E, 0, 64, s), fn,
          "sort (size)");
    DeviceBuffer<unsigned char> scratch(temp, s, fn);
    check(cub::DeviceRadixSort::SortPairs(scratch.ptr, temp, keys.ptr, keys2.ptr, vals.ptr, vals2.ptr, E, 0, 64, s),
          fn, "sort");
    pair_runs_kernel<<<blocks_for(E, 256, fn), 256, 0, s>>>(keys2.ptr, vals2.ptr, E, nbr.ptr);
    check_launch(fn, "pair runs");
    const unsigned bt_blocks = blocks_for(BT, 256, fn);
    orient_kernel<<<bt_blocks, 256, 0, s>>>(p.pos, p.tri, p.V, p.T_, p.B, orient.ptr);
    check_launch(fn, "orientation");
    sil_kernel<<<bt_blocks, 256, 0, s>>>(orient.ptr, nbr.ptr, p.T_, p.B, sil.ptr);
    check_launch(fn, "silhouettes");
    for (int step = 1; step < kMaxWalk; ++step) {
      grow_kernel<<<bt_blocks, 256, 0, s>>>(sil.ptr, nbr.ptr, p.T_, p.B, tmp.ptr);
      check_launch(fn, "grow");
      check(cudaMemcpyAsync(sil.ptr, tmp.ptr, BT, cudaMemcpyDeviceToDevice, s), fn, "copy");
    }
  }
};

// Triangle count (float32 ids) and edge ids (3 t + k, int).
void check_mesh(const char* fn, long long T) {
  check_triangle_count<float>(fn, T);
  if (3 * T > INT_MAX) throw Error(std::string(fn) + ": too many triangles for int32 edge ids");
}

}  // namespace

void antialias_forward_cuda(const AntialiasParams<float>& p, float* out, Stream stream) {
  const char* fn = "antialias";
  check_mesh(fn, p.T_);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const long long N = p.B * p.H * p.W;
  if (N == 0) return;
  if (p.T_ == 0) {
    check(cudaMemcpyAsync(out, p.color, sizeof(float) * N * p.C, cudaMemcpyDeviceToDevice, s), fn, "copy");
    return;
  }
  Silhouettes sh(p, s, fn);
  pixel_kernel<0><<<blocks_for(N, 256, fn), 256, 0, s>>>(Args{p, sh.sil.ptr, sh.orient.ptr, sh.nbr.ptr}, nullptr,
                                                         out, nullptr);
  check_launch(fn, "forward");
}

void antialias_backward_cuda(const AntialiasParams<float>& p, const float* grad_out, float* grad_color,
                             float* grad_pos, Stream stream) {
  const char* fn = "antialias_backward";
  check_mesh(fn, p.T_);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const long long N = p.B * p.H * p.W;
  check(cudaMemsetAsync(grad_pos, 0, sizeof(float) * p.B * p.V * 4, s), fn, "memset");
  if (N == 0) return;
  if (p.T_ == 0) {
    check(cudaMemcpyAsync(grad_color, grad_out, sizeof(float) * N * p.C, cudaMemcpyDeviceToDevice, s), fn, "copy");
    return;
  }
  Silhouettes sh(p, s, fn);
  pixel_kernel<1><<<blocks_for(N, 256, fn), 256, 0, s>>>(Args{p, sh.sil.ptr, sh.orient.ptr, sh.nbr.ptr}, grad_out,
                                                         grad_color, grad_pos);
  check_launch(fn, "backward");
}

}  // namespace facecore
