// The model type on random weights of shapes no compiled config names,
// against an independent float64 re-implementation of gpt-oss
// (tests/support/float64_model.hpp);
// KV-cache decoding, window-bounded cache memory, context limits, several
// sequences on one model, composition of other block patterns, and
// checkpoint loading errors.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <numbers>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/gptoss.hpp"
#include "support/compare.hpp"
#include "support/float64_model.hpp"
#include "support/matchers.hpp"

using namespace gptoss;
using gptoss::test::compare_to_max;
using gptoss::test::f64::gptoss_layers;
using gptoss::test::f64::reference_logits;
using gptoss::test::MessageHas;

namespace {

// ---- helpers ----------------------------------------------------------------

/// 6 query heads over 3 KV heads of 32, an odd vocabulary, window 3.
ModelDims odd_dims() {
  return ModelDims{.num_layers = 4, .num_experts = 5, .experts_per_token = 2, .vocab = 97, .hidden = 64,
                   .intermediate = 32, .head_dim = 32, .num_heads = 6, .num_kv_heads = 3,
                   .sliding_window = 3, .initial_context = 4096};
}

std::vector<std::int32_t> random_tokens(std::size_t n, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(0, vocab - 1);
  std::vector<std::int32_t> t(n);
  for (auto& v : t) v = pick(rng);
  return t;
}

std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("gptoss_model_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace

TEMPLATE_TEST_CASE("A model of a shape no config names matches a float64 recomputation", "[model]",
                   cpu_reference, cpu_fast) {
  const ModelDims dims = odd_dims();
  Transformer<DynamicConfig, TestType> random_model(dims);
  fill_random_weights(random_model, 7);
  // Round trip through an original-layout checkpoint on disk.
  const auto dir = temp_dir("odd");
  write_original_checkpoint(random_model, dir);
  const auto model = load_original_checkpoint<Transformer<DynamicConfig, TestType>>(dir);
  CHECK(model.dims() == dims);

  const auto tokens = random_tokens(9, dims.vocab, 3);
  const Tensor<float, 2> logits = model.forward(tokens);
  const auto expected = reference_logits(model, gptoss_layers(model), tokens);
  GPTOSS_REQUIRE_CLOSE(compare_to_max(logits.storage(), expected, 0.0, 1e-4));
  // The loaded model equals the one written.
  GPTOSS_REQUIRE_CLOSE(compare_to_max(random_model.forward(tokens).storage(), logits.storage(), 0.0, 0.0));
  std::filesystem::remove_all(dir);
}

TEST_CASE("Prefill plus cached decoding equals a full prefill at every split", "[model][kv-cache]") {
  Transformer<> model(odd_dims());
  fill_random_weights(model, 11);
  const auto tokens = random_tokens(12, model.dims().vocab, 5);
  const Tensor<float, 2> full = model.forward(tokens);
  for (std::size_t split : {1u, 2u, 5u, 11u}) {
    Sequence seq = model.new_sequence(64);
    std::vector<float> rows;
    const auto first = model.forward(seq, std::span(tokens).first(split));
    rows.insert(rows.end(), first.storage().begin(), first.storage().end());
    // The rest in chunks of 1 and 2 tokens.
    for (std::size_t t = split; t < tokens.size();) {
      const std::size_t n = std::min<std::size_t>(t % 2 + 1, tokens.size() - t);
      const auto step = model.forward(seq, std::span(tokens).subspan(t, n));
      rows.insert(rows.end(), step.storage().begin(), step.storage().end());
      t += n;
    }
    INFO("split " << split);
    GPTOSS_REQUIRE_CLOSE(compare_to_max(rows, full.storage(), 0.0, 2e-5));
  }
}

TEST_CASE("forward_last gives the last row of forward", "[model][kv-cache]") {
  Transformer<> model(odd_dims());
  fill_random_weights(model, 31);
  const auto tokens = random_tokens(6, model.dims().vocab, 8);
  const Tensor<float, 2> full = model.forward(tokens);
  Sequence seq = model.new_sequence(16);
  const Tensor<float, 2> last = model.forward_last(seq, tokens);
  REQUIRE(last.extent(0) == 1);
  CHECK(seq.length() == 6);
  const std::vector<float> expected(full.data() + 5 * full.extent(1), full.data() + 6 * full.extent(1));
  GPTOSS_REQUIRE_CLOSE(compare_to_max(last.storage(), expected, 0.0, 1e-6));
}

TEST_CASE("Sliding-layer caches stay bounded by the window while full layers grow", "[model][kv-cache]") {
  Transformer<> model(odd_dims());
  fill_random_weights(model, 13);
  const index_t window = model.dims().sliding_window;
  Sequence seq = model.new_sequence(256);
  const auto tokens = random_tokens(40, model.dims().vocab, 9);
  std::size_t sliding_bytes = 0;
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    model.forward(seq, std::span(tokens).subspan(t, 1));
    const LayerKVCache& sliding = seq.cache(0);
    const LayerKVCache& full = seq.cache(1);
    REQUIRE(sliding.sliding());
    REQUIRE_FALSE(full.sliding());
    CHECK(sliding.size() == std::min<index_t>(static_cast<index_t>(t) + 1, window));
    CHECK(sliding.capacity() == window);
    CHECK(full.size() == static_cast<index_t>(t) + 1);
    if (t == static_cast<std::size_t>(window)) sliding_bytes = sliding.bytes();
    if (t > static_cast<std::size_t>(window)) CHECK(sliding.bytes() == sliding_bytes);
  }
  CHECK(seq.cache(1).bytes() > 10 * seq.cache(0).bytes());
}

TEST_CASE("Going past the context limit is a clear error", "[model][kv-cache]") {
  Transformer<> model(odd_dims());
  fill_random_weights(model, 17);
  Sequence seq = model.new_sequence(6);
  const auto tokens = random_tokens(7, model.dims().vocab, 1);
  model.forward(seq, std::span(tokens).first(5));
  model.forward(seq, std::span(tokens).subspan(5, 1));
  REQUIRE_THROWS_MATCHES(model.forward(seq, std::span(tokens).subspan(6, 1)), RangeError,
                         MessageHas({"context overflow", "6"}));
  REQUIRE_THROWS_AS(model.forward(seq, std::span<const std::int32_t>()), RangeError);
  const std::vector<std::int32_t> bad{1, 97};
  Sequence fresh = model.new_sequence(8);
  REQUIRE_THROWS_MATCHES(model.forward(fresh, bad), RangeError,
                         MessageHas({"token id 97 at position 1"}));
}

TEST_CASE("A sequence made by a model of another shape is refused", "[model][kv-cache]") {
  Transformer<> model(odd_dims());
  fill_random_weights(model, 17);
  const auto tokens = random_tokens(8, model.dims().vocab, 2);
  const auto other_sequence = [&](ModelDims dims) {
    Transformer<> other(dims);
    fill_random_weights(other, 18);
    Sequence seq = other.new_sequence(64);
    other.forward(seq, std::span(tokens).first(7));
    return seq;
  };
  ModelDims narrower = odd_dims();
  narrower.sliding_window = 2;
  Sequence seq = other_sequence(narrower);
  REQUIRE_THROWS_MATCHES(model.forward(seq, std::span(tokens).subspan(7, 1)), Error,
                         MessageHas({"layer 0 cache has window 2", "needs window 3"}));
  ModelDims fewer_heads = odd_dims();
  fewer_heads.num_heads = 2;
  fewer_heads.num_kv_heads = 1;
  seq = other_sequence(fewer_heads);
  REQUIRE_THROWS_MATCHES(model.forward(seq, std::span(tokens).subspan(7, 1)), Error,
                         MessageHas({"1 KV heads of 32", "3 KV heads of 32"}));
  ModelDims shallower = odd_dims();
  shallower.num_layers = 2;
  seq = other_sequence(shallower);
  REQUIRE_THROWS_MATCHES(model.forward(seq, std::span(tokens).subspan(7, 1)), Error,
                         MessageHas({"model with 2 layers"}));
  // Its own sequence still runs.
  Sequence own = model.new_sequence(64);
  model.forward(own, std::span(tokens).first(7));
  CHECK(model.forward(own, std::span(tokens).subspan(7, 1)).size() == model.dims().vocab);
}

TEST_CASE("Independent sequences share one model, also from several threads", "[model][kv-cache]") {
  Transformer<> model(odd_dims());
  fill_random_weights(model, 19);
  const auto a = random_tokens(8, model.dims().vocab, 21), b = random_tokens(8, model.dims().vocab, 22);
  const auto full_a = model.forward(a), full_b = model.forward(b);
  const auto decode = [&](const std::vector<std::int32_t>& tokens, std::vector<float>& out) {
    Sequence seq = model.new_sequence(16);
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      const auto step = model.forward(seq, std::span(tokens).subspan(t, 1));
      out.insert(out.end(), step.storage().begin(), step.storage().end());
    }
  };
  std::vector<float> out_a, out_b;
  std::thread ta(decode, std::cref(a), std::ref(out_a)), tb(decode, std::cref(b), std::ref(out_b));
  ta.join();
  tb.join();
  GPTOSS_REQUIRE_CLOSE(compare_to_max(out_a, full_a.storage(), 0.0, 2e-5));
  GPTOSS_REQUIRE_CLOSE(compare_to_max(out_b, full_b.storage(), 0.0, 2e-5));
}

