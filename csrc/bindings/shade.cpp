// Bindings for shade: checks, GIL release (CPU only: on CUDA facecore.ops.shade runs the reference).
#include "facecore/shade.h"

#include "checks.h"
#include "registry.h"

namespace facecore::bindings {
namespace {

void check_rows(const char* fn, const char* name, const Array& a, int64_t N, DType t, const Array& ref) {
  check_shape(fn, name, a, {N, 3}, "[N, 3]");
  check_dtype(fn, name, a, t);
  check_contiguous(fn, name, a);
  check_same_device(fn, "albedo", ref, {{name, &a}});
}

// An input [N, 3] whose rows may lie further apart than 3 (columns of a wider row-major array: no copy);
// returns the row stride.
int64_t check_strided_rows(const char* fn, const char* name, const Array& a, int64_t N, DType t,
                           const Array& ref) {
  check_shape(fn, name, a, {N, 3}, "[N, 3]");
  check_dtype(fn, name, a, t);
  check_same_device(fn, "albedo", ref, {{name, &a}});
  const int64_t rs = N > 1 ? int64_t(a.stride(0)) : 3;
  if (a.stride(1) != 1 || rs < 3)
    fail(fn, std::string(name) + " must have unit column stride and a row stride of at least 3 (the Python "
                                 "layer makes it so)");
  return rs;
}

void check_per_image(const char* fn, const char* name, const Array& a, std::initializer_list<int64_t> dims,
                     const char* spec, DType t, const Array& ref) {
  check_shape(fn, name, a, dims, spec);
  check_dtype(fn, name, a, t);
  check_contiguous(fn, name, a);
  check_same_device(fn, "albedo", ref, {{name, &a}});
}

// view [N, 3] and sh [B, 9, 3] are optional: an empty array (0 rows) means "absent".
void forward(const Array& albedo, const Array& normal, const Array& view, const Array& batch,
             const Array& ambient, const Array& directions, const Array& colors, const Array& sh,
             const Array& specular, const Array& shininess, int model, int bands, const Array& rgb,
             int threads) {
  const char* fn = "shade_forward";
  if (!is_cpu(albedo)) fail(fn, "the shade kernel runs on the CPU (CUDA tensors use the reference)");
  if (model < 0 || model > 2) fail(fn, "model must be 0 (lambert), 1 (blinn_phong) or 2 (toon)");
  if (bands < 1) fail(fn, "bands must be >= 1");
  check_shape(fn, "albedo", albedo, {-1, 3}, "[N, 3]");
  const int64_t N = albedo.shape(0);
  check_shape(fn, "directions", directions, {-1, -1, 3}, "[B, L, 3]");
  const int64_t B = directions.shape(0), L = directions.shape(1);
  dispatch_float(fn, "albedo", dtype_of(albedo), [&](auto tag) {
    using T = decltype(tag);
    const DType t = dtype_of(albedo);
    const int64_t albedo_stride = check_strided_rows(fn, "albedo", albedo, N, t, albedo);
    const int64_t normal_stride = check_strided_rows(fn, "normal", normal, N, t, albedo);
    check_rows(fn, "rgb", rgb, N, t, albedo);
    const bool has_view = view.ndim() == 2 && view.shape(0) != 0;
    const int64_t view_stride = has_view ? check_strided_rows(fn, "view", view, N, t, albedo) : 3;
    check_per_image(fn, "batch", batch, {N}, "[N]", DType::i64, albedo);
    check_per_image(fn, "ambient", ambient, {B, 3}, "[B, 3]", t, albedo);
    check_per_image(fn, "directions", directions, {B, L, 3}, "[B, L, 3]", t, albedo);
    check_per_image(fn, "colors", colors, {B, L, 3}, "[B, L, 3]", t, albedo);
    const bool has_sh = sh.ndim() == 3 && sh.shape(0) != 0;
    if (has_sh) check_per_image(fn, "sh", sh, {B, 9, 3}, "[B, 9, 3]", t, albedo);
    check_per_image(fn, "specular", specular, {B}, "[B]", t, albedo);
    check_per_image(fn, "shininess", shininess, {B}, "[B]", t, albedo);
    ShadeParams<T> p;
    p.N = N, p.B = B, p.L = L;
    p.albedo = data<T>(albedo), p.normal = data<T>(normal), p.view = has_view ? data<T>(view) : nullptr;
    p.albedo_stride = albedo_stride, p.normal_stride = normal_stride, p.view_stride = view_stride;
    p.batch = data<int64_t>(batch);
    p.ambient = data<T>(ambient), p.directions = data<T>(directions), p.colors = data<T>(colors);
    p.sh = has_sh ? data<T>(sh) : nullptr;
    p.specular = data<T>(specular), p.shininess = data<T>(shininess);
    p.model = static_cast<ShadeModel>(model), p.bands = bands;
    shade_forward<T>(p, data<T>(rgb), CpuOptions{threads});
  });
}

}  // namespace

FACECORE_BINDINGS(shade) {
  using namespace nb::literals;
  m.def("shade_forward", &forward, "albedo"_a, "normal"_a, "view"_a, "batch"_a, "ambient"_a, "directions"_a,
        "colors"_a, "sh"_a, "specular"_a, "shininess"_a, "model"_a, "bands"_a, "rgb"_a, "threads"_a,
        nb::call_guard<nb::gil_scoped_release>());
}

}  // namespace facecore::bindings
