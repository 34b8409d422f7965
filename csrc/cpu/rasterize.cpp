// CPU rasterizer: triangle setup once per image (clip, snap, edge functions), binning into 16x16 screen
// tiles, then per-tile coverage and depth test with integer edge functions, OpenMP over tiles.
// Barycentrics and depth come from the original triangle's homogeneous edge functions (rasterize.h).
#include "facecore/rasterize.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "parallel.h"

namespace facecore {

namespace {

using namespace raster;
constexpr int kTile = 16;

// A screen-space (sub-)triangle: snapped integer edge functions E(X, Y) = a X + b Y + c in 1/256 pixel
// units, positive inside. c includes the fill rule: +1 when a pixel exactly on the edge belongs to this
// triangle (a top or left edge), so "covered" is E > 0 for all three edges. |a|, |b| < 2^30 (guard band).
struct Prim {
  double zw[3];  // z/w plane over (px, py, 1), copied from TriCoef: the depth test touches one record
  int64_t c[3];
  int32_t a[3], b[3];
  int32_t x0, x1, y0, y1;  // inclusive pixel bounds, inside the image
  int32_t tri;
};

// Per original triangle: the homogeneous edge functions as plane coefficients over (px, py, 1).
// c0, c1 give u, v after division by s. z/w = sum_i z_i c_i / sum_i w_i c_i, and the denominator is the
// constant det[P_0; P_1; P_2] (sum_i (P_i . a)(P_j x P_k) = det a), so z/w is the plane zw . (px, py, 1):
// no division per pixel.
struct TriCoef {
  double c0[3], c1[3], s[3], zw[3];
};

// Threads worth waking for `work` items: small images stay on one thread (a parallel region costs a
// scheduler round trip, which dominates small calls on a loaded machine).
inline int threads_for(int nthreads, int64_t work, int64_t grain) {
  return int(std::max<int64_t>(1, std::min<int64_t>(nthreads, work / grain)));
}

struct Scratch {
  std::vector<Prim> prims, extra;
  std::vector<TriCoef> coef;
  std::vector<int8_t> kind;
  std::vector<int32_t> order, list;
  std::vector<int64_t> start, fill;
};

inline int64_t floor_div256(int64_t v) { return v >> kSubpixelBits; }  // arithmetic shift = floor
inline int64_t ceil_div256(int64_t v) { return -((-v) >> kSubpixelBits); }

inline double dot3(const double* c, double px, double py) { return c[0] * px + c[1] * py + c[2]; }

bool make_prim(const int64_t X[3], const int64_t Y[3], int32_t tri, bool cull, int64_t H, int64_t W,
               Prim& pr) {
  const int64_t area = (X[1] - X[0]) * (Y[2] - Y[0]) - (Y[1] - Y[0]) * (X[2] - X[0]);
  if (area == 0) return false;
  if (cull && area > 0) return false;  // y points down: front faces (CCW in NDC) have area < 0
  const int64_t half = kSubpixel / 2;
  const int64_t xmin = std::min({X[0], X[1], X[2]}), xmax = std::max({X[0], X[1], X[2]});
  const int64_t ymin = std::min({Y[0], Y[1], Y[2]}), ymax = std::max({Y[0], Y[1], Y[2]});
  const int64_t x0 = std::max<int64_t>(0, ceil_div256(xmin - half));
  const int64_t x1 = std::min<int64_t>(W - 1, floor_div256(xmax - half));
  const int64_t y0 = std::max<int64_t>(0, ceil_div256(ymin - half));
  const int64_t y1 = std::min<int64_t>(H - 1, floor_div256(ymax - half));
  if (x0 > x1 || y0 > y1) return false;
  const int64_t sg = area > 0 ? 1 : -1;
  for (int e = 0; e < 3; ++e) {
    const int s = e, t = (e + 1) % 3;
    const int64_t a = -(Y[t] - Y[s]) * sg, b = (X[t] - X[s]) * sg;
    const int64_t tl = (a > 0 || (a == 0 && b > 0)) ? 1 : 0;
    pr.a[e] = int32_t(a), pr.b[e] = int32_t(b), pr.c[e] = -(a * X[s] + b * Y[s]) + tl;
  }
  pr.x0 = int32_t(x0), pr.x1 = int32_t(x1), pr.y0 = int32_t(y0), pr.y1 = int32_t(y1);
  pr.tri = tri;
  return true;
}

// Signed distance of a clip-space point to clip plane k (>= 0 inside); order matches the reference.
inline double plane(const double* v, int k, double G) {
  switch (k) {
    case 0: return v[2] + v[3];
    case 1: return v[3] - kWEps;
    case 2: return G * v[3] - v[0];
    case 3: return G * v[3] + v[0];
    case 4: return G * v[3] - v[1];
    default: return G * v[3] + v[1];
  }
}

inline bool lex_le(const double* p, const double* q) {
  for (int j = 0; j < 4; ++j)
    if (p[j] != q[j]) return p[j] < q[j];
  return true;
}

struct Poly {
  int n = 0;
  double v[10][4];
};

// Sutherland-Hodgman in homogeneous space. Intersections use the edge's endpoints in lexicographic
// order so that two triangles sharing an edge produce bit-identical clipped corners.
void clip_polygon(Poly& poly, double G) {
  for (int k = 0; k < 6 && poly.n > 0; ++k) {
    Poly out;
    for (int i = 0; i < poly.n; ++i) {
      const double* p = poly.v[i];
      const double* q = poly.v[(i + 1) % poly.n];
      const double dp = plane(p, k, G), dq = plane(q, k, G);
      if (dp >= 0) std::copy(p, p + 4, out.v[out.n++]);
      if ((dp >= 0) != (dq >= 0)) {
        const bool keep = lex_le(p, q);
        const double* a = keep ? p : q;
        const double* b = keep ? q : p;
        const double da = keep ? dp : dq, db = keep ? dq : dp;
        const double t = da / (da - db);
        double* o = out.v[out.n++];
        for (int j = 0; j < 4; ++j) o[j] = a[j] + t * (b[j] - a[j]);
      }
    }
    poly = out;
  }
}

// Round half to even without a libm call: adding 1.5 * 2^52 leaves no fraction bits (|v| < 2^51 here,
// guaranteed by the guard band), in the default rounding mode, exactly like torch.round.
inline double round_even(double v) {
  constexpr double kMagic = 6755399441055744.0;
  volatile double t = v + kMagic;  // volatile: the compiler may not fold (v + M) - M back to v
  return t - kMagic;
}

inline void snap(const double* v, double sx, double sy, int64_t& X, int64_t& Y) {
  X = int64_t(round_even((v[0] / v[3] + 1.0) * sx));
  Y = int64_t(round_even((1.0 - v[1] / v[3]) * sy));
}

// Bit k set when corner v is outside clip plane k (same planes and order as plane()).
inline unsigned outside_bits(const double* v, double G) {
  const double x = v[0], y = v[1], z = v[2], w = v[3], gw = G * w;
  return unsigned(!(z + w >= 0)) | unsigned(!(w - kWEps >= 0)) << 1 | unsigned(!(gw - x >= 0)) << 2 |
         unsigned(!(gw + x >= 0)) << 3 | unsigned(!(gw - y >= 0)) << 4 | unsigned(!(gw + y >= 0)) << 5;
}

template <class T>
TriCoef tri_coef(const double v[3][4]) {
  TriCoef tc;
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
    tc.c0[q] = cr[0][q], tc.c1[q] = cr[1][q];
    tc.s[q] = cr[0][q] + cr[1][q] + cr[2][q];
    tc.zw[q] = (v[0][2] * cr[0][q] + v[1][2] * cr[1][q] + v[2][2] * cr[2][q]) / det;
  }
  return tc;
}

// Setup of one triangle. Returns 0: nothing to draw, 1: one prim written to `pr`, 2: needs clipping.
template <class T>
int setup_simple(const T* pos, const int32_t* t, int64_t H, int64_t W, double G, bool cull, int32_t id,
                 Prim& pr, TriCoef& tc) {
  double v[3][4];
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 4; ++j) v[k][j] = double(pos[int64_t(t[k]) * 4 + j]);
  const unsigned o0 = outside_bits(v[0], G), o1 = outside_bits(v[1], G), o2 = outside_bits(v[2], G);
  if (o0 & o1 & o2) return 0;  // all three corners outside one plane
  if (o0 | o1 | o2) {
    tc = tri_coef<T>(v);
    return std::isfinite(tc.zw[0] + tc.zw[1] + tc.zw[2]) ? 2 : 0;
  }
  const double sx = double(W) * (kSubpixel / 2), sy = double(H) * (kSubpixel / 2);
  int64_t X[3], Y[3];
  for (int c = 0; c < 3; ++c) snap(v[c], sx, sy, X[c], Y[c]);
  if (!make_prim(X, Y, id, cull, H, W, pr)) return 0;
  tc = tri_coef<T>(v);
  std::copy(tc.zw, tc.zw + 3, pr.zw);
  return std::isfinite(tc.zw[0] + tc.zw[1] + tc.zw[2]) ? 1 : 0;
}

