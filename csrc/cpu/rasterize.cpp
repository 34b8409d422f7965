// CPU rasterizer: per image, each vertex classified and snapped once, triangle setup (clip, edge functions:
// raster_common.h, shared with the CUDA kernel), then coverage and depth test with integer edge functions.
// OpenMP over images when the batch has enough of them: each thread draws whole images, every triangle
// straight into an image-sized depth buffer (the direct path). Else threads inside each image: setup in
// parallel over triangles, binning into 16x16 screen tiles, tiles in parallel (the binned path). The nearest
// (z/w, id) wins a pixel whatever the drawing order, so both paths give the same bits. Barycentrics and depth
// come from the original triangle's homogeneous edge functions (rasterize.h).
#include "facecore/rasterize.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "parallel.h"
#include "scratch.h"

namespace facecore {

namespace {

using namespace raster;
constexpr int kTile = 16;

// A screen primitive: a (sub-)triangle's edge functions (raster_common.h), its triangle's z/w plane copied
// from TriCoef (the depth test touches one record) and the triangle id.
struct Prim : Edges {
  double zw[3];
  int32_t tri;
};

// Threads worth waking for `work` items: small images stay on one thread (a parallel region costs a
// scheduler round trip, which dominates small calls on a loaded machine).
inline int threads_for(int nthreads, int64_t work, int64_t grain) {
  return int(std::max<int64_t>(1, std::min<int64_t>(nthreads, work / grain)));
}

// The direct path's depth buffer is the whole image (12 bytes a pixel). On a 2-core Xeon it beat the binned
// path at every size measured (decimated ICT mesh, 112^2 to 1536^2: 1.1x to 1.5x, one thread); above this
// size the binned path stays, so that the per-thread scratch stays small.
constexpr int64_t kDirectMaxPixels = int64_t(1024) * 1024;

struct Scratch {
  std::vector<Prim> prims, extra;
  std::vector<TriCoef> coef;
  std::vector<int8_t> kind;
  std::vector<uint8_t> outcode;   // per vertex: outside_bits
  std::vector<int64_t> snapped;   // per vertex: (X, Y) snapped corner, valid where outcode == 0
  std::vector<int32_t> order, list;
  std::vector<int64_t> start, fill;
  std::vector<double> zbuf;       // direct path: per pixel, the nearest z/w so far
  std::vector<int32_t> ibuf;      // ... and its triangle id (-1: none)
  size_t bytes() const {
    return cpu::capacity_bytes(prims, extra, coef, kind, outcode, snapped, order, list, start, fill, zbuf,
                               ibuf);
  }
};

template <class T>
inline void load_triangle(const T* pos, const int32_t* t, double v[3][4]) {
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 4; ++j) v[k][j] = double(pos[int64_t(t[k]) * 4 + j]);
}

// Coverage + depth test of one prim over pixels [xa, xb] x [ya, yb]; pixel (x, y) keeps its nearest z/w and
// id at zbuf[y * stride + x], ibuf[...]. Same values as raster::covers / plane_at / nearer, with the edge
// functions stepped incrementally (exact integers) and the row term of the z/w plane hoisted (the
// association plane_at uses).
inline void draw_rows(const Edges& pr, const double* zw, int32_t tri, int xa, int xb, int ya, int yb,
                      const PixelGrid& g, double* zbuf, int32_t* ibuf, int64_t stride) {
  for (int y = ya; y <= yb; ++y) {
    const int64_t PX = int64_t(xa) * kSubpixel + kSubpixel / 2, PY = int64_t(y) * kSubpixel + kSubpixel / 2;
    int64_t E[3];
    for (int e = 0; e < 3; ++e) E[e] = pr.a[e] * PX + pr.b[e] * PY + pr.c[e];
    const double zrow = zw[1] * g.py(y) + zw[2];
    double* zb = zbuf + y * stride;
    int32_t* ib = ibuf + y * stride;
    for (int x = xa; x <= xb; ++x) {
      // branch-free: coverage is close to random at triangle edges
      const double z = zw[0] * g.px(x) + zrow;
      const bool win = (E[0] > 0) & (E[1] > 0) & (E[2] > 0) & ((z < zb[x]) | ((z == zb[x]) & (tri < ib[x])));
      zb[x] = win ? z : zb[x];
      ib[x] = win ? tri : ib[x];
      E[0] += int64_t(pr.a[0]) * kSubpixel, E[1] += int64_t(pr.a[1]) * kSubpixel,
          E[2] += int64_t(pr.a[2]) * kSubpixel;
    }
  }
}

// Every binned prim over one tile; zbuf/ibuf [kTile * kTile] hold the nearest z/w and its id.
FACECORE_CPU_DISPATCH
void raster_tile(const Prim* prims, const Prim* extra, int64_t NT, const int32_t* list, int64_t n,
                 int tx0, int ty0, int tx1, int ty1, const PixelGrid& g, double* zbuf, int32_t* ibuf) {
  for (int64_t l = 0; l < n; ++l) {
    const Prim& pr = list[l] < NT ? prims[list[l]] : extra[list[l] - NT];
    draw_rows(pr, pr.zw, pr.tri, std::max<int>(pr.x0, tx0), std::min<int>(pr.x1, tx1), std::max<int>(pr.y0, ty0),
              std::min<int>(pr.y1, ty1), g, zbuf - ty0 * kTile - tx0, ibuf - ty0 * kTile - tx0, kTile);
  }
}

// One prim over the whole image (the direct path; zbuf/ibuf [H * W]).
FACECORE_CPU_DISPATCH
void draw_prim(const Edges& e, const double* zw, int32_t tri, const PixelGrid& g, int64_t W, double* zbuf,
               int32_t* ibuf) {
  draw_rows(e, zw, tri, e.x0, e.x1, e.y0, e.y1, g, zbuf, ibuf, W);
}

// Whether the prim covers any pixel centre of its bounding box (most triangles of a dense mesh drawn small
// cover one or two pixels, many none): a triangle that covers none can never win a pixel.
inline bool covers_any(const Edges& e) {
  for (int y = e.y0; y <= e.y1; ++y) {
    const int64_t PX = int64_t(e.x0) * kSubpixel + kSubpixel / 2, PY = int64_t(y) * kSubpixel + kSubpixel / 2;
    int64_t E[3];
    for (int k = 0; k < 3; ++k) E[k] = e.a[k] * PX + e.b[k] * PY + e.c[k];
    for (int x = e.x0; x <= e.x1; ++x) {
      if ((E[0] > 0) & (E[1] > 0) & (E[2] > 0)) return true;
      for (int k = 0; k < 3; ++k) E[k] += int64_t(e.a[k]) * kSubpixel;
    }
  }
  return false;
}

// keep() for setup_snapped: a triangle that covers no pixel centre is dropped; one that does has its corners
// read into v (setup_snapped computes its coefficients from v right after keep() says yes), so the corners
// of the many triangles that cover nothing are never read.
template <class T>
auto keep_covering(const T* pos, const int32_t* tr, double (&v)[3][4]) {
  return [pos, tr, &v](const Edges& e) {
    if (!covers_any(e)) return false;
    load_triangle(pos, tr, v);
    return true;
  };
}

// rast (and db) of one covered or empty pixel from the depth test's winner.
template <class T>
inline void write_pixel(T* o, T* d, int32_t id, double z, const std::vector<TriCoef>& coef, const PixelGrid& g,
                        int x, int y) {
  if (id < 0) {
    o[0] = o[1] = o[2] = o[3] = T(0);
    if (d) d[0] = d[1] = d[2] = d[3] = T(0);
    return;
  }
  const TriCoef& tc = coef[id];
  double u, v, dd[4];
  pixel_barycentrics(tc.c0, tc.c1, tc.s, g.px(x), g.py(y), g, u, v, d ? dd : nullptr);
  o[0] = T(u), o[1] = T(v), o[2] = T(z), o[3] = T(id + 1);
  if (d) d[0] = T(dd[0]), d[1] = T(dd[1]), d[2] = T(dd[2]), d[3] = T(dd[3]);
}

}  // namespace

