// The nanobind module facecore._C: build facts plus every op family's registered bindings.
#include <nanobind/stl/string.h>

#include "facecore/common.h"
#include "registry.h"

namespace nb = nanobind;

NB_MODULE(_C, m) {
  m.doc() = "facecore compiled kernels (C++ CPU kernels, CUDA kernels when built with CUDA)";
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const facecore::Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  m.def("build_info", []() {
    facecore::BuildInfo b = facecore::build_info();
    nb::dict d;
    d["version"] = std::string(b.version);
    d["compiler"] = std::string(b.compiler);
    d["cuda"] = b.cuda;
    d["cuda_archs"] = std::string(b.cuda_archs);
    d["openmp_max_threads"] = b.openmp_max_threads;
    return d;
  });
  for (auto bind : facecore::bindings::registry()) bind(m);
}
