// The model type on random weights of shapes no compiled config names,
// against an independent float64 re-implementation of gpt-oss written here;
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
#include "support/matchers.hpp"

using namespace gptoss;
using gptoss::test::compare_to_max;
using gptoss::test::MessageHas;

namespace {

using Mat = std::vector<std::vector<double>>;  // row-major (rows, cols)

// ---- independent float64 model -------------------------------------------

double bf(bf16 v) { return v.to_float(); }

Mat to_double(const MatrixView<const bf16>& w) {
  Mat m(static_cast<std::size_t>(w.extent(0)), std::vector<double>(static_cast<std::size_t>(w.extent(1))));
  for (index_t r = 0; r < w.extent(0); ++r)
    for (index_t c = 0; c < w.extent(1); ++c) m[r][c] = bf(w(r, c));
  return m;
}

/// MXFP4 decode from the raw bytes, written from the format's definition.
Mat to_double(const FP4TensorView<MXFP4Checkpoint>& w) {
  static const double lut[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6};
  Mat m(static_cast<std::size_t>(w.rows()), std::vector<double>(static_cast<std::size_t>(w.cols())));
  const index_t groups = w.cols() / 32;
  for (index_t r = 0; r < w.rows(); ++r) {
    for (index_t g = 0; g < groups; ++g) {
      const std::uint8_t* block = w.blocks() + (r * groups + g) * 16;
      const double scale = std::ldexp(1.0, static_cast<int>(w.scales()[r * groups + g]) - 127);
      for (int j = 0; j < 16; ++j) {
        m[r][g * 32 + 2 * j] = lut[block[j] & 15] * scale;
        m[r][g * 32 + 2 * j + 1] = lut[block[j] >> 4] * scale;
      }
    }
  }
  return m;
}

std::vector<double> vec(const VectorView<const bf16>& v) {
  std::vector<double> out;
  for (index_t i = 0; i < v.extent(0); ++i) out.push_back(bf(v[i]));
  return out;
}

std::vector<double> matvec(const Mat& w, const std::vector<double>& x, const std::vector<double>* b) {
  std::vector<double> y(w.size());
  for (std::size_t r = 0; r < w.size(); ++r) {
    double acc = b ? (*b)[r] : 0.0;
    for (std::size_t c = 0; c < x.size(); ++c) acc += w[r][c] * x[c];
    y[r] = acc;
  }
  return y;
}

std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<double>& scale, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / x.size() + eps);
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * scale[i];
  return y;
}

/// YaRN inverse frequencies and concentration (gpt-oss reference formulas).
std::pair<std::vector<double>, double> yarn(const ModelDims& d) {
  const int half = d.head_dim / 2;
  std::vector<double> inv(half);
  double conc = 1.0;
  const double lo = half * std::log(d.initial_context / (d.rope_ntk_beta * 2 * std::numbers::pi)) / std::log(d.rope_theta);
  const double hi = half * std::log(d.initial_context / (d.rope_ntk_alpha * 2 * std::numbers::pi)) / std::log(d.rope_theta);
  for (int i = 0; i < half; ++i) {
    const double freq = std::pow(d.rope_theta, 2.0 * i / d.head_dim);
    if (d.rope_scaling_factor > 1) {
      const double mask = 1 - std::clamp((i - lo) / (hi - lo), 0.0, 1.0);
      inv[i] = 1 / (d.rope_scaling_factor * freq) * (1 - mask) + 1 / freq * mask;
      conc = 0.1 * std::log(d.rope_scaling_factor) + 1;
    } else {
      inv[i] = 1 / freq;
    }
  }
  return {inv, conc};
}

void rotate(double* x, int dim, double pos, const std::vector<double>& inv, double conc) {
  const int half = dim / 2;
  for (int i = 0; i < half; ++i) {
    const double c = std::cos(pos * inv[i]) * conc, s = std::sin(pos * inv[i]) * conc;
    const double x1 = x[i], x2 = x[i + half];
    x[i] = x1 * c - x2 * s;
    x[i + half] = x2 * c + x1 * s;
  }
}