void validate_triangles(const char* fn, const int32_t* tri, int64_t T, int64_t V) {
  for (int64_t i = 0; i < 3 * T; ++i)
    if (tri[i] < 0 || tri[i] >= V)
      throw Error(std::string(fn) + ": tri[" + std::to_string(i / 3) + "] has vertex index " +
                  std::to_string(tri[i]) + " outside [0, V=" + std::to_string(V) + ")");
}

namespace {

// The direct path (one thread, the whole image): every triangle in id order, straight into the image's depth
// buffer; a triangle that covers no pixel centre is dropped before its coefficients. Needs sc.outcode and
// sc.snapped from the vertex pass.
template <class T>
void rasterize_direct(const RasterizeParams<T>& p, const T* pos, T* out, T* dout, Scratch& sc, const PixelGrid& g) {
  const int64_t H = p.H, W = p.W, NT = p.T_;
  const double G = kGuard / double(std::max(H, W));
  auto& coef = sc.coef;
  sc.zbuf.assign(H * W, std::numeric_limits<double>::infinity());
  sc.ibuf.assign(H * W, -1);
  double* zbuf = sc.zbuf.data();
  int32_t* ibuf = sc.ibuf.data();
  for (int64_t t = 0; t < NT; ++t) {
    const int32_t* tr = p.tri + 3 * t;
    const unsigned o0 = sc.outcode[tr[0]], o1 = sc.outcode[tr[1]], o2 = sc.outcode[tr[2]];
    if (o0 & o1 & o2) continue;
    double v[3][4];
    auto draw = [&](const Edges& e) { draw_prim(e, coef[t].zw, int32_t(t), g, W, zbuf, ibuf); };
    if (o0 | o1 | o2) {
      load_triangle(pos, tr, v);
      setup_triangle(v, kClip, H, W, G, p.cull_backfaces, coef[t], draw);
      continue;
    }
    const int64_t X[3] = {sc.snapped[2 * tr[0]], sc.snapped[2 * tr[1]], sc.snapped[2 * tr[2]]};
    const int64_t Y[3] = {sc.snapped[2 * tr[0] + 1], sc.snapped[2 * tr[1] + 1], sc.snapped[2 * tr[2] + 1]};
    setup_snapped(v, X, Y, H, W, p.cull_backfaces, coef[t], keep_covering(pos, tr, v), draw);
  }
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const int64_t i = y * W + x;
      write_pixel(out + i * 4, dout ? dout + i * 4 : nullptr, ibuf[i], zbuf[i], coef, g, x, y);
    }
}

