// CPU analytic antialiasing. Every pixel gathers the deltas of the (up to four) pixel pairs it belongs
// to, so the forward and the colour gradient need no atomics; the position gradient of a pair is computed
// once, by the pair's left/top pixel, into per-thread buffers reduced in thread order (deterministic).
#include "facecore/antialias.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "facecore/rasterize.h"
#include "parallel.h"
#include "scratch.h"

namespace facecore {

namespace {

inline int threads_for(int nthreads, int64_t work, int64_t grain) {
  return int(std::max<int64_t>(1, std::min<int64_t>(nthreads, work / grain)));
}

// For each triangle edge t*3+k (edge k joins corners k+1 and k+2): the one other triangle edge with the
// same two vertices, or -1 (boundary or non-manifold). Counting sort by the smaller vertex, then a sort
// by the larger one inside each (small) bucket: O(T log deg).
std::vector<int32_t> edge_neighbours(const int32_t* tri, int64_t T, int64_t V) {
  const int64_t E = 3 * T;
  std::vector<int64_t> start(V + 1, 0);
  for (int64_t e = 0; e < E; ++e) {
    const int32_t* t = tri + (e / 3) * 3;
    const int k = int(e % 3);
    start[std::min(t[(k + 1) % 3], t[(k + 2) % 3]) + 1]++;
  }
  for (int64_t v = 0; v < V; ++v) start[v + 1] += start[v];
  std::vector<std::pair<int32_t, int32_t>> ord(E);  // (larger vertex, edge) bucketed by smaller vertex
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t e = 0; e < E; ++e) {
    const int32_t* t = tri + (e / 3) * 3;
    const int k = int(e % 3);
    const int32_t a = t[(k + 1) % 3], b = t[(k + 2) % 3];
    ord[fill[std::min(a, b)]++] = {std::max(a, b), int32_t(e)};
  }
  std::vector<int32_t> nbr(E, -1);
  for (int64_t v = 0; v < V; ++v) {
    auto* lo = ord.data() + start[v];
    auto* hi = ord.data() + start[v + 1];
    std::sort(lo, hi);
    for (auto* r = lo; r < hi;) {
      auto* q = r;
      while (q < hi && q->first == r->first) ++q;
      if (q - r == 2) nbr[r[0].second] = r[1].second, nbr[r[1].second] = r[0].second;
      r = q;
    }
  }
  return nbr;
}

// The neighbour table of the last mesh seen by this thread (a renderer draws the same mesh every frame), keyed
// on a stored copy of the whole triangle buffer compared in full, never on a hash or the pointer: another
// mesh can never be served this one's topology. A table too big to keep (scratch.h) is returned in `local`.
const std::vector<int32_t>& cached_neighbours(const int32_t* tri, int64_t T, int64_t V,
                                              std::vector<int32_t>& local) {
  struct Cache {
    int64_t V = -1;
    std::vector<int32_t> tri, nbr;  // the key and the value
  };
  static thread_local Cache cache;
  Cache& c = cache;
  const size_t n = size_t(3 * T);
  if (c.V == V && c.tri.size() == n && std::equal(tri, tri + n, c.tri.begin())) return c.nbr;
  std::vector<int32_t> nbr = edge_neighbours(tri, T, V);
  if (cpu::capacity_bytes(nbr) * 2 > cpu::kKeepScratchBytes) {
    c = Cache{};
    local = std::move(nbr);
    return local;
  }
  c.V = -1;  // invalid until complete (assign may throw)
  c.tri.assign(tri, tri + n);
  c.nbr = std::move(nbr);
  c.V = V;
  return c.nbr;
}

// sign of det[(x, y, w)_0; (x, y, w)_1; (x, y, w)_2]: the screen-space facing of a clip-space triangle.
template <class T>
inline int orientation(const T* pos, const int32_t* t) {
  const T* a = pos + int64_t(t[0]) * 4;
  const T* b = pos + int64_t(t[1]) * 4;
  const T* c = pos + int64_t(t[2]) * 4;
  const double d = double(a[0]) * (double(b[1]) * c[3] - double(b[3]) * c[1]) -
                   double(a[1]) * (double(b[0]) * c[3] - double(b[3]) * c[0]) +
                   double(a[3]) * (double(b[0]) * c[1] - double(b[1]) * c[0]);
  return (d > 0) - (d < 0);
}

// A pair's segment may leave the front triangle through an interior edge and meet the silhouette in a
// neighbour (thin, foreshortened triangles along a contour): the search walks up to kMaxWalk triangles.
constexpr int kMaxWalk = 4;
constexpr uint8_t kNear = 8;  // sil bit 3: a silhouette edge is within kMaxWalk - 1 steps of this triangle

// Per image: silhouette bits of every triangle (bit k: edge k may be on a silhouette; bit 3: kNear), and
// coef[9 t + 3 i ..] = (a, b, c) with o * raster::edge(edge i) = a + b px + c py (o the orientation): the
// pair walk then reads 9 contiguous doubles per triangle instead of gathering three vertices.
template <class T>
void silhouettes(const T* pos, const int32_t* tri, int64_t NT, const std::vector<int32_t>& nbr,
                 std::vector<int8_t>& orient, std::vector<uint8_t>& sil, std::vector<uint8_t>& g,
                 std::vector<int32_t> (&front)[2], double* coef, int nthreads) {
  const int nth = threads_for(nthreads, NT, 8192);
#pragma omp parallel for schedule(static) num_threads(nth)
  for (int64_t t = 0; t < NT; ++t) {
    const int o = orientation(pos, tri + 3 * t);
    orient[t] = int8_t(o);
    for (int i = 0; i < 3; ++i) {
      const T* pj = pos + int64_t(tri[3 * t + (i + 1) % 3]) * 4;
      const T* pk = pos + int64_t(tri[3 * t + (i + 2) % 3]) * 4;
      const double xj = pj[0], yj = pj[1], wj = pj[3], xk = pk[0], yk = pk[1], wk = pk[3];
      // (xj - px wj)(yk - py wk) - (yj - py wj)(xk - px wk), expanded in px, py
      coef[9 * t + 3 * i] = o * (xj * yk - yj * xk);
      coef[9 * t + 3 * i + 1] = o * (yj * wk - wj * yk);
      coef[9 * t + 3 * i + 2] = o * (wj * xk - xj * wk);
    }
  }
  int64_t near_count = 0;
#pragma omp parallel for schedule(static) num_threads(nth) reduction(+ : near_count)
  for (int64_t t = 0; t < NT; ++t) {
    const int o = orient[t];
    uint8_t bits = 0;
    for (int k = 0; k < 3; ++k) {
      const int32_t n = nbr[3 * t + k];
      bits |= uint8_t(n < 0 || o == 0 || orient[n / 3] != o) << k;
    }
    sil[t] = bits ? uint8_t(bits | kNear) : 0;
    near_count += bits != 0;
  }
  if (near_count == NT) return;  // every triangle is on a silhouette: nothing to grow
  if (nth == 1) {
    // One thread: grow by frontiers (the triangles marked in the last step mark their unmarked
    // neighbours), touching only the triangles near a silhouette. The same set as the passes below:
    // near_s = near_{s-1} + neighbours(near_{s-1}), and the neighbours of older members are already in.
    auto& frontier = front[0];
    auto& next = front[1];
    frontier.clear();
    for (int64_t t = 0; t < NT; ++t)
      if (sil[t] & kNear) frontier.push_back(int32_t(t));
    for (int step = 1; step < kMaxWalk && !frontier.empty(); ++step) {
      next.clear();
      for (int32_t t : frontier)
        for (int k = 0; k < 3; ++k) {
          const int32_t n = nbr[3 * int64_t(t) + k];
          if (n >= 0 && !(sil[n / 3] & kNear)) sil[n / 3] |= kNear, next.push_back(n / 3);
        }
      std::swap(frontier, next);
    }
    return;
  }
  g.resize(NT);
  for (int step = 1; step < kMaxWalk; ++step) {
    int64_t grown = 0;
#pragma omp parallel for schedule(static) num_threads(nth) reduction(+ : grown)
    for (int64_t t = 0; t < NT; ++t) {
      bool near = sil[t] & kNear;
      for (int k = 0; k < 3 && !near; ++k) near = nbr[3 * t + k] >= 0 && (sil[nbr[3 * t + k] / 3] & kNear);
      g[t] = near;
      grown += near && !(sil[t] & kNear);
    }
    if (!grown) break;  // a fixed point (e.g. every triangle is already near a silhouette)
#pragma omp parallel for schedule(static) num_threads(nth)
    for (int64_t t = 0; t < NT; ++t) sil[t] |= g[t] ? kNear : 0;
  }
}

struct Pair {
  double e = 0;          // crossing fraction from F's pixel centre towards the other one
  int32_t t = 0;         // F's triangle
  int8_t k = 0;          // the crossed edge of F (joins corners k+1, k+2)
  bool a_front = false;  // the nearer triangle F is the one at pixel A
  bool active = false;
};

template <class T>
inline int64_t tri_id(const T* r, int64_t NT) {  // 1-based id, 0 = background or invalid (also NaN)
  return raster::pixel_triangle(r, NT) + 1;
}

// The pair's segment runs from F's pixel centre (s = 0) to the other one (s = 1). In triangle X with edge
// functions n_i (positive inside), the segment leaves X at the smallest s_i = n_i(0) / (n_i(0) - n_i(1))
// over edges with n_i(0) >= 0 that decrease along the segment. A silhouette exit edge gives e = s_i;
// an interior one hands over to the neighbour across it.
template <class T>
Pair eval_pair(const T* rA, const T* rB, double pxA, double pyA, double pxB, double pyB, const double* coef,
               int64_t NT, const uint8_t* sil, const int32_t* nbr, bool horizontal, double H, double W) {
  Pair q;
  const int64_t tA = tri_id(rA, NT), tB = tri_id(rB, NT);
  if (tA == tB) return q;
  const T zA = rA[2], zB = rB[2];
  q.a_front = tA > 0 && (tB == 0 || zA < zB || (zA == zB && tA < tB));
  int64_t cur = (q.a_front ? tA : tB) - 1;
  if (!(sil[cur] & kNear)) return q;  // no silhouette nearby: most pairs inside a mesh end here
  const double pxF = q.a_front ? pxA : pxB, pyF = q.a_front ? pyA : pyB;
  const double pxO = q.a_front ? pxB : pxA, pyO = q.a_front ? pyB : pyA;
  for (int step = 0; step < kMaxWalk; ++step) {
    const double* cf = coef + 9 * cur;
    double best = 1.0;
    int k = -1;
    for (int i = 0; i < 3; ++i) {
      const double* ci = cf + 3 * i;
      const double n0 = ci[0] + ci[1] * pxF + ci[2] * pyF;
      const double n1 = ci[0] + ci[1] * pxO + ci[2] * pyO;
      if (n0 >= 0 && n1 < n0) {
        const double e = n0 / (n0 - n1);
        if (e < best) best = e, k = i;
      }
    }
    if (k < 0) return q;  // the segment ends inside this triangle
    if ((sil[cur] >> k) & 1) {
      // Each silhouette edge is handled by one pair direction only (horizontal pairs for edges steeper than
      // 45 degrees on screen), otherwise a slanted edge would be blended, and differentiated, twice.
      const double ax = std::abs(cf[3 * k + 1]) * H, ay = std::abs(cf[3 * k + 2]) * W;  // |o| = 1 here
      if ((ax >= ay) != horizontal) return q;
      q.active = true, q.e = best, q.t = int32_t(cur), q.k = int8_t(k);
      return q;
    }
    const int32_t n = nbr[3 * cur + k];
    if (n < 0) return q;
    cur = n / 3;
  }
  return q;
}

// Every pair of one image evaluated once: horizontal pairs (x, x+1) at [y * W + x] (x < W - 1), vertical
// pairs (y, y+1) at [H * W + y * W + x] (y < H - 1). Only active pairs are stored; act[] (one byte per pair)
// flags them: almost every pair is inactive, and writing and reading a full Pair for each would dominate
// the memory traffic. Rows without a triangle-id change are skipped by comparing raw id floats first.
template <class T>
void eval_pairs(const AntialiasParams<T>& p, const T* rast, const double* coef, const uint8_t* sil,
                const int32_t* nbr, const raster::PixelGrid& g, int nthreads, std::vector<Pair>& pairs,
                std::vector<uint8_t>& act) {
  const int64_t H = p.H, W = p.W, NT = p.T_;
  if (pairs.size() < size_t(2 * H * W)) pairs.resize(size_t(2 * H * W));
  act.resize(size_t(2 * H * W));
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t y = 0; y < H; ++y) {
    uint8_t* ah = act.data() + y * W;
    uint8_t* av = act.data() + H * W + y * W;
    std::fill(ah, ah + W, uint8_t(0));
    std::fill(av, av + W, uint8_t(0));
    const T* row = rast + y * W * 4;
    for (int64_t x = 0; x < W; ++x) {
      const int64_t i = y * W + x;
      const T* r = row + x * 4;
      const bool hdiff = x + 1 < W && r[7] != r[3];  // equal raw ids: same triangle (or both background)
      const bool vdiff = y + 1 < H && r[4 * W + 3] != r[3];
      if (!hdiff && !vdiff) continue;
      const int64_t id = tri_id(r, NT);
      if (hdiff && tri_id(r + 4, NT) != id) {
        const Pair q = eval_pair(r, r + 4, g.px(x), g.py(y), g.px(x + 1), g.py(y), coef, NT, sil, nbr, true,
                                 double(H), double(W));
        if (q.active) pairs[i] = q, ah[x] = 1;
      }
      if (vdiff && tri_id(r + 4 * W, NT) != id) {
        const Pair q = eval_pair(r, r + 4 * W, g.px(x), g.py(y), g.px(x), g.py(y + 1), coef, NT, sil, nbr, false,
                                 double(H), double(W));
        if (q.active) pairs[H * W + i] = q, av[x] = 1;
      }
    }
  }
}