/// Weights of one layer as the float64 model reads them.
template <class ExpertMatrix>
struct LayerRef {
  const AttentionWeights* attn;
  const MoEWeights<ExpertMatrix>* mlp;
  index_t window;  // 0: full attention
};

/// The layers of a gpt-oss-pattern model (even layers slide).
template <class Model>
auto gptoss_layers(const Model& model) {
  using E = typename std::tuple_element_t<0, std::remove_cvref_t<decltype(model.weights().blocks)>>::value_type;
  std::vector<LayerRef<typename decltype(E::mlp.mlp1_weight)::value_type>> layers;
  const auto& b = model.weights().blocks;
  for (int l = 0; l < model.dims().num_layers; ++l) {
    const auto& bw = l % 2 == 0 ? std::get<0>(b)[l / 2].attn : std::get<1>(b)[l / 2].attn;
    const auto& mw = l % 2 == 0 ? std::get<0>(b)[l / 2].mlp : std::get<1>(b)[l / 2].mlp;
    layers.push_back({&bw, &mw, l % 2 == 0 ? model.dims().sliding_window : 0});
  }
  return layers;
}

/// Logits (T, V) of the whole sequence in float64, reading the model's weights.
template <class Model, class ExpertMatrix>
std::vector<double> reference_logits(const Model& model, const std::vector<LayerRef<ExpertMatrix>>& layers,
                                     const std::vector<std::int32_t>& tokens) {
  const ModelDims& d = model.dims();
  const auto& w = model.weights();
  const std::size_t T = tokens.size(), H = d.hidden, D = d.head_dim;
  const std::size_t nq = d.num_heads, nkv = d.num_kv_heads, group = nq / nkv;
  const auto [inv, conc] = yarn(d);
  std::vector<std::vector<double>> x(T);
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t i = 0; i < H; ++i) x[t].push_back(bf(w.embedding.table(tokens[t], i)));

  for (int l = 0; l < d.num_layers; ++l) {
    const struct {
      const AttentionWeights& attn;
      const MoEWeights<ExpertMatrix>& mlp;
    } bw{*layers[l].attn, *layers[l].mlp};
    const index_t window = layers[l].window;
    // Attention.
    Mat wqkv = to_double(bw.attn.q_weight);
    for (const auto* part : {&bw.attn.k_weight, &bw.attn.v_weight}) {
      const Mat m = to_double(*part);
      wqkv.insert(wqkv.end(), m.begin(), m.end());
    }
    std::vector<double> bqkv = vec(bw.attn.q_bias);
    for (const auto* part : {&bw.attn.k_bias, &bw.attn.v_bias}) {
      const auto b = vec(*part);
      bqkv.insert(bqkv.end(), b.begin(), b.end());
    }
    const Mat wout = to_double(bw.attn.out_weight);
    const auto bout = vec(bw.attn.out_bias), sinks = vec(bw.attn.sinks);
    const auto nscale = vec(bw.attn.norm.scale);
    std::vector<std::vector<double>> q(T), k(T), v(T);
    for (std::size_t t = 0; t < T; ++t) {
      const auto qkv = matvec(wqkv, rmsnorm(x[t], nscale, d.rms_eps), &bqkv);
      q[t].assign(qkv.begin(), qkv.begin() + nq * D);
      k[t].assign(qkv.begin() + nq * D, qkv.begin() + (nq + nkv) * D);
      v[t].assign(qkv.begin() + (nq + nkv) * D, qkv.end());
      for (std::size_t h = 0; h < nq; ++h) rotate(&q[t][h * D], d.head_dim, t, inv, conc);
      for (std::size_t h = 0; h < nkv; ++h) rotate(&k[t][h * D], d.head_dim, t, inv, conc);
    }
    std::vector<std::vector<double>> next(T);
    for (std::size_t t = 0; t < T; ++t) {
      std::vector<double> attn(nq * D, 0.0);
      for (std::size_t h = 0; h < nq; ++h) {
        const std::size_t kv = h / group;
        std::vector<double> s;
        std::vector<std::size_t> js;
        for (std::size_t j = 0; j <= t; ++j) {
          if (window > 0 && static_cast<index_t>(t - j) >= window) continue;
          double dot = 0;
          for (std::size_t i = 0; i < D; ++i) dot += q[t][h * D + i] * k[j][kv * D + i];
          s.push_back(dot / std::sqrt(static_cast<double>(D)));
          js.push_back(j);
        }
        double m = sinks[h];
        for (double e : s) m = std::max(m, e);
        double denom = std::exp(sinks[h] - m);
        for (double& e : s) denom += (e = std::exp(e - m));
        for (std::size_t n = 0; n < js.size(); ++n)
          for (std::size_t i = 0; i < D; ++i) attn[h * D + i] += s[n] / denom * v[js[n]][kv * D + i];
      }
      const auto o = matvec(wout, attn, &bout);
      for (std::size_t i = 0; i < H; ++i) next[t].push_back(x[t][i] + o[i]);
    }
    x = next;
    // MoE.
    const Mat gate = to_double(bw.mlp.gate_weight);
    const auto gbias = vec(bw.mlp.gate_bias), mscale = vec(bw.mlp.norm.scale);
    for (std::size_t t = 0; t < T; ++t) {
      const auto tn = rmsnorm(x[t], mscale, d.rms_eps);
      const auto logits = matvec(gate, tn, &gbias);
      std::vector<int> order(logits.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
      double denom = 0;
      for (int j = 0; j < d.experts_per_token; ++j) denom += std::exp(logits[order[j]] - logits[order[0]]);
      std::vector<double> out(H, 0.0);
      for (int j = 0; j < d.experts_per_token; ++j) {
        const int e = order[j];
        const double g = std::exp(logits[e] - logits[order[0]]) / denom;
        const Mat w1 = to_double(bw.mlp.mlp1_weight[e]), w2 = to_double(bw.mlp.mlp2_weight[e]);
        std::vector<double> b1, b2;
        for (index_t i = 0; i < bw.mlp.mlp1_bias.extent(1); ++i) b1.push_back(bf(bw.mlp.mlp1_bias(e, i)));
        for (index_t i = 0; i < bw.mlp.mlp2_bias.extent(1); ++i) b2.push_back(bf(bw.mlp.mlp2_bias(e, i)));
        const auto u = matvec(w1, tn, &b1);
        std::vector<double> act(u.size() / 2);
        for (std::size_t i = 0; i < act.size(); ++i) {
          const double glu = std::min<double>(u[2 * i], d.swiglu_limit);
          const double lin = std::clamp<double>(u[2 * i + 1], -d.swiglu_limit, d.swiglu_limit);
          act[i] = glu / (1 + std::exp(-1.702 * glu)) * (lin + 1);
        }
        const auto y = matvec(w2, act, &b2);
        for (std::size_t i = 0; i < H; ++i) out[i] += g * y[i];
      }
      for (std::size_t i = 0; i < H; ++i) x[t][i] += out[i];
    }
  }
  const auto fscale = vec(w.norm.scale);
  const Mat unemb = to_double(w.unembedding.weight);
  std::vector<double> logits;
  for (std::size_t t = 0; t < T; ++t) {
    const auto y = matvec(unemb, rmsnorm(x[t], fscale, d.rms_eps), nullptr);
    logits.insert(logits.end(), y.begin(), y.end());
  }
  return logits;
}

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
  std::vector<LayerRef<MatrixView<const bf16>>> layers;
  for (const auto& bw : std::get<0>(model.weights().blocks)) layers.push_back({&bw.attn, &bw.mlp, 0});
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