namespace {
// A model no header names: every layer attends to the full context and the
// experts are stored as bf16.
using FullBf16Block = DecoderBlock<SlidingSinkAttention<AttentionSpan::full>, MoEBlock<MatrixView<const bf16>>>;
using AllFullBf16 = Transformer<DynamicConfig, cpu_reference, BlockPattern<FullBf16Block>>;
}  // namespace

TEST_CASE("Other block patterns and expert types compose from the same parts", "[model][composition]") {
  AllFullBf16 model(odd_dims());
  fill_random_weights(model, 23);
  const auto tokens = random_tokens(8, model.dims().vocab, 4);
  const Tensor<float, 2> logits = model.forward(tokens);
  // Reference: same math, bf16 experts, no window anywhere.
  const ModelDims& d = model.dims();
  std::vector<test::f64::LayerRef<MoEWeights<MatrixView<const bf16>>>> layers;
  for (const auto& bw : std::get<0>(model.weights().blocks)) layers.push_back({&bw.attn, &bw.mlp, {0}});
  const auto expected = reference_logits(model, layers, tokens);
  GPTOSS_REQUIRE_CLOSE(compare_to_max(logits.storage(), expected, 0.0, 1e-4));
  // Its parameter count sees bf16 experts.
  const ParameterCount count = count_parameters(model);
  CHECK(count.bytes_by_dtype.count("MXFP4") == 0);
  CHECK(count.expert == d.num_layers * d.num_experts *
                            (2 * d.intermediate * d.hidden + 2 * d.intermediate + d.hidden * d.intermediate + d.hidden));
}

