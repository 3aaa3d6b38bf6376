// Model configs: the released gpt-oss-20b / gpt-oss-120b values and the test
// configs, the YaRN bounds and concentration against an independent float64
// computation, the compile-time natural log, and every validity rule (a bad
// ModelDims is not valid() and validate() throws ConfigError naming the rule).
#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "gptoss/config/gpt_oss.hpp"
#include "gptoss/config/model_dims.hpp"
#include "gptoss/config/test_configs.hpp"

#include "support/matchers.hpp"

using namespace gptoss;

namespace {

/// Matches an exception whose what() contains every given fragment.
using MentionsAll = test::MessageHas;

// Configs that must be rejected at compile time.
struct BadHeads {
  static constexpr ModelDims value{.num_heads = 64, .num_kv_heads = 7};
};
struct BadYarn {
  static constexpr ModelDims value{.initial_context = 64};
};
struct NotAConfig {
  static constexpr int value = 3;
};
struct NoValue {};

static_assert(FixedModelConfig<GptOss20b> && FixedModelConfig<GptOss120b>);
static_assert(FixedModelConfig<GoldenTiny> && FixedModelConfig<TinyMoE> &&
              FixedModelConfig<TinyTop1>);
static_assert(!FixedModelConfig<BadHeads> && !FixedModelConfig<BadYarn>);
static_assert(!FixedModelConfig<NotAConfig> && !FixedModelConfig<NoValue>);
static_assert(ModelConfig<GptOss20b> && ModelConfig<DynamicConfig> && !ModelConfig<BadHeads>);
static_assert(ModelDims::is_sliding_layer(0) && !ModelDims::is_sliding_layer(1));
static_assert(!ModelDims{.num_layers = 2, .num_experts = 4, .experts_per_token = 5}.valid());

/// The YaRN ramp bounds in float64 with std::log:
/// low = d/2 ln(L0 / (beta 2 pi)) / ln(theta), high = d/2 ln(L0 / (alpha 2 pi)) / ln(theta).
double yarn_bound(double head_dim, double l0, double ntk, double theta) {
  return head_dim / 2.0 * std::log(l0 / (ntk * 2.0 * std::numbers::pi)) / std::log(theta);
}

/// The hyper-parameters both released models share (see check_released below).
void check_released_common(const ModelDims& d) {
  CHECK(d.experts_per_token == 4);
  CHECK(d.vocab == 201088);
  CHECK(d.hidden == 2880);
  CHECK(d.intermediate == 2880);
  CHECK(d.head_dim == 64);
  CHECK(d.num_heads == 64);
  CHECK(d.num_kv_heads == 8);
  CHECK(d.sliding_window == 128);
  CHECK(d.initial_context == 4096);
  CHECK(d.rope_theta == 150000.0);
  CHECK(d.rope_scaling_factor == 32.0);
  CHECK(d.rope_ntk_alpha == 1.0);
  CHECK(d.rope_ntk_beta == 32.0);
  CHECK(d.swiglu_limit == 7.0f);
  CHECK(d.rms_eps == 1e-5f);
  // Merged QKV projection: 64 * (64 + 2 * 8) = 5120 rows, as in the checkpoint.
  CHECK(d.qkv_dim() == 5120);
  CHECK(d.valid());
  CHECK_NOTHROW(validate(d));
}

}  // namespace

// Values from openai/gpt-oss-20b and openai/gpt-oss-120b, original/config.json
// (num_hidden_layers, num_experts, experts_per_token, vocab_size, hidden_size,
// intermediate_size, swiglu_limit, head_dim, num_attention_heads,
// num_key_value_heads, sliding_window, initial_context_length, rope_theta,
// rope_scaling_factor, rope_ntk_alpha, rope_ntk_beta); rms_norm_eps 1e-5 from
// the Hugging Face config.json and the reference's RMSNorm(eps=1e-05).
TEST_CASE("config: gpt-oss-20b carries the released hyper-parameters", "[config]") {
  constexpr ModelDims d = GptOss20b::value;
  static_assert(d.num_layers == 24 && d.num_experts == 32);
  CHECK(d.num_layers == 24);
  CHECK(d.num_experts == 32);
  check_released_common(d);
}

TEST_CASE("config: gpt-oss-120b carries the released hyper-parameters", "[config]") {
  constexpr ModelDims d = GptOss120b::value;
  static_assert(d.num_layers == 36 && d.num_experts == 128);
  CHECK(d.num_layers == 36);
  CHECK(d.num_experts == 128);
  check_released_common(d);
}