// One image: pos [V, 4] -> out [H, W, 4] (and dout), `nthreads` threads inside the image.
template <class T>
void rasterize_image(const RasterizeParams<T>& p, const T* pos, T* out, T* dout, Scratch& sc, int nthreads) {
  const int64_t H = p.H, W = p.W, NT = p.T_, V = p.V;
  const double G = kGuard / double(std::max(H, W));
  const int ntx = int((W + kTile - 1) / kTile), nty = int((H + kTile - 1) / kTile);
  const int64_t ntiles = int64_t(ntx) * nty;
  auto& prims = sc.prims;
  auto& extra = sc.extra;
  auto& coef = sc.coef;
  auto& kind = sc.kind;
  auto& outcode = sc.outcode;
  auto& snapped = sc.snapped;
  auto& order = sc.order;
  auto& list = sc.list;
  auto& start = sc.start;
  auto& fill = sc.fill;
  if (int64_t(prims.size()) < NT) prims.resize(NT), coef.resize(NT), kind.resize(NT);
  if (int64_t(outcode.size()) < V) outcode.resize(V), snapped.resize(2 * V);
  start.assign(ntiles + 1, 0);
  fill.resize(ntiles);
  const PixelGrid g(H, W);
  // (the vertex pass is ~20 ns a vertex: only a large mesh is worth waking a second thread for)
  const int vertex_threads = threads_for(nthreads, V, 32768), setup_threads = threads_for(nthreads, NT, 2048),
            tile_threads = threads_for(nthreads, H * W, 4096);
  const double sx = snap_sx(W), sy = snap_sy(H);
  // 1. per vertex (each is shared by ~6 triangles): clip outcode, and the snapped corner when inside.
#pragma omp parallel for schedule(static) num_threads(vertex_threads)
  for (int64_t i = 0; i < V; ++i) {
    double v[4];
    for (int j = 0; j < 4; ++j) v[j] = double(pos[i * 4 + j]);
    outcode[i] = uint8_t(outside_bits(v, G));
    if (outcode[i] == 0) snap(v, sx, sy, snapped[2 * i], snapped[2 * i + 1]);
  }
  if (nthreads == 1 && H * W <= kDirectMaxPixels) {
    rasterize_direct(p, pos, out, dout, sc, g);
    return;
  }
  // 2. setup, in parallel over triangles (classify as raster::classify, from the outcodes): a triangle inside
  //    the clip volume and covering a pixel centre writes its prim in place (kind 1); one that needs clipping
  //    (kind 2) is set up in the serial pass below, its prims going to `extra` in id order.
#pragma omp parallel for schedule(static) num_threads(setup_threads)
  for (int64_t t = 0; t < NT; ++t) {
    const int32_t* tr = p.tri + 3 * t;
    const unsigned o0 = outcode[tr[0]], o1 = outcode[tr[1]], o2 = outcode[tr[2]];
    if (o0 & o1 & o2) {
      kind[t] = int8_t(kCulled);
      continue;
    }
    if (o0 | o1 | o2) {
      kind[t] = int8_t(kClip);
      continue;
    }
    const int64_t X[3] = {snapped[2 * tr[0]], snapped[2 * tr[1]], snapped[2 * tr[2]]};
    const int64_t Y[3] = {snapped[2 * tr[0] + 1], snapped[2 * tr[1] + 1], snapped[2 * tr[2] + 1]};
    double v[3][4];
    Prim& pr = prims[t];
    kind[t] = int8_t(setup_snapped(v, X, Y, H, W, p.cull_backfaces, coef[t], keep_covering(pos, tr, v),
                                   [&](const Edges& e) {
                                     static_cast<Edges&>(pr) = e;
                                     std::copy(coef[t].zw, coef[t].zw + 3, pr.zw);
                                     pr.tri = int32_t(t);
                                   }));
  }
  extra.clear();
  order.clear();
  for (int64_t t = 0; t < NT; ++t) {
    if (kind[t] == 1) {
      order.push_back(int32_t(t));
    } else if (kind[t] == 2) {
      double v[3][4];
      load_triangle(pos, p.tri + 3 * t, v);
      setup_triangle(v, kClip, H, W, G, p.cull_backfaces, coef[t], [&](const Edges& e) {
        Prim pr;
        static_cast<Edges&>(pr) = e;
        std::copy(coef[t].zw, coef[t].zw + 3, pr.zw);
        pr.tri = int32_t(t);
        order.push_back(int32_t(NT + int64_t(extra.size())));
        extra.push_back(pr);
      });
    }
  }
  auto prim = [&](int32_t i) -> const Prim& { return i < NT ? prims[i] : extra[i - NT]; };
  // 3. binning: counting sort of (tile, prim) pairs, prims in increasing order inside each tile.
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
  // 4. per tile: coverage, depth test, then barycentrics of the winners.
#pragma omp parallel for schedule(dynamic, 1) num_threads(tile_threads)
  for (int64_t tile = 0; tile < ntiles; ++tile) {
    double zbuf[kTile * kTile];
    int32_t ibuf[kTile * kTile];
    std::fill(zbuf, zbuf + kTile * kTile, std::numeric_limits<double>::infinity());
    std::fill(ibuf, ibuf + kTile * kTile, -1);
    const int tx0 = int(tile % ntx) * kTile, ty0 = int(tile / ntx) * kTile;
    const int tx1 = std::min<int>(tx0 + kTile, int(W)) - 1, ty1 = std::min<int>(ty0 + kTile, int(H)) - 1;
    raster_tile(prims.data(), extra.data(), NT, list.data() + start[tile], start[tile + 1] - start[tile], tx0,
                ty0, tx1, ty1, g, zbuf, ibuf);
    for (int y = ty0; y <= ty1; ++y)
      for (int x = tx0; x <= tx1; ++x) {
        const int slot = (y - ty0) * kTile + (x - tx0);
        write_pixel(out + (y * W + x) * 4, dout ? dout + (y * W + x) * 4 : nullptr, ibuf[slot], zbuf[slot], coef, g,
                    x, y);
      }
  }
}

