// cnnext._C: the Python module that carries the library.  Importing it runs the
// TORCH_LIBRARY registrations of csrc/ops/; everything is reached through
// torch.ops.cnnext.*, so the module itself is empty (the same library built by
// CMake is loaded with torch.ops.load_library instead).
#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "cnnext kernels (see torch.ops.cnnext)", -1, nullptr};
  return PyModule_Create(&def);
}