template <class T>
void setup_clipped(const T* pos, const int32_t* t, int64_t H, int64_t W, double G, bool cull, int32_t id,
                   const double* zw, std::vector<Prim>& out) {
  Poly poly;
  poly.n = 3;
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 4; ++j) poly.v[k][j] = double(pos[int64_t(t[k]) * 4 + j]);
  clip_polygon(poly, G);
  if (poly.n < 3) return;
  const double sx = double(W) * (kSubpixel / 2), sy = double(H) * (kSubpixel / 2);
  int64_t X[10], Y[10];
  for (int c = 0; c < poly.n; ++c) snap(poly.v[c], sx, sy, X[c], Y[c]);
  for (int k = 1; k + 1 < poly.n; ++k) {
    const int64_t tx[3] = {X[0], X[k], X[k + 1]}, ty[3] = {Y[0], Y[k], Y[k + 1]};
    Prim pr;
    if (make_prim(tx, ty, id, cull, H, W, pr)) {
      std::copy(zw, zw + 3, pr.zw);
      out.push_back(pr);
    }
  }
}

// Coverage + depth test of every binned prim over one tile; zbuf/ibuf hold the nearest z/w and its id.
FACECORE_CPU_DISPATCH
void raster_tile(const Prim* prims, const Prim* extra, int64_t NT, const int32_t* list, int64_t n,
                 int tx0, int ty0, int tx1, int ty1, double inv_w2, double inv_h2, double* zbuf,
                 int32_t* ibuf) {
  for (int64_t l = 0; l < n; ++l) {
    const Prim& pr = list[l] < NT ? prims[list[l]] : extra[list[l] - NT];
    const int xa = std::max<int>(pr.x0, tx0), xb = std::min<int>(pr.x1, tx1);
    const int ya = std::max<int>(pr.y0, ty0), yb = std::min<int>(pr.y1, ty1);
    for (int y = ya; y <= yb; ++y) {
      const int64_t PX = int64_t(xa) * kSubpixel + kSubpixel / 2, PY = int64_t(y) * kSubpixel + kSubpixel / 2;
      int64_t E[3];
      for (int e = 0; e < 3; ++e) E[e] = pr.a[e] * PX + pr.b[e] * PY + pr.c[e];
      const double py = 1.0 - (y + 0.5) * inv_h2;
      const double zrow = pr.zw[1] * py + pr.zw[2];
      double* zb = zbuf + (y - ty0) * kTile - tx0;
      int32_t* ib = ibuf + (y - ty0) * kTile - tx0;
      for (int x = xa; x <= xb; ++x) {
        // branch-free: coverage is close to random at triangle edges
        const double z = pr.zw[0] * ((x + 0.5) * inv_w2 - 1.0) + zrow;
        const bool win = (E[0] > 0) & (E[1] > 0) & (E[2] > 0) & ((z < zb[x]) | ((z == zb[x]) & (pr.tri < ib[x])));
        zb[x] = win ? z : zb[x];
        ib[x] = win ? pr.tri : ib[x];
        E[0] += int64_t(pr.a[0]) * kSubpixel, E[1] += int64_t(pr.a[1]) * kSubpixel,
            E[2] += int64_t(pr.a[2]) * kSubpixel;
      }
    }
  }
}

}  // namespace

