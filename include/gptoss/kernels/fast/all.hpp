// Every cpu_fast kernel overload (with the cpu_reference kernels they fall
// back to). A layer instantiated with Backend = cpu_fast picks these up
// through overload resolution once this header is included.
#pragma once

#include "gptoss/core/cpu_features.hpp"
#include "gptoss/core/thread_pool.hpp"
#include "gptoss/kernels/fast/attention.hpp"
#include "gptoss/kernels/fast/linear.hpp"
#include "gptoss/kernels/fast/read_bandwidth.hpp"
#include "gptoss/kernels/fast/rms_norm.hpp"
#include "gptoss/kernels/fast/rope.hpp"
#include "gptoss/kernels/fast/swiglu.hpp"
