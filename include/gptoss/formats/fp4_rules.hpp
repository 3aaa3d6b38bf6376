// How an FP4 quantizer picks its scales (shared by MXFP4 and NVFP4).
#pragma once

namespace gptoss {

/// The per-block scale.
enum class ScaleRule {
  ocp,     // the format's standard rule: MXFP4 2^(floor(log2 amax) - 2) (OCP MX),
           // NVFP4 e4m3(amax / (6 g)) rounded to nearest
  search,  // the standard scale and its neighbours (one step up and down),
           // keeping the one with the least squared error (ties: the standard one)
};

/// The per-tensor scale g of formats that have one (NVFP4); MXFP4 has none.
enum class GlobalScale {
  amax,          // g = amax / (448 * 6): the largest block scale is E4M3's largest value
  power_of_two,  // g rounded up to a power of two: every decoded value
                 // (E2M1 x E4M3 x 2^k, at most 6 significant bits) is then exact in bf16
};

}  // namespace gptoss
