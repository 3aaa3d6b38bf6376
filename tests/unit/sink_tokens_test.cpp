// StreamingLLM sink tokens (SinkTokens policy of SlidingSinkAttention):
// prefill and token-by-token decoding far past the window and past
// max_context against a float64 recomputation (tests/support/float64_model.hpp)
// at every step, with constant cache memory; chunked decoding; S = 0 is
// gpt-oss exactly (bit for bit, also on the bundled reference checkpoint);
// attention maps of sink-token layers (layers/attention_probabilities.hpp).
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/gptoss.hpp"
#include "support/compare.hpp"
#include "support/float64_model.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"
#include "support/test_data.hpp"

using namespace gptoss;
using gptoss::test::compare_to_max;
using gptoss::test::MessageHas;

namespace {

using Mxfp4 = FP4TensorView<MXFP4Checkpoint>;

// Layer 0: 3 sink tokens, the config's window (5), no learned sink logit;
// layer 1: 3 sink tokens, window 7, with gpt-oss's learned sink logit.
template <class B>
using StreamingPattern =
    BlockPattern<DecoderBlock<SlidingSinkAttention<AttentionSpan::sliding, B, SinkTokens<3, 0, false>>, MoEBlock<Mxfp4, B>>,
                 DecoderBlock<SlidingSinkAttention<AttentionSpan::sliding, B, SinkTokens<3, 7>>, MoEBlock<Mxfp4, B>>>;

ModelDims streaming_dims() {
  return ModelDims{.num_layers = 3, .num_experts = 3, .experts_per_token = 2, .vocab = 50, .hidden = 64,
                   .intermediate = 32, .head_dim = 16, .num_heads = 4, .num_kv_heads = 2, .sliding_window = 5};
}

template <class Model>
std::vector<double> expected_logits(const Model& model, const std::vector<std::int32_t>& tokens) {
  std::vector<test::f64::LayerRef<MoEWeights<Mxfp4>>> layers;
  const auto& b = model.weights().blocks;
  for (int l = 0; l < model.dims().num_layers; ++l) {
    if (l % 2 == 0) {
      layers.push_back({&std::get<0>(b)[l / 2].attn, &std::get<0>(b)[l / 2].mlp, {5, 3, false}});
    } else {
      layers.push_back({&std::get<1>(b)[l / 2].attn, &std::get<1>(b)[l / 2].mlp, {7, 3, true}});
    }
  }
  return test::f64::reference_logits(model, layers, tokens);
}

}  // namespace

TEMPLATE_TEST_CASE("Sink tokens: prefill and every decode step past the window and max_context match float64",
                   "[sink-tokens][model]", cpu_reference, cpu_fast) {
  using Model = Transformer<DynamicConfig, TestType, StreamingPattern<TestType>>;
  Model model(streaming_dims());
  fill_random_weights(model, 2024);
  const auto tokens = test::random_tokens(30, model.dims().vocab, 7);
  const auto expected = expected_logits(model, tokens);
  const std::size_t vocab = static_cast<std::size_t>(model.dims().vocab);

  // A prefill longer than both windows (chunks of queries inside the layer).
  GPTOSS_REQUIRE_CLOSE(compare_to_max(model.forward(tokens).storage(), expected, 0.0, 1e-4));

  // One token at a time with a context limit of 8: constant memory, no overflow.
  Sequence seq = model.new_sequence(8);
  REQUIRE(seq.bounded());
  std::size_t bytes = 0;
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const Tensor<float, 2> step = model.forward(seq, std::span(tokens).subspan(t, 1));
    const std::vector<double> row(expected.begin() + t * vocab, expected.begin() + (t + 1) * vocab);
    INFO("step " << t);
    GPTOSS_REQUIRE_CLOSE(compare_to_max(step.storage(), row, 0.0, 1e-4));
    CHECK(seq.cache(0).size() == std::min<index_t>(static_cast<index_t>(t) + 1, 3 + 5));
    CHECK(seq.cache(1).size() == std::min<index_t>(static_cast<index_t>(t) + 1, 3 + 7));
    CHECK(seq.cache(0).capacity() == 3 + 5);
    if (t == 0) bytes = seq.cache_bytes();
    CHECK(seq.cache_bytes() == bytes);
  }
  CHECK(seq.length() == 30);
}