// Scratch reused across calls (no page faults per frame): per-vertex snaps, per-triangle prims and
// coefficients, the prims of clipped triangles, and the tile lists; released after a call that made it big
// (scratch.h). One set per thread that rasterizes whole images.
Scratch& thread_scratch() {
  static thread_local Scratch scratch;
  return scratch;
}

}  // namespace

template <class T>
void rasterize_forward(const RasterizeParams<T>& p, T* rast, T* db, const CpuOptions& opt) {
  check_triangle_count<T>("rasterize", p.T_);
  validate_triangles("rasterize", p.tri, p.T_, p.V);
  const int nthreads = cpu::resolve_threads(opt);
  const int64_t img = p.H * p.W * 4;
  // Whole images per thread on a batch (no barrier per image, and the serial binning of each image overlaps
  // the others'), threads inside the image otherwise; nothing in an image depends on the thread count.
  cpu::for_each_image(p.B, nthreads, [&](int64_t b, int inside) {
    Scratch& sc = thread_scratch();  // a plain reference: the OpenMP workers inside the image share it
    const cpu::ScratchTrim<Scratch> trim(sc);
    rasterize_image(p, p.pos + b * p.V * 4, rast + b * img, db ? db + b * img : nullptr, sc, inside);
  });
}

template <class T>
void rasterize_backward(const RasterizeParams<T>& p, const T* rast, const T* grad_rast, T* grad_pos,
                        const CpuOptions& opt) {
  validate_triangles("rasterize_backward", p.tri, p.T_, p.V);
  const int nthreads = threads_for(cpu::resolve_threads(opt), p.H * p.W, 4096);
  const int64_t H = p.H, W = p.W, V = p.V;
  const PixelGrid grid(H, W);
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
          const double gu = grad_rast[i], gv = grad_rast[i + 1], gz = grad_rast[i + 2];
          const int64_t t = pixel_triangle(rast + i, p.T_);
          if (t < 0 || (gu == 0 && gv == 0 && gz == 0)) continue;
          const int32_t* tr = p.tri + 3 * t;
          double v[3][4];
          load_triangle(pos, tr, v);
          const double* pv[3] = {v[0], v[1], v[2]};
          double gl[3][4] = {};
          if (!bary_backward<double>(pv, grid.px(x), grid.py(y), gu, gv, gz, gl)) continue;
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