TEST_CASE("Checkpoint loading reports missing, unexpected and mis-shaped tensors", "[model][checkpoint]") {
  Transformer<> model(odd_dims());
  fill_random_weights(model, 29);
  const auto dir = temp_dir("corrupt");
  write_original_checkpoint(model, dir);
  const io::SafetensorsFile original(dir / "model.safetensors");

  // Rewrites model.safetensors from the original with `edit` applied to the records.
  const auto rewrite = [&](auto edit) {
    std::vector<io::TensorRecord> records;
    for (const auto& t : original.tensors()) records.push_back({t.name, t.dtype, t.shape, original.bytes(t.name)});
    edit(records);
    io::write_safetensors(dir / "model.safetensors.tmp", records);
    std::filesystem::rename(dir / "model.safetensors.tmp", dir / "model.safetensors");
  };
  const auto reload = [&] { return load_original_checkpoint(dir); };

  SECTION("missing tensor") {
    rewrite([](auto& r) { std::erase_if(r, [](const auto& t) { return t.name == "block.2.attn.sinks"; }); });
    REQUIRE_THROWS_MATCHES(reload(), FormatError,
                           MessageHas({"missing", "block.2.attn.sinks"}));
  }
  SECTION("unexpected tensor") {
    static const std::vector<float> extra(4, 1.0f);
    rewrite([](auto& r) { r.push_back(io::TensorRecord::of<float>("block.9.attn.extra", {4}, std::span<const float>(extra))); });
    REQUIRE_THROWS_MATCHES(reload(), FormatError,
                           MessageHas({"unexpected", "block.9.attn.extra"}));
  }
  SECTION("wrong shape") {
    rewrite([](auto& r) {
      for (auto& t : r)
        if (t.name == "block.1.attn.qkv.bias") {
          t.shape = {static_cast<index_t>(t.data.size() / 4), 2};
        }
    });
    REQUIRE_THROWS_MATCHES(reload(), FormatError,
                           MessageHas({"block.1.attn.qkv.bias", "expected"}));
  }
  SECTION("wrong dtype") {
    rewrite([](auto& r) {
      for (auto& t : r)
        if (t.name == "norm.scale") {
          t.dtype = DType::I16;
        }
    });
    REQUIRE_THROWS_MATCHES(reload(), FormatError,
                           MessageHas({"norm.scale", "BF16"}));
  }
  SECTION("config missing a key") {
    auto config = original_config_json(model.dims());
    config.erase("head_dim");
    std::ofstream(dir / "config.json") << config.dump();
    REQUIRE_THROWS_MATCHES(reload(), ConfigError,
                           MessageHas({"head_dim", "config.json"}));
  }
  SECTION("config breaking a rule") {
    auto config = original_config_json(model.dims());
    config["num_key_value_heads"] = 4;
    std::ofstream(dir / "config.json") << config.dump();
    REQUIRE_THROWS_MATCHES(reload(), ConfigError, MessageHas({"divisible"}));
  }
  SECTION("config with a non-integral layer count") {
    auto config = original_config_json(model.dims());
    config["num_hidden_layers"] = 2.5;
    std::ofstream(dir / "config.json") << config.dump();
    REQUIRE_THROWS_MATCHES(reload(), ConfigError, MessageHas({"num_hidden_layers"}));
  }
  SECTION("missing model.safetensors") {
    std::filesystem::remove(dir / "model.safetensors");
    REQUIRE_THROWS_MATCHES(reload(), FormatError, MessageHas({"model.safetensors"}));
  }
  std::filesystem::remove_all(dir);
}