TEST_CASE("Sink tokens: decoding in chunks of any size equals the prefill", "[sink-tokens][kv-cache]") {
  Transformer<DynamicConfig, cpu_fast, StreamingPattern<cpu_fast>> model(streaming_dims());
  fill_random_weights(model, 99);
  const auto tokens = test::random_tokens(40, model.dims().vocab, 3);
  const Tensor<float, 2> full = model.forward(tokens);
  for (const std::size_t first : {1u, 2u, 9u, 17u}) {
    Sequence seq = model.new_sequence(16);
    std::vector<float> rows;
    for (std::size_t t = 0, n = first; t < tokens.size(); t += n, n = t % 11 + 1) {
      n = std::min(n, tokens.size() - t);
      const auto step = model.forward(seq, std::span(tokens).subspan(t, n));
      rows.insert(rows.end(), step.storage().begin(), step.storage().end());
    }
    INFO("first chunk " << first);
    GPTOSS_REQUIRE_CLOSE(compare_to_max(rows, full.storage(), 0.0, 2e-5));
  }
}

TEST_CASE("Sink tokens: the weights lose `sinks` only without the learned logit", "[sink-tokens][model]") {
  Transformer<DynamicConfig, cpu_fast, StreamingPattern<cpu_fast>> model(streaming_dims());
  std::vector<std::string> names;
  model.visit_weights([&](const std::string& name, const auto&, const auto&) { names.push_back(name); });
  const auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  CHECK_FALSE(has("block.0.attn.sinks"));
  CHECK(has("block.1.attn.sinks"));
  CHECK_FALSE(has("block.2.attn.sinks"));
}

TEST_CASE("Sink tokens: S = 0 is gpt-oss bit for bit", "[sink-tokens][golden]") {
  // gpt-oss's pattern, its attention spelled with the SinkTokens<0> policy.
  using Zero = Transformer<DynamicConfig, cpu_fast,
                           BlockPattern<DecoderBlock<SlidingSinkAttention<AttentionSpan::sliding, cpu_fast, SinkTokens<0>>,
                                                     MoEBlock<Mxfp4, cpu_fast>>,
                                        DecoderBlock<SlidingSinkAttention<AttentionSpan::full, cpu_fast, SinkTokens<0>>,
                                                     MoEBlock<Mxfp4, cpu_fast>>>>;
  const auto dir = test::golden_dir() / "tiny";
  const auto gptoss = load_checkpoint(dir);
  const auto zero = load_checkpoint<Zero>(dir);
  const auto tokens = test::random_tokens(20, gptoss.dims().vocab, 5);
  CHECK(gptoss.forward(tokens).storage() == zero.forward(tokens).storage());
  Sequence a = gptoss.new_sequence(32), b = zero.new_sequence(32);
  for (std::size_t t = 0; t < tokens.size(); t += 3) {
    const auto part = std::span(tokens).subspan(t, std::min<std::size_t>(3, tokens.size() - t));
    CHECK(gptoss.forward(a, part).storage() == zero.forward(b, part).storage());
  }
  CHECK(a.cache_bytes() == b.cache_bytes());
}

