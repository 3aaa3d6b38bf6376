// gptoss umbrella header: every CPU layer, format and I/O facility. It never
// pulls in CUDA.
#pragma once

#include "gptoss/config/gpt_oss.hpp"
#include "gptoss/config/model_dims.hpp"
#include "gptoss/config/test_configs.hpp"
#include "gptoss/core/backend.hpp"
#include "gptoss/core/bf16.hpp"
#include "gptoss/core/dtype.hpp"
#include "gptoss/core/error.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/core/weight_matrix.hpp"
#include "gptoss/formats/e2m1.hpp"
#include "gptoss/formats/e8m0.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/io/mapped_file.hpp"
#include "gptoss/io/safetensors.hpp"
#include "gptoss/layers/embedding.hpp"
#include "gptoss/layers/moe_block.hpp"
#include "gptoss/layers/rms_norm.hpp"
#include "gptoss/layers/sliding_sink_attention.hpp"
#include "gptoss/layers/yarn_rope.hpp"