// The (up to four) pairs of pixel (x, y) in the order right, left, down, up, as (pair, this pixel is A).
struct PixelPairs {
  const Pair* q[4];
  bool self_a[4];
  int64_t other[4];
  int n = 0;
};

inline PixelPairs pixel_pairs(const std::vector<Pair>& pairs, const uint8_t* act, int64_t H, int64_t W,
                              int64_t x, int64_t y) {
  PixelPairs pp;
  const int64_t i = y * W + x;
  auto add = [&](int64_t j, bool self_a, int64_t other) {
    if (!act[j]) return;
    pp.q[pp.n] = &pairs[j], pp.self_a[pp.n] = self_a, pp.other[pp.n] = other, ++pp.n;
  };
  if (x + 1 < W) add(i, true, i + 1);
  if (x > 0) add(i - 1, false, i - 1);
  if (y + 1 < H) add(H * W + i, true, i + W);
  if (y > 0) add(H * W + i - W, false, i - W);
  return pp;
}

// Whether pixel (x, y) belongs to any active pair (most pixels do not: they keep their value).
inline bool touched(const uint8_t* act, int64_t H, int64_t W, int64_t x, int64_t y) {
  const int64_t i = y * W + x;
  return act[i] | (x > 0 ? act[i - 1] : 0) | act[H * W + i] | (y > 0 ? act[H * W + i - W] : 0);
}