TEST_CASE("config: the test configs have their documented sizes", "[config]") {
  constexpr ModelDims moe = TinyMoE::value;
  CHECK(moe.num_layers == 2);
  CHECK(moe.num_experts == 4);
  CHECK(moe.experts_per_token == 2);
  CHECK(moe.hidden == 64);
  CHECK(moe.intermediate == 64);
  CHECK(moe.head_dim == 16);
  CHECK(moe.num_heads == 4);
  CHECK(moe.num_kv_heads == 2);
  CHECK(moe.sliding_window == 4);
  CHECK(moe.vocab == 64);
  // TinyTop1 is TinyMoE with one expert and top-1.
  constexpr ModelDims top1 = TinyTop1::value;
  CHECK(top1.num_experts == 1);
  CHECK(top1.experts_per_token == 1);
  CHECK(top1.hidden == moe.hidden);
  CHECK(top1.head_dim == moe.head_dim);
  CHECK(top1.num_heads == moe.num_heads);
  CHECK(top1.num_kv_heads == moe.num_kv_heads);
  CHECK(top1.sliding_window == moe.sliding_window);
  CHECK(top1.vocab == moe.vocab);
  // Both keep the gpt-oss rope parameters, and the YaRN bounds hold at head_dim 16.
  for (const ModelDims& d : {moe, top1}) {
    CHECK(d.rope_theta == 150000.0);
    CHECK(d.rope_scaling_factor == 32.0);
    CHECK(d.rope().valid());
  }
}

TEST_CASE("config: GoldenTiny matches the bundled tiny checkpoint's config.json", "[config]") {
  const auto path = std::filesystem::path(GPTOSS_TEST_DATA_DIR) / "golden" / "tiny" / "config.json";
  std::ifstream in(path);
  REQUIRE(in.good());
  const nlohmann::json j = nlohmann::json::parse(in);
  constexpr ModelDims d = GoldenTiny::value;
  CHECK(d.num_layers == j.at("num_hidden_layers").get<int>());
  CHECK(d.num_experts == j.at("num_experts").get<int>());
  CHECK(d.experts_per_token == j.at("experts_per_token").get<int>());
  CHECK(d.vocab == j.at("vocab_size").get<int>());
  CHECK(d.hidden == j.at("hidden_size").get<int>());
  CHECK(d.intermediate == j.at("intermediate_size").get<int>());
  CHECK(d.head_dim == j.at("head_dim").get<int>());
  CHECK(d.num_heads == j.at("num_attention_heads").get<int>());
  CHECK(d.num_kv_heads == j.at("num_key_value_heads").get<int>());
  CHECK(d.sliding_window == j.at("sliding_window").get<int>());
  CHECK(d.initial_context == j.at("initial_context_length").get<int>());
  CHECK(d.rope_theta == j.at("rope_theta").get<double>());
  CHECK(d.rope_scaling_factor == j.at("rope_scaling_factor").get<double>());
  CHECK(d.rope_ntk_alpha == j.at("rope_ntk_alpha").get<double>());
  CHECK(d.rope_ntk_beta == j.at("rope_ntk_beta").get<double>());
  CHECK(d.swiglu_limit == j.at("swiglu_limit").get<float>());
}

TEST_CASE("config: YaRN bounds and concentration match the float64 formulas", "[config][yarn]") {
  // Computed at compile time (detail::log's series) ...
  constexpr RopeParams rope = GptOss20b::value.rope();
  constexpr double low = rope.low(), high = rope.high(), conc = rope.concentration();
  static_assert(8.0 < low && low < 8.2 && 17.3 < high && high < 17.5);
  // ... and independently at run time with std::log.
  const double want_low = yarn_bound(64, 4096, 32, 150000);
  const double want_high = yarn_bound(64, 4096, 1, 150000);
  CHECK(want_low == Approx(8.0929).epsilon(1e-4));
  CHECK(want_high == Approx(17.3983).epsilon(1e-4));
  CHECK(low == Approx(want_low).epsilon(1e-12));
  CHECK(high == Approx(want_high).epsilon(1e-12));
  CHECK(conc == Approx(0.1 * std::log(32.0) + 1.0).epsilon(1e-12));
  CHECK(conc == Approx(1.3465735903).epsilon(1e-10));
  // The same functions called at run time.
  RopeParams runtime = rope;
  runtime.head_dim = 16;
  CHECK(runtime.low() == Approx(yarn_bound(16, 4096, 32, 150000)).epsilon(1e-12));
  CHECK(runtime.high() == Approx(yarn_bound(16, 4096, 1, 150000)).epsilon(1e-12));
  CHECK(runtime.valid());
  // The 120b and test configs share the rope parameters.
  CHECK(GptOss120b::value.rope().low() == Approx(want_low).epsilon(1e-12));
  CHECK(GoldenTiny::value.rope().high() == Approx(want_high).epsilon(1e-12));
  // The bound the reference asserts: 0 < low < high < head_dim/2 - 1.
  CHECK(0.0 < low);
  CHECK(low < high);
  CHECK(high < 64 / 2.0 - 1.0);
  // factor <= 1 is plain RoPE: concentration 1, no YaRN bounds to satisfy.
  constexpr RopeParams plain{
      .head_dim = 16, .theta = 150000.0, .scaling_factor = 1.0, .initial_context = 64.0};
  static_assert(plain.concentration() == 1.0 && plain.valid());
  CHECK(plain.concentration() == 1.0);
  CHECK(plain.valid());
}

