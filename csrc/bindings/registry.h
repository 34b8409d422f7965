// Each csrc/bindings/<op>.cpp registers its functions with FACECORE_BINDINGS(<op>) { ... };
// module.cpp runs every registered binder, so adding an op family touches no shared file.
#pragma once

#include <nanobind/nanobind.h>

#include <functional>
#include <vector>

namespace facecore::bindings {

namespace nb = nanobind;
using Binder = void (*)(nb::module_&);

inline std::vector<Binder>& registry() {
  static std::vector<Binder> binders;
  return binders;
}

struct Register {
  explicit Register(Binder b) { registry().push_back(b); }
};

}  // namespace facecore::bindings

#define FACECORE_BINDINGS(name)                                                        \
  static void facecore_bind_##name(::nanobind::module_& m);                            \
  static ::facecore::bindings::Register facecore_register_##name(&facecore_bind_##name); \
  static void facecore_bind_##name(::nanobind::module_& m)