struct Scratch {
  std::vector<int8_t> orient;
  std::vector<uint8_t> sil, grow;
  std::vector<int32_t> front[2];  // the one-thread growth's frontiers
  std::vector<Pair> pairs;
  std::vector<uint8_t> act;
  std::vector<double> coef;
  std::vector<double> acc;
  size_t bytes() const { return cpu::capacity_bytes(orient, sil, grow, front[0], front[1], pairs, act, coef, acc); }
};

// Edge ids (3 t + k) are int32.
void check_antialias_mesh(const char* fn, int64_t T) {
  if (3 * T > int64_t(INT32_MAX))
    throw Error(std::string(fn) + ": tri has " + std::to_string(T) + " triangles, more than the " +
                std::to_string(INT32_MAX / 3) + " antialias supports");
}

// One image b of the forward, `nthreads` threads inside it.
template <class T>
void antialias_image(const AntialiasParams<T>& p, int64_t b, const std::vector<int32_t>& nbr, Scratch& sc,
                     int nthreads, T* out) {
  const int64_t H = p.H, W = p.W, C = p.C, NT = p.T_;
  const int pix_threads = threads_for(nthreads, H * W, 4096);
  const raster::PixelGrid g(H, W);
  sc.orient.resize(NT), sc.sil.resize(NT), sc.coef.resize(size_t(9 * NT));
  const T* pos = p.pos + b * p.V * 4;
  const T* rast = p.rast + b * H * W * 4;
  const T* col = p.color + b * H * W * C;
  T* o = out + b * H * W * C;
  silhouettes(pos, p.tri, NT, nbr, sc.orient, sc.sil, sc.grow, sc.front, sc.coef.data(), nthreads);
  eval_pairs(p, rast, sc.coef.data(), sc.sil.data(), nbr.data(), g, pix_threads, sc.pairs, sc.act);
  const uint8_t* act = sc.act.data();
#pragma omp parallel for schedule(static) num_threads(pix_threads)
  for (int64_t y = 0; y < H; ++y) {
    std::copy(col + y * W * C, col + (y + 1) * W * C, o + y * W * C);
    for (int64_t x = 0; x < W; ++x) {
      if (!touched(act, H, W, x, y)) continue;
      const int64_t i = y * W + x;
      T* d = o + i * C;
      const PixelPairs pp = pixel_pairs(sc.pairs, act, H, W, x, y);
      for (int n = 0; n < pp.n; ++n) {
        const Pair& q = *pp.q[n];
        const bool self_f = pp.self_a[n] == q.a_front;
        const T* cF = col + (self_f ? i : pp.other[n]) * C;
        const T* cO = col + (self_f ? pp.other[n] : i) * C;
        if (q.e > 0.5 && !self_f)
          for (int64_t c = 0; c < C; ++c) d[c] += T(q.e - 0.5) * (cF[c] - cO[c]);
        else if (q.e <= 0.5 && self_f)
          for (int64_t c = 0; c < C; ++c) d[c] += T(0.5 - q.e) * (cO[c] - cF[c]);
      }
    }
  }
}

