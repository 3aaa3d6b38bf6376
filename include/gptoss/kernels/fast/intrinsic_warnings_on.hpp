// Restores the warnings intrinsic_warnings_off.hpp silenced. No include
// guard, by design (it is meant to be included more than once).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
