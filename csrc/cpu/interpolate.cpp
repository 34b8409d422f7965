// CPU attribute interpolation: a gather per pixel forward; backward gathers grad_rast per pixel and
// scatters grad_attr into per-thread buffers reduced in thread order (deterministic, no atomics).
#include "facecore/interpolate.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "facecore/rasterize.h"
#include "parallel.h"

namespace facecore {

namespace {

inline int threads_for(int nthreads, int64_t work, int64_t grain) {
  return int(std::max<int64_t>(1, std::min<int64_t>(nthreads, work / grain)));
}

}  // namespace

template <class T>
void interpolate_forward(const InterpolateParams<T>& p, T* out, const CpuOptions& opt) {
  check_triangle_count<T>("interpolate", p.T_);
  validate_triangles("interpolate", p.tri, p.T_, p.V);
  const int nthreads = threads_for(cpu::resolve_threads(opt), p.B * p.H * p.W, 4096);
  const int64_t C = p.C;
  const int64_t HW = p.H * p.W;
  // Parallel over pixels, not rows: the renderer interpolates a compact [1, 1, N] list of covered pixels.
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < p.B * HW; ++i) {
    const T* attr = p.attr + (i / HW) * p.V * C;
    const T* r = p.rast + i * 4;
    T* o = out + i * C;
    const int64_t t = raster::pixel_triangle(r, p.T_);
    if (t < 0) {
      for (int64_t c = 0; c < C; ++c) o[c] = T(0);
      continue;
    }
    const T* a0 = attr + int64_t(p.tri[3 * t]) * C;
    const T* a1 = attr + int64_t(p.tri[3 * t + 1]) * C;
    const T* a2 = attr + int64_t(p.tri[3 * t + 2]) * C;
    const T u = r[0], v = r[1], w = T(1) - r[0] - r[1];
    for (int64_t c = 0; c < C; ++c) o[c] = u * a0[c] + v * a1[c] + w * a2[c];
  }
}

template <class T>
void interpolate_backward(const InterpolateParams<T>& p, const T* grad_out, T* grad_attr, T* grad_rast,
                          const CpuOptions& opt) {
  validate_triangles("interpolate_backward", p.tri, p.T_, p.V);
  const int nthreads = threads_for(cpu::resolve_threads(opt), p.H * p.W, 4096);
  const int64_t C = p.C, VC = p.V * p.C;
  std::vector<T> acc(size_t(nthreads) * VC);
  for (int64_t b = 0; b < p.B; ++b) {
    const T* attr = p.attr + b * VC;
    std::fill(acc.begin(), acc.end(), T(0));
#pragma omp parallel num_threads(nthreads)
    {
      T* ga = acc.data() + size_t(omp_get_thread_num()) * VC;
#pragma omp for schedule(static)
      for (int64_t j = 0; j < p.H * p.W; ++j) {  // over pixels, not rows (see the forward)
        {
          const int64_t i = b * p.H * p.W + j;
          const T* r = p.rast + i * 4;
          const T* g = grad_out + i * C;
          T* gr = grad_rast + i * 4;
          gr[0] = gr[1] = gr[2] = gr[3] = T(0);
          const int64_t t = raster::pixel_triangle(r, p.T_);
          if (t < 0) continue;
          const int64_t k0 = int64_t(p.tri[3 * t]) * C, k1 = int64_t(p.tri[3 * t + 1]) * C,
                        k2 = int64_t(p.tri[3 * t + 2]) * C;
          const T u = r[0], v = r[1], w = T(1) - r[0] - r[1];
          T du = 0, dv = 0;
          for (int64_t c = 0; c < C; ++c) {
            du += g[c] * (attr[k0 + c] - attr[k2 + c]);
            dv += g[c] * (attr[k1 + c] - attr[k2 + c]);
            ga[k0 + c] += u * g[c], ga[k1 + c] += v * g[c], ga[k2 + c] += w * g[c];
          }
          gr[0] = du, gr[1] = dv;
        }
      }
    }
    T* out = grad_attr + b * VC;
    for (int64_t i = 0; i < VC; ++i) {
      T s = 0;
      for (int th = 0; th < nthreads; ++th) s += acc[size_t(th) * VC + i];
      out[i] = s;
    }
  }
}

template void interpolate_forward<float>(const InterpolateParams<float>&, float*, const CpuOptions&);
template void interpolate_forward<double>(const InterpolateParams<double>&, double*, const CpuOptions&);
template void interpolate_backward<float>(const InterpolateParams<float>&, const float*, float*, float*,
                                          const CpuOptions&);
template void interpolate_backward<double>(const InterpolateParams<double>&, const double*, double*, double*,
                                           const CpuOptions&);

}  // namespace facecore