TEST_CASE("Sink tokens: a streaming gpt-oss runs past max_context in constant memory", "[sink-tokens][kv-cache]") {
  // gpt-oss's pattern with its full layers windowed (12) and 4 sink tokens.
  using Model = Transformer<DynamicConfig, cpu_fast, StreamingGptOssBlocks<4, 12, cpu_fast>>;
  Model model(streaming_dims());
  fill_random_weights(model, 5);
  Sequence seq = model.new_sequence(10);
  const auto tokens = test::random_tokens(60, model.dims().vocab, 11);
  model.forward(seq, std::span(tokens).first(20));
  const std::size_t bytes = seq.cache_bytes();
  CHECK(seq.cache(0).capacity() == 4 + 5);
  CHECK(seq.cache(1).capacity() == 4 + 12);
  for (std::size_t t = 20; t < tokens.size(); ++t) model.forward(seq, std::span(tokens).subspan(t, 1));
  CHECK(seq.cache_bytes() == bytes);
  CHECK(seq.length() == 60);
  // gpt-oss itself (a growing full layer) stops at the limit.
  Transformer<> gptoss(streaming_dims());
  fill_random_weights(gptoss, 5);
  Sequence limited = gptoss.new_sequence(10);
  REQUIRE_FALSE(limited.bounded());
  REQUIRE_THROWS_MATCHES(gptoss.forward(limited, std::span(tokens).first(11)), RangeError,
                         MessageHas({"context overflow"}));
}

TEST_CASE("Sink tokens: the cache takes positions only in order, from 0", "[sink-tokens][kv-cache]") {
  LayerKVCache cache(1, 2, /*window=*/2, /*max_context=*/4, /*sink_tokens=*/2);
  CHECK(cache.capacity() == 4);
  Tensor<float, 3> kv({3, 1, 2});
  REQUIRE_THROWS_MATCHES(cache.append(kv.view(), kv.view(), 5), RangeError,
                         MessageHas({"positions from 5", "continues at position 0"}));
  cache.append(kv.view(), kv.view(), 0);
  CHECK(cache.next_position() == 3);
  REQUIRE_THROWS_MATCHES(cache.append(kv.view().slice(0, 1), kv.view().slice(0, 1), 1), RangeError,
                         MessageHas({"positions from 1", "continues at position 3"}));
  cache.append(kv.view(), kv.view(), 3);
  CHECK(cache.size() == 4);  // the 2 sink tokens and the last 2
  cache.clear();
  CHECK(cache.next_position() == 0);
  REQUIRE_THROWS_AS(LayerKVCache(1, 2, 0, 4, 2), ConfigError);
  // Sizes whose products do not fit an index: refused, not wrapped.
  REQUIRE_THROWS_MATCHES(LayerKVCache(1, 64, index_t{1} << 58, 10), ConfigError, MessageHas({"too large"}));
  REQUIRE_THROWS_MATCHES(LayerKVCache(index_t{1} << 40, index_t{1} << 40, 0, 10), ConfigError,
                         MessageHas({"too large"}));
  REQUIRE_THROWS_MATCHES(LayerKVCache(1, 64, std::numeric_limits<index_t>::max(), 10, 5), ConfigError,
                         MessageHas({"too large"}));
}

namespace {

/// Records, per decode step and layer, the block input, its attention output
/// and the attention maps of every head.
struct StepRecorder {
  int heads = 0;
  std::vector<std::vector<float>> input, attn_out;  // [step * layers + l] (H)
  std::vector<AttentionProbabilities> maps;         // [step * layers + l]
  std::vector<index_t> attention_heads(int) const {
    std::vector<index_t> all(static_cast<std::size_t>(heads));
    for (int h = 0; h < heads; ++h) all[static_cast<std::size_t>(h)] = h;
    return all;
  }
  void attention(int, const AttentionProbabilities& a) { maps.push_back(a); }
  void residual(int, BlockStage stage, MatrixView<const float> x) {
    std::vector<float> row(x.data(), x.data() + x.size());
    if (stage == BlockStage::input) input.push_back(std::move(row));
    if (stage == BlockStage::attention_out) attn_out.push_back(std::move(row));
  }
};

}  // namespace

