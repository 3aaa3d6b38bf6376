// StageTimer: an observer (model/observer.hpp) that measures where forward
// passes spend their wall time. The time from one residual hook to the next
// goes to the part the block ran in between: its attention half (input ->
// attention_out: norm, QKV, RoPE, attention, output projection) or its
// feed-forward half (attention_out -> mlp_out: norm, router, experts).
// Everything else (the embedding before the first block, the final norm and
// the unembedding after the last) is "outside blocks". The parts of a pass
// add up to the time from begin_pass() to end_pass().
//
//   StageTimer timer;
//   timer.begin_pass();
//   logits = model.forward_last(seq, tokens, timer);
//   timer.end_pass();
//   timer.totals().feed_forward_s  // seconds in the feed-forward halves
//
// A timestamp per hook (two clock reads per block half) is all it adds.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "gptoss/core/error.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/model/observer.hpp"

namespace gptoss {

class StageTimer {
 public:
  using Clock = std::chrono::steady_clock;

  /// Seconds summed over the passes timed since construction or reset().
  struct Totals {
    double attention_s = 0.0;       // attention halves of every block
    double feed_forward_s = 0.0;    // feed-forward halves of every block
    double outside_blocks_s = 0.0;  // embedding, final norm, unembedding
    int passes = 0;
    double total_s() const noexcept { return attention_s + feed_forward_s + outside_blocks_s; }
  };

  /// Marks the start of a pass (call just before forward).
  void begin_pass() {
    if (in_pass_) throw Error("StageTimer: begin_pass() called twice without end_pass()");
    in_pass_ = true;
    last_ = Clock::now();
  }

  /// Marks the end of a pass (call just after forward returns).
  void end_pass() {
    if (!in_pass_) throw Error("StageTimer: end_pass() without begin_pass()");
    totals_.outside_blocks_s += lap();
    ++totals_.passes;
    in_pass_ = false;
  }

  /// The residual hook: charges the time since the previous mark to the
  /// part that just ran.
  void residual(int layer, BlockStage stage, MatrixView<const float> /*x*/) {
    if (!in_pass_) throw Error("StageTimer: forward ran without begin_pass()");
    const double s = lap();
    const std::size_t l = static_cast<std::size_t>(layer);
    if (l >= attention_by_layer_.size()) {
      attention_by_layer_.resize(l + 1, 0.0);
      feed_forward_by_layer_.resize(l + 1, 0.0);
    }
    switch (stage) {
      case BlockStage::input: totals_.outside_blocks_s += s; break;  // before this block
      case BlockStage::attention_out:
        totals_.attention_s += s;
        attention_by_layer_[l] += s;
        break;
      case BlockStage::mlp_out:
        totals_.feed_forward_s += s;
        feed_forward_by_layer_[l] += s;
        break;
    }
  }

  const Totals& totals() const noexcept { return totals_; }
  /// Seconds in layer l's attention half (feed-forward half), over all passes.
  double attention_seconds(int layer) const { return at(attention_by_layer_, layer); }
  double feed_forward_seconds(int layer) const { return at(feed_forward_by_layer_, layer); }

  void reset() {
    if (in_pass_) throw Error("StageTimer: reset() during a pass");
    *this = StageTimer{};
  }

 private:
  double lap() {
    const Clock::time_point now = Clock::now();
    const double s = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    return s;
  }
  static double at(const std::vector<double>& v, int layer) {
    if (layer < 0) throw RangeError("StageTimer: layer " + std::to_string(layer) + " is negative");
    return static_cast<std::size_t>(layer) < v.size() ? v[static_cast<std::size_t>(layer)] : 0.0;
  }

  Totals totals_;
  std::vector<double> attention_by_layer_, feed_forward_by_layer_;  // (layers,)
  Clock::time_point last_{};
  bool in_pass_ = false;
};

static_assert(ObservesResidual<StageTimer>);

}  // namespace gptoss