void validate_triangles(const char* fn, const int32_t* tri, int64_t T, int64_t V) {
  for (int64_t i = 0; i < 3 * T; ++i)
    if (tri[i] < 0 || tri[i] >= V)
      throw Error(std::string(fn) + ": tri[" + std::to_string(i / 3) + "] has vertex index " +
                  std::to_string(tri[i]) + " outside [0, V=" + std::to_string(V) + ")");
}

template <class T>
void rasterize_forward(const RasterizeParams<T>& p, T* rast, T* db, const CpuOptions& opt) {
  validate_triangles("rasterize", p.tri, p.T_, p.V);
  const int nthreads = cpu::resolve_threads(opt);
  const int64_t H = p.H, W = p.W, NT = p.T_;
  const double G = kGuard / double(std::max(H, W));
  const int ntx = int((W + kTile - 1) / kTile), nty = int((H + kTile - 1) / kTile);
  const int64_t ntiles = int64_t(ntx) * nty;
  // Scratch reused across calls (no page faults per frame): per-triangle prims and coefficients, the
  // prims of clipped triangles, and the tile lists.
  // (thread_local per calling thread; bound to plain references so that OpenMP workers share the caller's.)
  static thread_local Scratch scratch;
  Scratch& sc = scratch;
  auto& prims = sc.prims;
  auto& extra = sc.extra;
  auto& coef = sc.coef;
  auto& kind = sc.kind;
  auto& order = sc.order;
  auto& list = sc.list;
  auto& start = sc.start;
  auto& fill = sc.fill;
  if (int64_t(prims.size()) < NT) prims.resize(NT), coef.resize(NT), kind.resize(NT);
  start.assign(ntiles + 1, 0);
  fill.resize(ntiles);
  const double inv_w2 = 2.0 / double(W), inv_h2 = 2.0 / double(H);
  const int setup_threads = threads_for(nthreads, NT, 2048), tile_threads = threads_for(nthreads, H * W, 4096);

  for (int64_t b = 0; b < p.B; ++b) {
    const T* pos = p.pos + b * p.V * 4;
    // 1. setup, in parallel over triangles; clipped ones go to `extra`, in id order.
#pragma omp parallel for schedule(static) num_threads(setup_threads)
    for (int64_t t = 0; t < NT; ++t)
      kind[t] = int8_t(setup_simple(pos, p.tri + 3 * t, H, W, G, p.cull_backfaces, int32_t(t), prims[t], coef[t]));
    extra.clear();
    order.clear();
    for (int64_t t = 0; t < NT; ++t) {
      if (kind[t] == 1) {
        order.push_back(int32_t(t));
      } else if (kind[t] == 2) {
        const size_t n0 = extra.size();
        setup_clipped(pos, p.tri + 3 * t, H, W, G, p.cull_backfaces, int32_t(t), coef[t].zw, extra);
        for (size_t i = n0; i < extra.size(); ++i) order.push_back(int32_t(NT + int64_t(i)));
      }
    }
    auto prim = [&](int32_t i) -> const Prim& { return i < NT ? prims[i] : extra[i - NT]; };
    // 2. binning: counting sort of (tile, prim) pairs, prims in increasing order inside each tile.
    std::fill(start.begin(), start.end(), 0);
    for (int32_t i : order) {
      const Prim& pr = prim(i);
      for (int ty = pr.y0 / kTile; ty <= pr.y1 / kTile; ++ty)
        for (int tx = pr.x0 / kTile; tx <= pr.x1 / kTile; ++tx) start[int64_t(ty) * ntx + tx + 1]++;
    }
    for (int64_t i = 0; i < ntiles; ++i) start[i + 1] += start[i];
    list.resize(start[ntiles]);
    std::copy(start.begin(), start.end() - 1, fill.begin());
    for (int32_t i : order) {
      const Prim& pr = prim(i);
      for (int ty = pr.y0 / kTile; ty <= pr.y1 / kTile; ++ty)
        for (int tx = pr.x0 / kTile; tx <= pr.x1 / kTile; ++tx) list[fill[int64_t(ty) * ntx + tx]++] = i;
    }
    // 3. per tile: coverage, depth test, then barycentrics of the winners.
    T* out = rast + b * H * W * 4;
    T* dout = db ? db + b * H * W * 4 : nullptr;
#pragma omp parallel for schedule(dynamic, 1) num_threads(tile_threads)
    for (int64_t tile = 0; tile < ntiles; ++tile) {
      double zbuf[kTile * kTile];
      int32_t ibuf[kTile * kTile];
      std::fill(zbuf, zbuf + kTile * kTile, std::numeric_limits<double>::infinity());
      std::fill(ibuf, ibuf + kTile * kTile, -1);
      const int tx0 = int(tile % ntx) * kTile, ty0 = int(tile / ntx) * kTile;
      const int tx1 = std::min<int>(tx0 + kTile, int(W)) - 1, ty1 = std::min<int>(ty0 + kTile, int(H)) - 1;
      raster_tile(prims.data(), extra.data(), NT, list.data() + start[tile], start[tile + 1] - start[tile],
                  tx0, ty0, tx1, ty1, inv_w2, inv_h2, zbuf, ibuf);
      for (int y = ty0; y <= ty1; ++y)
        for (int x = tx0; x <= tx1; ++x) {
          const int slot = (y - ty0) * kTile + (x - tx0);
          T* o = out + (y * W + x) * 4;
          T* d = dout ? dout + (y * W + x) * 4 : nullptr;
          const int32_t id = ibuf[slot];
          if (id < 0) {
            o[0] = o[1] = o[2] = o[3] = T(0);
            if (d) d[0] = d[1] = d[2] = d[3] = T(0);
            continue;
          }
          const TriCoef& tc = coef[id];
          const double px = (x + 0.5) * inv_w2 - 1.0, py = 1.0 - (y + 0.5) * inv_h2;
          const double S = dot3(tc.s, px, py);
          const double u = dot3(tc.c0, px, py) / S, v = dot3(tc.c1, px, py) / S;
          o[0] = T(u), o[1] = T(v), o[2] = T(zbuf[slot]), o[3] = T(id + 1);
          if (d) {  // db_i/dpx = (dc_i/dpx - b_i dS/dpx) / S, then NDC -> pixels
            d[0] = T((tc.c0[0] - u * tc.s[0]) / S * inv_w2);
            d[1] = T(-(tc.c0[1] - u * tc.s[1]) / S * inv_h2);
            d[2] = T((tc.c1[0] - v * tc.s[0]) / S * inv_w2);
            d[3] = T(-(tc.c1[1] - v * tc.s[1]) / S * inv_h2);
          }
        }
    }
  }
}

