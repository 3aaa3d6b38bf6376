// The released gpt-oss models as compile-time configs.
#pragma once

#include "gptoss/config/model_dims.hpp"

namespace gptoss {

/// gpt-oss-120b: 36 layers, 128 experts (top-4), hidden 2880, 64/8 heads of 64.
struct GptOss120b {
  static constexpr ModelDims value{.num_layers = 36, .num_experts = 128};
};

/// gpt-oss-20b: 24 layers, 32 experts (top-4); otherwise as gpt-oss-120b.
struct GptOss20b {
  static constexpr ModelDims value{.num_layers = 24, .num_experts = 32};
};

static_assert(FixedModelConfig<GptOss20b> && FixedModelConfig<GptOss120b>);

}  // namespace gptoss
