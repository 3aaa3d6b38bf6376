// Silences, until intrinsic_warnings_on.hpp, the warnings GCC 12 raises on
// its own intrinsics: _mm*_undefined_* (inside shift, permute and convert
// intrinsics) trips -W(maybe-)uninitialized once inlined, although those
// lanes are never read. Included around each file's SIMD code; no include
// guard, by design (it is meant to be included more than once).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