TEST_CASE("Sink tokens: attention maps see the sink tokens and rebuild each decode step's attention output",
          "[sink-tokens][introspection]") {
  using Model = Transformer<DynamicConfig, cpu_fast, StreamingPattern<cpu_fast>>;
  const ModelDims dims = streaming_dims();
  Model model(dims);
  fill_random_weights(model, 31);
  const auto tokens = test::random_tokens(20, dims.vocab, 13);
  const index_t t_count = 20, h = dims.hidden, d = dims.head_dim, nq = dims.num_heads;
  const index_t nkv = dims.num_kv_heads, group = nq / nkv, layers = dims.num_layers;
  StepRecorder rec;
  rec.heads = static_cast<int>(nq);
  Sequence seq = model.new_sequence(8);
  for (index_t t = 0; t < t_count; ++t) model.forward(seq, std::span(tokens).subspan(static_cast<std::size_t>(t), 1), rec);
  REQUIRE(rec.maps.size() == static_cast<std::size_t>(t_count * layers));
  REQUIRE(rec.input.size() == rec.maps.size());

  for (index_t l = 0; l < layers; ++l) {
    INFO("layer " << l);
    const bool learned = l % 2 == 1;
    const index_t window = learned ? 7 : 5;
    const auto& bw = l % 2 == 0 ? std::get<0>(model.weights().blocks)[static_cast<std::size_t>(l / 2)].attn
                                : std::get<1>(model.weights().blocks)[static_cast<std::size_t>(l / 2)].attn;
    // Every position's v, from the block inputs (v does not depend on the position).
    Tensor<float, 2> x({t_count, h});
    for (index_t t = 0; t < t_count; ++t) {
      std::copy_n(rec.input[static_cast<std::size_t>(t * layers + l)].data(), h, x.data() + t * h);
    }
    const SlidingSinkAttention<AttentionSpan::sliding, cpu_fast> plain(AttentionParams::from(dims));
    Tensor<float, 3> q({t_count, nq, d}), k({t_count, nkv, d}), v({t_count, nkv, d});
    plain.project(bw, x.view(), 0, q.view(), k.view(), v.view());

    for (index_t t = 0; t < t_count; ++t) {
      INFO("step " << t);
      const AttentionProbabilities& m = rec.maps[static_cast<std::size_t>(t * layers + l)];
      const index_t s_count = m.key_positions.extent(0);
      REQUIRE(m.probs.shape() == std::array{nq, index_t{1}, s_count});
      REQUIRE(m.query_positions(0) == t);
      std::vector<double> a(static_cast<std::size_t>(nq * d), 0.0);
      for (index_t hq = 0; hq < nq; ++hq) {
        double total = m.sink(hq, 0), sink_token_mass = 0.0;
        if (!learned) CHECK(m.sink(hq, 0) == 0.0f);
        for (index_t j = 0; j < s_count; ++j) {
          const index_t kp = m.key_positions(j);
          const bool visible = kp <= t && (kp < 3 || t - window < kp);
          const float p = m.probs(hq, 0, j);
          if (!visible) CHECK(p == 0.0f);
          if (visible) CHECK(p > 0.0f);
          if (kp < 3) sink_token_mass += p;
          total += p;
          for (index_t c = 0; c < d; ++c) a[static_cast<std::size_t>(hq * d + c)] += static_cast<double>(p) * v(kp, hq / group, c);
        }
        CHECK(total == Approx(1.0).margin(1e-5));
        if (t >= window + 3) CHECK(sink_token_mass > 0.0);  // sink tokens past the window still attended
      }
      const auto& in = rec.input[static_cast<std::size_t>(t * layers + l)];
      std::vector<double> rebuilt(static_cast<std::size_t>(h));
      for (index_t o = 0; o < h; ++o) {
        double acc = in[static_cast<std::size_t>(o)] + static_cast<double>(bw.out_bias[o].to_float());
        for (index_t c = 0; c < nq * d; ++c) acc += static_cast<double>(bw.out_weight(o, c).to_float()) * a[static_cast<std::size_t>(c)];
        rebuilt[static_cast<std::size_t>(o)] = acc;
      }
      GPTOSS_REQUIRE_CLOSE(compare_to_max(rec.attn_out[static_cast<std::size_t>(t * layers + l)], rebuilt, 0.0, 1e-4));
    }
  }
}
