// Rasterization arithmetic written once for the CPU kernels (csrc/cpu/rasterize.cpp, antialias.cpp) and the
// CUDA kernels (kernels/cuda/rasterize.cu, antialias.cu): clipping, snapping, integer edge functions, the
// per-triangle plane coefficients, pixel geometry, barycentrics and their gradient. Spec:
// python/facecore/reference/rasterize.py.
//
// Exactness: from the same input the CPU and the GPU rasterizer give bit-identical rast and db (coverage,
// ids, u, v, z/w). Everything up to the output cast is float64 in which every + - * / is rounded once: no
// fused multiply-add, no fast-math. The CUDA target is compiled with --fmad=false and without
// --use_fast_math, csrc/cpu/rasterize.cpp and antialias.cpp with -ffp-contract=off (CMakeLists.txt); operands
// are associated the same way on both sides (plane_at()). The gradient (bary_backward) is not covered by
// the claim: the GPU computes it in float32.
#pragma once

#include <cstdint>

#include "facecore/common.h"

#if defined(__CUDACC__)
#define FACECORE_HD __host__ __device__ __forceinline__
#else
#define FACECORE_HD inline
#endif

namespace facecore::raster {

constexpr int kSubpixelBits = 8;  // corners snapped to 1/256 pixel
constexpr int64_t kSubpixel = int64_t(1) << kSubpixelBits;
constexpr double kWEps = 1e-6;        // clip plane w >= kWEps
constexpr double kGuard = 2097152.0;  // 2^21: guard band |x/w| <= kGuard / max(H, W)
// A triangle clipped by 6 planes has at most 9 corners; rounding can make a clipped polygon very slightly
// non-convex, so there is room for more, and clip_polygon() gives up (draws nothing) rather than overflow.
constexpr int kMaxPoly = 12;

template <class T>
FACECORE_HD T min_(T a, T b) { return b < a ? b : a; }
template <class T>
FACECORE_HD T max_(T a, T b) { return a < b ? b : a; }

// Finite without libm (true for neither inf nor NaN).
FACECORE_HD bool finite(double x) { return x - x == 0.0; }

// ---------------------------------------------------------------------------------------------------
// Pixel geometry: pixel (x, y) has its centre at NDC px = 2 (x + 0.5) / W - 1, py = 1 - 2 (y + 0.5) / H.
// ---------------------------------------------------------------------------------------------------
struct PixelGrid {
  double inv_w2, inv_h2;  // 2 / W, 2 / H
  FACECORE_HD PixelGrid(int64_t H, int64_t W) : inv_w2(2.0 / double(W)), inv_h2(2.0 / double(H)) {}
  FACECORE_HD double px(int64_t x) const { return (double(x) + 0.5) * inv_w2 - 1.0; }
  FACECORE_HD double py(int64_t y) const { return 1.0 - (double(y) + 0.5) * inv_h2; }
};

// c0 px + c1 py + c2, associated as c0 px + (c1 py + c2) everywhere (the CPU hoists the row term).
FACECORE_HD double plane_at(const double* c, double px, double py) { return c[0] * px + (c[1] * py + c[2]); }

// ---------------------------------------------------------------------------------------------------
// Triangle setup
// ---------------------------------------------------------------------------------------------------

// Signed distance of a clip-space point (x, y, z, w) to clip plane k (>= 0 inside); order as the reference.
FACECORE_HD double plane(const double* v, int k, double G) {
  switch (k) {
    case 0: return v[2] + v[3];
    case 1: return v[3] - kWEps;
    case 2: return G * v[3] - v[0];
    case 3: return G * v[3] + v[0];
    case 4: return G * v[3] - v[1];
    default: return G * v[3] + v[1];
  }
}

// Bit k set when v is outside clip plane k.
FACECORE_HD unsigned outside_bits(const double* v, double G) {
  unsigned m = 0;
  for (int k = 0; k < 6; ++k) m |= unsigned(!(plane(v, k, G) >= 0)) << k;
  return m;
}

enum Setup { kCulled = 0, kInside = 1, kClip = 2 };

// kCulled: all three corners outside one clip plane; kInside: inside them all; kClip: needs clipping.
FACECORE_HD Setup classify(const double v[3][4], double G) {
  const unsigned o0 = outside_bits(v[0], G), o1 = outside_bits(v[1], G), o2 = outside_bits(v[2], G);
  if (o0 & o1 & o2) return kCulled;
  return (o0 | o1 | o2) ? kClip : kInside;
}

FACECORE_HD bool lex_le(const double* p, const double* q) {
  for (int j = 0; j < 4; ++j)
    if (p[j] != q[j]) return p[j] < q[j];
  return true;
}

struct Poly {
  int n = 0;
  double v[kMaxPoly][4];
};

// Sutherland-Hodgman in homogeneous space. Intersections use the edge's endpoints in lexicographic order so
// that two triangles sharing an edge produce bit-identical clipped corners.
FACECORE_HD void clip_polygon(Poly& poly, double G) {
  for (int k = 0; k < 6 && poly.n > 0; ++k) {
    Poly out;
    for (int i = 0; i < poly.n; ++i) {
      const double* p = poly.v[i];
      const double* q = poly.v[(i + 1) % poly.n];
      const double dp = plane(p, k, G), dq = plane(q, k, G);
      if (out.n + 2 > kMaxPoly) {  // never for a convex polygon; see kMaxPoly
        poly.n = 0;
        return;
      }
      if (dp >= 0)
        for (int j = 0; j < 4; ++j) out.v[out.n][j] = p[j];
      if (dp >= 0) ++out.n;
      if ((dp >= 0) != (dq >= 0)) {
        const bool keep = lex_le(p, q);
        const double* a = keep ? p : q;
        const double* b = keep ? q : p;
        const double da = keep ? dp : dq, db = keep ? dq : dp;
        const double t = da / (da - db);
        for (int j = 0; j < 4; ++j) out.v[out.n][j] = a[j] + t * (b[j] - a[j]);
        ++out.n;
      }
    }
    poly = out;
  }
}

// Round half to even, like torch.round. |v| < 2^51 here (guard band).
FACECORE_HD double round_half_even(double v) {
#if defined(__CUDA_ARCH__)
  return rint(v);
#else
  // Adding 1.5 * 2^52 leaves no fraction bits (default rounding mode); no libm call.
  constexpr double kMagic = 6755399441055744.0;
  volatile double t = v + kMagic;  // volatile: the compiler may not fold (v + M) - M back to v
  return t - kMagic;
#endif
}

// Clip-space corner -> snapped screen position in 1/256 pixel (y down).
FACECORE_HD void snap(const double* v, double sx, double sy, int64_t& X, int64_t& Y) {
  X = int64_t(round_half_even((v[0] / v[3] + 1.0) * sx));
  Y = int64_t(round_half_even((1.0 - v[1] / v[3]) * sy));
}

// A snapped screen-space (sub-)triangle: integer edge functions E(X, Y) = a X + b Y + c in 1/256 pixel
// units, positive inside. c includes the fill rule: +1 when a pixel exactly on the edge belongs to this
// triangle (a top or left edge), so "covered" is E > 0 for all three edges. |a|, |b| < 2^30 (guard band).
struct Edges {
  int64_t c[3];
  int32_t a[3], b[3];
  int32_t x0, x1, y0, y1;  // inclusive pixel bounds, inside the image
};

FACECORE_HD int64_t floor_sub(int64_t v) { return v >> kSubpixelBits; }  // arithmetic shift = floor
FACECORE_HD int64_t ceil_sub(int64_t v) { return -((-v) >> kSubpixelBits); }

// Edge functions of the snapped triangle (X, Y); false when it is empty (zero area, culled, off screen).
FACECORE_HD bool setup_edges(const int64_t X[3], const int64_t Y[3], bool cull, int64_t H, int64_t W, Edges& e) {
  const int64_t area = (X[1] - X[0]) * (Y[2] - Y[0]) - (Y[1] - Y[0]) * (X[2] - X[0]);
  if (area == 0) return false;
  if (cull && area > 0) return false;  // y points down: front faces (CCW in NDC) have area < 0
  const int64_t half = kSubpixel / 2;
  const int64_t xmin = min_(X[0], min_(X[1], X[2])), xmax = max_(X[0], max_(X[1], X[2]));
  const int64_t ymin = min_(Y[0], min_(Y[1], Y[2])), ymax = max_(Y[0], max_(Y[1], Y[2]));
  const int64_t x0 = max_<int64_t>(0, ceil_sub(xmin - half)), x1 = min_<int64_t>(W - 1, floor_sub(xmax - half));
  const int64_t y0 = max_<int64_t>(0, ceil_sub(ymin - half)), y1 = min_<int64_t>(H - 1, floor_sub(ymax - half));
  if (x0 > x1 || y0 > y1) return false;
  const int64_t sg = area > 0 ? 1 : -1;
  for (int k = 0; k < 3; ++k) {
    const int s = k, t = (k + 1) % 3;
    const int64_t a = -(Y[t] - Y[s]) * sg, b = (X[t] - X[s]) * sg;
    const int64_t tl = (a > 0 || (a == 0 && b > 0)) ? 1 : 0;
    e.a[k] = int32_t(a), e.b[k] = int32_t(b), e.c[k] = -(a * X[s] + b * Y[s]) + tl;
  }
  e.x0 = int32_t(x0), e.x1 = int32_t(x1), e.y0 = int32_t(y0), e.y1 = int32_t(y1);
  return true;
}

// Whether the pixel centre (PX, PY) (1/256 pixel units) is covered.
FACECORE_HD bool covers(const Edges& e, int64_t PX, int64_t PY) {
  bool in = true;
  for (int k = 0; k < 3; ++k) in &= int64_t(e.a[k]) * PX + int64_t(e.b[k]) * PY + e.c[k] > 0;
  return in;
}

// Depth test: (z, id) is nearer than the best so far (zb, ib); exact ties go to the lower id.
FACECORE_HD bool nearer(double z, int32_t id, double zb, int32_t ib) { return z < zb || (z == zb && id < ib); }

// Per original triangle: the homogeneous edge functions as plane coefficients over (px, py, 1). c0, c1 give
// u, v after division by s. z/w = sum_i z_i c_i / sum_i w_i c_i, and the denominator is the constant
// det[P_0; P_1; P_2] (sum_i (P_i . a)(P_j x P_k) = det a), so z/w is the plane zw: no division per pixel.
struct TriCoef {
  double c0[3], c1[3], s[3], zw[3];
};

FACECORE_HD TriCoef tri_coef(const double v[3][4]) {
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

// Setup of one triangle v (clip space, float64) classified as `kind` (kInside or kClip): calls emit(edges)
// for each of its screen primitives (the triangle itself, or the fan of its clipped polygon), which keep the
// triangle's id, and returns how many. `tc` holds the triangle's coefficients before the first emit (so emit
// may read tc.zw); a triangle whose z/w plane is not finite (degenerate in homogeneous space) draws nothing.
// The kInside case with the corners already snapped (X, Y = snap(v[c])): edges first, since most rejected
// triangles (culled, tiny) never need coefficients. The CPU kernel snaps each vertex once per image and
// calls this directly; setup_triangle snaps per triangle. Same arithmetic, same result. keep(edges) may
// drop the triangle before its coefficients are computed (the CPU's direct path drops triangles that cover
// no pixel centre, which can never win a pixel).
template <class Keep, class Emit>
FACECORE_HD int setup_snapped(const double v[3][4], const int64_t X[3], const int64_t Y[3], int64_t H, int64_t W,
                              bool cull, TriCoef& tc, Keep&& keep, Emit&& emit) {
  Edges e;
  if (!setup_edges(X, Y, cull, H, W, e)) return 0;
  if (!keep(e)) return 0;
  tc = tri_coef(v);
  if (!finite(tc.zw[0] + tc.zw[1] + tc.zw[2])) return 0;
  emit(e);
  return 1;
}

// Snap scale: X = (x/w + 1) * sx, Y = (1 - y/w) * sy in 1/256 pixel.
FACECORE_HD double snap_sx(int64_t W) { return double(W) * double(kSubpixel / 2); }
FACECORE_HD double snap_sy(int64_t H) { return double(H) * double(kSubpixel / 2); }

template <class Emit>
FACECORE_HD int setup_triangle(const double v[3][4], Setup kind, int64_t H, int64_t W, double G, bool cull,
                               TriCoef& tc, Emit&& emit) {
  const double sx = snap_sx(W), sy = snap_sy(H);
  if (kind == kInside) {
    int64_t X[3], Y[3];
    for (int c = 0; c < 3; ++c) snap(v[c], sx, sy, X[c], Y[c]);
    return setup_snapped(v, X, Y, H, W, cull, tc, [](const Edges&) { return true; }, emit);
  }
  if (kind != kClip) return 0;
  tc = tri_coef(v);
  if (!finite(tc.zw[0] + tc.zw[1] + tc.zw[2])) return 0;
  Poly poly;
  poly.n = 3;
  for (int c = 0; c < 3; ++c)
    for (int j = 0; j < 4; ++j) poly.v[c][j] = v[c][j];
  clip_polygon(poly, G);
  if (poly.n < 3) return 0;
  int64_t X[kMaxPoly], Y[kMaxPoly];
  for (int c = 0; c < poly.n; ++c) snap(poly.v[c], sx, sy, X[c], Y[c]);
  int n = 0;
  for (int k = 1; k + 1 < poly.n; ++k) {
    const int64_t tx[3] = {X[0], X[k], X[k + 1]}, ty[3] = {Y[0], Y[k], Y[k + 1]};
    Edges e;
    if (!setup_edges(tx, ty, cull, H, W, e)) continue;
    emit(e);
    ++n;
  }
  return n;
}

// Output of a covered pixel at NDC (px, py): u, v and, when d != nullptr, d = (du/dX, du/dY, dv/dX, dv/dY)
// in pixels (db_i/dpx = (dc_i/dpx - b_i dS/dpx) / S, then NDC -> pixels).
FACECORE_HD void pixel_barycentrics(const double* c0, const double* c1, const double* s, double px, double py,
                                    const PixelGrid& g, double& u, double& v, double* d) {
  const double S = plane_at(s, px, py);
  u = plane_at(c0, px, py) / S, v = plane_at(c1, px, py) / S;
  if (!d) return;
  d[0] = (c0[0] - u * s[0]) / S * g.inv_w2;
  d[1] = -(c0[1] - u * s[1]) / S * g.inv_h2;
  d[2] = (c1[0] - v * s[0]) / S * g.inv_w2;
  d[3] = -(c1[1] - v * s[1]) / S * g.inv_h2;
}

// ---------------------------------------------------------------------------------------------------
// Homogeneous edge functions and the barycentric gradient (rasterize backward, antialias)
// ---------------------------------------------------------------------------------------------------

// c_i = r_j x r_k with r = (x - px w, y - py w); linear in (px, py). pj, pk: clip-space (x, y, z, w).
template <class T>
FACECORE_HD T edge(const T* pj, const T* pk, T px, T py) {
  const T rjx = pj[0] - px * pj[3], rjy = pj[1] - py * pj[3];
  const T rkx = pk[0] - px * pk[3], rky = pk[1] - py * pk[3];
  return rjx * rky - rjy * rkx;
}

// Backward of edge(): accumulate g * dc/d(pj, pk) into gj, gk (each [4]: x, y, z, w).
template <class T>
FACECORE_HD void edge_backward(const T* pj, const T* pk, T px, T py, T g, T* gj, T* gk) {
  const T rjx = pj[0] - px * pj[3], rjy = pj[1] - py * pj[3];
  const T rkx = pk[0] - px * pk[3], rky = pk[1] - py * pk[3];
  const T grjx = g * rky, grjy = -g * rkx, grkx = -g * rjy, grky = g * rjx;
  gj[0] += grjx, gj[1] += grjy, gj[3] -= px * grjx + py * grjy;
  gk[0] += grkx, gk[1] += grky, gk[3] -= px * grkx + py * grky;
}

// Gradient of (u, v, z/w) at NDC (px, py) of triangle (p0, p1, p2) with upstream (gu, gv, gz); accumulates
// into g[3][4]. Returns false (and adds nothing) when the triangle is degenerate there.
template <class T>
FACECORE_HD bool bary_backward(const T* const p[3], T px, T py, T gu, T gv, T gz, T g[3][4]) {
  T c[3];
  for (int i = 0; i < 3; ++i) c[i] = edge(p[(i + 1) % 3], p[(i + 2) % 3], px, py);
  const T S = c[0] + c[1] + c[2];
  if (S == T(0)) return false;
  const T b[3] = {c[0] / S, c[1] / S, c[2] / S};
  const T Wd = b[0] * p[0][3] + b[1] * p[1][3] + b[2] * p[2][3];
  const T Zn = b[0] * p[0][2] + b[1] * p[1][2] + b[2] * p[2][2];
  T gb[3] = {gu, gv, T(0)};
  if (gz != T(0) && Wd != T(0)) {
    const T zw = Zn / Wd;
    for (int i = 0; i < 3; ++i) {
      gb[i] += gz * (p[i][2] - zw * p[i][3]) / Wd;
      g[i][2] += gz * b[i] / Wd;
      g[i][3] -= gz * zw * b[i] / Wd;
    }
  }
  const T gbb = gb[0] * b[0] + gb[1] * b[1] + gb[2] * b[2];
  for (int i = 0; i < 3; ++i) {
    const int j = (i + 1) % 3, k = (i + 2) % 3;
    edge_backward(p[j], p[k], px, py, (gb[i] - gbb) / S, g[j], g[k]);
  }
  return true;
}

// Triangle index of a rast pixel (id channel = triangle id + 1), or -1 for the background and for an id
// outside [0, T) (also NaN): callers never read past the triangle buffer whatever rast holds.
template <class T>
FACECORE_HD int64_t pixel_triangle(const T* r, int64_t NT) {
  const double d = double(r[3]);
  return (d >= 0.5 && d < double(NT) + 0.5) ? int64_t(d + 0.5) - 1 : -1;
}

// Whether triangle t's three indices lie in [0, V) (the GPU kernels skip it otherwise; the entry points have
// already rejected such meshes).
FACECORE_HD bool triangle_ok(const int32_t* t, int64_t V) {
  return t[0] >= 0 && t[0] < V && t[1] >= 0 && t[1] < V && t[2] >= 0 && t[2] < V;
}

}  // namespace facecore::raster
