// emulator.cu -- the CPU emulator's settings that csrc/ops exposes to Python (tests); an empty
// translation unit under nvcc.  Declared in ../common/backend.h.
#include "compat.h"
#include "launchers.h"

#if defined(EMU)
namespace cnnext::emulated {

unsigned set_grid_cap(unsigned cap) {
  const unsigned prev = ::emu::detail::tl_grid_cap;
  ::emu::detail::tl_grid_cap = cap < 1 ? 1 : (cap > kGridCapMax ? kGridCapMax : cap);
  return prev;
}

}  // namespace cnnext::emulated
#endif