Scratch& thread_scratch() {
  static thread_local Scratch scratch;
  return scratch;
}

}  // namespace

template <class T>
void antialias_forward(const AntialiasParams<T>& p, T* out, const CpuOptions& opt) {
  check_triangle_count<T>("antialias", p.T_);
  check_antialias_mesh("antialias", p.T_);
  validate_triangles("antialias", p.tri, p.T_, p.V);
  const int nthreads = cpu::resolve_threads(opt);
  std::vector<int32_t> nbr_local;
  const std::vector<int32_t>& nbr = cached_neighbours(p.tri, p.T_, p.V, nbr_local);
  // Whole images per thread on a batch, threads inside the image otherwise; the result is the same.
  cpu::for_each_image(p.B, nthreads, [&](int64_t b, int inside) {
    Scratch& sc = thread_scratch();  // a plain reference: the OpenMP workers inside the image share it
    const cpu::ScratchTrim<Scratch> trim(sc);
    antialias_image(p, b, nbr, sc, inside, out);
  });
}

template <class T>
void antialias_backward(const AntialiasParams<T>& p, const T* grad_out, T* grad_color, T* grad_pos,
                        const CpuOptions& opt) {
  check_triangle_count<T>("antialias_backward", p.T_);
  check_antialias_mesh("antialias_backward", p.T_);
  validate_triangles("antialias_backward", p.tri, p.T_, p.V);
  const int64_t H = p.H, W = p.W, C = p.C, NT = p.T_, V = p.V;
  const int nthreads = threads_for(cpu::resolve_threads(opt), H * W, 4096);
  const raster::PixelGrid g(H, W);
  std::vector<int32_t> nbr_local;
  const std::vector<int32_t>& nbr = cached_neighbours(p.tri, NT, p.V, nbr_local);
  static thread_local Scratch scratch;
  Scratch& sc = scratch;
  const cpu::ScratchTrim<Scratch> trim(sc);
  sc.orient.resize(NT), sc.sil.resize(NT), sc.coef.resize(size_t(9 * NT));
  sc.acc.resize(size_t(nthreads) * V * 4);
  for (int64_t b = 0; b < p.B; ++b) {
    const T* pos = p.pos + b * V * 4;
    const T* rast = p.rast + b * H * W * 4;
    const T* col = p.color + b * H * W * C;
    const T* go = grad_out + b * H * W * C;
    T* gc = grad_color + b * H * W * C;
    silhouettes(pos, p.tri, NT, nbr, sc.orient, sc.sil, sc.grow, sc.front, sc.coef.data(), nthreads);
    eval_pairs(p, rast, sc.coef.data(), sc.sil.data(), nbr.data(), g, nthreads, sc.pairs, sc.act);
    const uint8_t* act = sc.act.data();
    std::fill(sc.acc.begin(), sc.acc.end(), 0.0);
#pragma omp parallel num_threads(nthreads)
    {
      double* gp = sc.acc.data() + size_t(omp_get_thread_num()) * V * 4;
#pragma omp for schedule(static)
      for (int64_t y = 0; y < H; ++y) {
        std::copy(go + y * W * C, go + (y + 1) * W * C, gc + y * W * C);
        for (int64_t x = 0; x < W; ++x) {
          if (!touched(act, H, W, x, y)) continue;
          const int64_t i = y * W + x;
          T* d = gc + i * C;
          const PixelPairs pp = pixel_pairs(sc.pairs, act, H, W, x, y);
          for (int n = 0; n < pp.n; ++n) {
            const Pair& q = *pp.q[n];
            const bool self_f = pp.self_a[n] == q.a_front;
            const int64_t f = self_f ? i : pp.other[n], o = self_f ? pp.other[n] : i;
            const bool far = q.e > 0.5;
            const int64_t target = far ? o : f;
            const double m = far ? q.e - 0.5 : 0.5 - q.e;
            const T* gX = go + target * C;
            // colour: out[target] += m (c_source - c_target)
            const T sgn = (i == target) ? T(-1) : T(1);
            for (int64_t c = 0; c < C; ++c) d[c] += sgn * T(m) * gX[c];
            if (!pp.self_a[n]) continue;  // the pair's position gradient is computed once, by pixel A
            double dlde = 0;
            for (int64_t c = 0; c < C; ++c) dlde += double(gX[c]) * (double(col[f * C + c]) - double(col[o * C + c]));
            if (dlde == 0) continue;
            const int32_t* tr = p.tri + 3 * int64_t(q.t);
            const int j = (q.k + 1) % 3, k = (q.k + 2) % 3;
            double vj[4], vk[4], gj[4] = {0, 0, 0, 0}, gk[4] = {0, 0, 0, 0};
            for (int c = 0; c < 4; ++c)
              vj[c] = double(pos[int64_t(tr[j]) * 4 + c]), vk[c] = double(pos[int64_t(tr[k]) * 4 + c]);
            const double pxF = g.px(f % W), pyF = g.py(f / W), pxO = g.px(o % W), pyO = g.py(o / W);
            const double cF = raster::edge(vj, vk, pxF, pyF), cO = raster::edge(vj, vk, pxO, pyO);
            const double den = cF - cO;
            // e = cF / (cF - cO): de/dcF = -cO / den^2, de/dcO = cF / den^2
            raster::edge_backward(vj, vk, pxF, pyF, -cO / (den * den) * dlde, gj, gk);
            raster::edge_backward(vj, vk, pxO, pyO, cF / (den * den) * dlde, gj, gk);
            for (int c = 0; c < 4; ++c) gp[int64_t(tr[j]) * 4 + c] += gj[c], gp[int64_t(tr[k]) * 4 + c] += gk[c];
          }
        }
      }
    }
    T* out = grad_pos + b * V * 4;
    for (int64_t i = 0; i < V * 4; ++i) {
      double s = 0;
      for (int th = 0; th < nthreads; ++th) s += sc.acc[size_t(th) * V * 4 + i];
      out[i] = T(s);
    }
  }
}

template void antialias_forward<float>(const AntialiasParams<float>&, float*, const CpuOptions&);
template void antialias_forward<double>(const AntialiasParams<double>&, double*, const CpuOptions&);
template void antialias_backward<float>(const AntialiasParams<float>&, const float*, float*, float*,
                                        const CpuOptions&);
template void antialias_backward<double>(const AntialiasParams<double>&, const double*, double*, double*,
                                         const CpuOptions&);

}  // namespace facecore