TEST_CASE("config: detail::log in constant expressions matches std::log", "[config]") {
  constexpr double two_pi = 2.0 * std::numbers::pi;
  static constexpr double xs[] = {
      2.0,         0.5,       10.0, 32.0,  150000.0, 4096.0 / (32 * two_pi),  4096.0 / two_pi,
      0.9999999,   1.0000001, 1.5,  1e300, 1e-300,   4.9406564584124654e-324, 3.0,
      1.9999999999};
  // Each value forced through constant evaluation (the series), then compared
  // with the C library at run time.
  constexpr auto logs = [] {
    std::array<double, std::size(xs)> out{};
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = detail::log(xs[i]);
    return out;
  }();
  for (std::size_t i = 0; i < logs.size(); ++i) {
    INFO("x = " << xs[i]);
    const double want = std::log(xs[i]);
    CHECK(std::fabs(logs[i] - want) <= 1e-12 * std::fabs(want));
    // At run time detail::log is std::log.
    volatile double x = xs[i];
    CHECK(detail::log(x) == want);
  }
  constexpr double at_one = detail::log(1.0);
  CHECK(std::fabs(at_one) <= 1e-15);
  // Special values as std::log: -inf at 0, NaN below 0 and for NaN, +inf at +inf.
  constexpr double inf = std::numeric_limits<double>::infinity();
  constexpr double at_zero = detail::log(0.0), at_inf = detail::log(inf);
  constexpr double at_neg = detail::log(-1.0),
                   at_nan = detail::log(std::numeric_limits<double>::quiet_NaN());
  CHECK(at_zero == -inf);
  CHECK(at_inf == inf);
  CHECK(std::isnan(at_neg));
  CHECK(std::isnan(at_nan));
  volatile double minus_one = -1.0;
  CHECK(std::isnan(detail::log(minus_one)));
}

TEST_CASE("config: detail::floor rounds down and passes special values through", "[config]") {
  constexpr double inf = std::numeric_limits<double>::infinity();
  static_assert(detail::floor(2.5) == 2.0 && detail::floor(-2.5) == -3.0 && detail::floor(-3.0) == -3.0);
  static_assert(detail::floor(0x1p70) == 0x1p70 && detail::floor(-0x1p70) == -0x1p70);
  static_assert(detail::floor(inf) == inf && detail::floor(-inf) == -inf);
  // At run time too (UBSan checks the casts): NaN, infinities and huge values
  // come back unchanged instead of going through an out-of-range cast.
  volatile double nan = std::numeric_limits<double>::quiet_NaN(), big = 0x1p63, minus = -7.25;
  CHECK(std::isnan(detail::floor(nan)));
  CHECK(detail::floor(big) == 0x1p63);
  CHECK(detail::floor(-big) == -0x1p63);
  CHECK(detail::floor(minus) == -8.0);
}

TEST_CASE("config: is_sliding_layer alternates starting with a sliding layer", "[config]") {
  CHECK(ModelDims::is_sliding_layer(0));
  CHECK_FALSE(ModelDims::is_sliding_layer(1));
  CHECK(ModelDims::is_sliding_layer(2));
  CHECK_FALSE(ModelDims::is_sliding_layer(23));
  CHECK(ModelDims::is_sliding_layer(34));
  CHECK_FALSE(ModelDims::is_sliding_layer(35));
}