template <class T>
void rasterize_backward(const RasterizeParams<T>& p, const T* rast, const T* grad_rast, T* grad_pos,
                        const CpuOptions& opt) {
  validate_triangles("rasterize_backward", p.tri, p.T_, p.V);
  const int nthreads = threads_for(cpu::resolve_threads(opt), p.H * p.W, 4096);
  const int64_t H = p.H, W = p.W, V = p.V;
  const double inv_w2 = 2.0 / double(W), inv_h2 = 2.0 / double(H);
  // Per-thread accumulators, reduced in thread order: deterministic for a fixed thread count.
  std::vector<double> acc(size_t(nthreads) * V * 4);
  for (int64_t b = 0; b < p.B; ++b) {
    const T* pos = p.pos + b * V * 4;
    std::fill(acc.begin(), acc.end(), 0.0);
#pragma omp parallel num_threads(nthreads)
    {
      double* g = acc.data() + size_t(omp_get_thread_num()) * V * 4;
#pragma omp for schedule(static)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const int64_t i = ((b * H + y) * W + x) * 4;
          const double id = double(rast[i + 3]);
          const double gu = grad_rast[i], gv = grad_rast[i + 1], gz = grad_rast[i + 2];
          if (!(id >= 0.5 && id < double(p.T_) + 0.5) || (gu == 0 && gv == 0 && gz == 0)) continue;
          const int64_t t = int64_t(id + 0.5) - 1;
          const int32_t* tr = p.tri + 3 * t;
          double v[3][4];
          for (int k = 0; k < 3; ++k)
            for (int j = 0; j < 4; ++j) v[k][j] = double(pos[int64_t(tr[k]) * 4 + j]);
          const double* pv[3] = {v[0], v[1], v[2]};
          double gl[3][4] = {};
          const double px = (x + 0.5) * inv_w2 - 1.0, py = 1.0 - (y + 0.5) * inv_h2;
          if (!bary_backward<double>(pv, px, py, gu, gv, gz, gl)) continue;
          for (int k = 0; k < 3; ++k)
            for (int j = 0; j < 4; ++j) g[int64_t(tr[k]) * 4 + j] += gl[k][j];
        }
    }
    T* out = grad_pos + b * V * 4;
    for (int64_t i = 0; i < V * 4; ++i) {
      double s = 0;
      for (int th = 0; th < nthreads; ++th) s += acc[size_t(th) * V * 4 + i];
      out[i] = T(s);
    }
  }
}

template void rasterize_forward<float>(const RasterizeParams<float>&, float*, float*, const CpuOptions&);
template void rasterize_forward<double>(const RasterizeParams<double>&, double*, double*, const CpuOptions&);
template void rasterize_backward<float>(const RasterizeParams<float>&, const float*, const float*, float*,
                                        const CpuOptions&);
template void rasterize_backward<double>(const RasterizeParams<double>&, const double*, const double*, double*,
                                         const CpuOptions&);

}  // namespace facecore