TEST_CASE("config: an invalid ModelDims is rejected naming the rule", "[config][bad-input]") {
  struct Case {
    const char* what;
    ModelDims dims;
    std::vector<std::string> fragments;
  };
  const std::vector<Case> cases = {
      {"heads not divisible by kv heads",
       {.num_heads = 64, .num_kv_heads = 7},
       {"num_attention_heads", "divisible", "num_key_value_heads"}},
      {"hidden not divisible by 32", {.hidden = 2880 + 16}, {"hidden_size", "32"}},
      {"odd head_dim", {.head_dim = 63}, {"head_dim", "even"}},
      {"experts_per_token > num_experts",
       {.num_experts = 4, .experts_per_token = 5},
       {"experts_per_token", "num_experts"}},
      {"experts_per_token 0", {.experts_per_token = 0}, {"experts_per_token"}},
      {"YaRN low bound below 0 (initial_context 64)", {.initial_context = 64}, {"YaRN", "low"}},
      {"YaRN high bound past head_dim/2 - 1", {.initial_context = 1 << 21}, {"YaRN", "high"}},
      {"YaRN low just below 0 (initial_context 200)", {.initial_context = 200}, {"YaRN"}},
      {"YaRN high in (head_dim/2 - 1, head_dim/2)", {.initial_context = 800000}, {"YaRN"}},
      {"YaRN low == high", {.rope_ntk_alpha = 32.0}, {"YaRN", "low < high"}},
      {"rope_theta <= 1", {.rope_theta = 1.0}, {"YaRN"}},
      {"intermediate not divisible by 32", {.intermediate = 100}, {"intermediate_size", "32"}},
      {"no layers", {.num_layers = 0}, {"num_layers"}},
      {"no experts", {.num_experts = 0}, {"num_experts"}},
      {"no vocab", {.vocab = 0}, {"vocab_size"}},
      {"no kv heads", {.num_kv_heads = 0}, {"head counts"}},
      {"negative window", {.sliding_window = -1}, {"sliding_window"}},
      {"no window (even layers slide)", {.sliding_window = 0}, {"sliding_window", "positive"}},
      {"2^31 - 1 layers", {.num_layers = 2147483647}, {"num_layers", "at most"}},
      {"2^20 experts", {.num_experts = 1 << 20}, {"num_experts", "at most"}},
      {"a 2^25 vocabulary", {.vocab = 1 << 25}, {"vocab_size", "at most"}},
      {"hidden 2^21", {.hidden = 1 << 21}, {"hidden_size", "at most"}},
      {"head_dim 2^24", {.head_dim = 1 << 24, .num_heads = 1, .num_kv_heads = 1}, {"head_dim", "at most"}},
      {"8192 query heads", {.num_heads = 8192}, {"num_attention_heads", "at most"}},
      {"initial context 2^25", {.initial_context = 1 << 25}, {"initial_context_length", "at most"}},
      {"no initial context", {.initial_context = 0}, {"initial_context_length"}},
      {"swiglu_limit 0", {.swiglu_limit = 0.0f}, {"swiglu_limit"}},
      {"rms_eps NaN", {.rms_eps = std::nanf("")}, {"rms_eps"}},
  };
  CHECK(ModelDims{}.valid());
  CHECK_NOTHROW(validate(ModelDims{}));
  for (const Case& c : cases) {
    INFO(c.what);
    CHECK_FALSE(c.dims.valid());
    const std::string rule = c.dims.first_violation();
    CHECK(std::all_of(c.fragments.begin(), c.fragments.end(),
                      [&](const std::string& f) { return rule.find(f) != std::string::npos; }));
    std::vector<std::string> parts = c.fragments;
    parts.push_back("invalid model config");
    CHECK_THROWS_MATCHES(validate(c.dims), ConfigError, MentionsAll(parts));
  }
  // The YaRN cases are invalid because of the bounds: low or high really is out of range.
  CHECK(yarn_bound(64, 64, 32, 150000) < 0.0);
  CHECK(yarn_bound(64, 1 << 21, 1, 150000) > 64 / 2.0 - 1.0);
  CHECK(ModelDims{.initial_context = 64}.rope().low() < 0.0);
  CHECK(ModelDims{.initial_context = 1 << 21}.rope().high() > 31.0);
  // The boundary cases sit just outside the bounds, and just inside is valid.
  CHECK(yarn_bound(64, 200, 32, 150000) == Approx(-0.0142).margin(1e-3));
  CHECK(yarn_bound(64, 800000, 1, 150000) == Approx(31.56).margin(1e-2));
  CHECK(ModelDims{.initial_context = 202}.valid());
  CHECK(ModelDims{.initial_context = 202}.rope().low() > 0.0);
  CHECK(ModelDims{.initial_context = 600000}.valid());
  CHECK(ModelDims{.initial_context = 600000}.rope().high() < 31.0);
}
