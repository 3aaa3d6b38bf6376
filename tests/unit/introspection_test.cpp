// Introspection hooks (model/observer.hpp) and what they report, against
// independent float64 computations and the reference's golden block outputs:
// attention probabilities (softmax with sink, window, GQA, cached keys in
// ring order), attention maps that rebuild each block's attention output,
// router logits / choices / weights, residual streams, and a forward pass
// that is bit-for-bit the plain composition of the layers when nothing is
// observed, and the StageTimer's split of a pass's time into its parts.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/gptoss.hpp"
#include "support/compare.hpp"
#include "support/plain_forward.hpp"
#include "support/random.hpp"
#include "support/test_data.hpp"

using namespace gptoss;
using gptoss::test::compare_to_max;

namespace {

static_assert(!ObservesResidual<NoObserver> && !ObservesRouting<NoObserver> &&
              !ObservesAttention<NoObserver>);
static_assert(ObservesResidual<IntrospectionRecorder> && ObservesRouting<IntrospectionRecorder> &&
              ObservesAttention<IntrospectionRecorder>);

using Model = Transformer<>;
using Slide = SlidingSinkAttention<AttentionSpan::sliding, default_backend>;

const Model& golden_model() {
  static const Model model = load_original_checkpoint<Model>(test::golden_dir() / "tiny");
  return model;
}
std::vector<std::int32_t> golden_tokens() {
  return io::SafetensorsFile(test::golden_dir() / "tiny" / "golden.safetensors").read<std::int32_t>("tokens");
}

/// Runs tokens through a fresh sequence: a prefill of `prefill` tokens (all
/// when 0), then one token per step.
template <class Observer>
std::vector<float> run(const Model& model, const std::vector<std::int32_t>& tokens, index_t prefill,
                       Observer&& observe) {
  Sequence seq = model.new_sequence(static_cast<index_t>(tokens.size()));
  const std::span<const std::int32_t> all(tokens);
  const std::size_t first = prefill == 0 ? tokens.size() : static_cast<std::size_t>(prefill);
  std::vector<float> logits = model.forward(seq, all.first(first), observe).storage();
  for (std::size_t t = first; t < tokens.size(); ++t) {
    const auto step = model.forward(seq, all.subspan(t, 1), observe);
    logits.insert(logits.end(), step.storage().begin(), step.storage().end());
  }
  return logits;
}

/// Float64 softmax-with-sink of one query row: probabilities of keys
/// (0 where invisible) and the sink's share.
struct Row {
  std::vector<double> probs;
  double sink = 0.0;
};
Row softmax_with_sink(const std::vector<double>& scores, const std::vector<bool>& visible, double sink) {
  double m = sink;
  for (std::size_t j = 0; j < scores.size(); ++j) {
    if (visible[j]) m = std::max(m, scores[j]);
  }
  Row r{std::vector<double>(scores.size(), 0.0), std::exp(sink - m)};
  double denom = r.sink;
  for (std::size_t j = 0; j < scores.size(); ++j) {
    if (visible[j]) denom += (r.probs[j] = std::exp(scores[j] - m));
  }
  for (double& p : r.probs) p /= denom;
  r.sink /= denom;
  return r;
}

}  // namespace

TEST_CASE("Attention probabilities match a float64 softmax with sink, window and GQA", "[introspection][attention]") {
  test::Rng rng(81);
  const index_t t_count = 5, held = 7, nq = 6, nkv = 2, d = 16, s_count = held + t_count;
  const float scale = 0.25f;
  const auto q = test::random_tensor<3>(rng, {t_count, nq, d});
  const auto k = test::random_tensor<3>(rng, {s_count, nkv, d});
  const auto v = test::random_tensor<3>(rng, {s_count, nkv, d});
  const auto sinks = test::random_tensor<1>(rng, {nq}, 2.0f);
  // Cached keys in ring order (positions 10..16 rotated), then the new ones at 17..21.
  Tensor<index_t, 1> k_pos({s_count}), q_pos({t_count});
  for (index_t j = 0; j < held; ++j) k_pos(j) = 10 + (j + 3) % held;
  for (index_t t = 0; t < t_count; ++t) k_pos(held + t) = q_pos(t) = 10 + held + t;
  const std::vector<index_t> heads{5, 0, 3};
  const index_t h_count = static_cast<index_t>(heads.size());

  for (index_t window : {index_t{0}, index_t{4}}) {
    INFO("window " << window);
    Tensor<float, 3> probs({h_count, t_count, s_count});
    Tensor<float, 2> sink({h_count, t_count});
    kernels::sink_attention_probabilities(cpu_reference{}, q.view(), q_pos.view(), k.view(), k_pos.view(),
                                          sinks.view(), scale, window,
                                          VectorView<const index_t>(heads.data(), {h_count}), probs.view(),
                                          sink.view());
    // The attention kernel's output, to rebuild from the probabilities.
    Tensor<float, 2> out({t_count, nq * d});
    kernels::sink_attention(cpu_fast{}, q.view(), q_pos.view(), k.view(), v.view(), k_pos.view(), sinks.view(),
                            scale, window, out.view());
    for (index_t i = 0; i < h_count; ++i) {
      const index_t h = heads[static_cast<std::size_t>(i)], kv = h / (nq / nkv);
      for (index_t t = 0; t < t_count; ++t) {
        std::vector<double> scores(static_cast<std::size_t>(s_count));
        std::vector<bool> visible(static_cast<std::size_t>(s_count));
        for (index_t j = 0; j < s_count; ++j) {
          double dot = 0.0;
          for (index_t c = 0; c < d; ++c) dot += static_cast<double>(q(t, h, c)) * k(j, kv, c);
          scores[static_cast<std::size_t>(j)] = dot * scale;
          const index_t age = q_pos(t) - k_pos(j);
          visible[static_cast<std::size_t>(j)] = age >= 0 && (window == 0 || age < window);
        }
        const Row row = softmax_with_sink(scores, visible, sinks(h));
        double total = sink(i, t);
        for (index_t j = 0; j < s_count; ++j) {
          CHECK(probs(i, t, j) == Approx(row.probs[static_cast<std::size_t>(j)]).margin(1e-6));
          if (!visible[static_cast<std::size_t>(j)]) CHECK(probs(i, t, j) == 0.0f);
          total += probs(i, t, j);
        }
        CHECK(sink(i, t) == Approx(row.sink).margin(1e-6));
        CHECK(sink(i, t) > 0.0f);
        CHECK(total == Approx(1.0).margin(1e-6));
        for (index_t c = 0; c < d; ++c) {
          double acc = 0.0;
          for (index_t j = 0; j < s_count; ++j) acc += static_cast<double>(probs(i, t, j)) * v(j, kv, c);
          CHECK(acc == Approx(out(t, h * d + c)).margin(1e-5));
        }
      }
    }
  }
  Tensor<float, 3> probs({1, t_count, s_count});
  Tensor<float, 2> sink({1, t_count});
  const index_t bad = nq;
  REQUIRE_THROWS_MATCHES(kernels::sink_attention_probabilities(
                             cpu_reference{}, q.view(), q_pos.view(), k.view(), k_pos.view(), sinks.view(),
                             scale, 0, VectorView<const index_t>(&bad, {1}), probs.view(), sink.view()),
                         RangeError, Catch::Message("sink_attention_probabilities: query head 6 is outside [0, 6)"));
  REQUIRE_THROWS_AS(kernels::sink_attention_probabilities(
                        cpu_reference{}, q.view(), q_pos.view(), k.view(), k_pos.view(), sinks.view(), scale, 0,
                        VectorView<const index_t>(heads.data(), {2}), probs.view(), sink.view()),
                    ShapeError);
}

TEST_CASE("Attention maps rebuild every block's attention output, in prefill and decode", "[introspection][attention][golden]") {
  const Model& model = golden_model();
  const ModelDims& dims = model.dims();
  const auto tokens = golden_tokens();
  const index_t t_count = static_cast<index_t>(tokens.size()), h = dims.hidden, d = dims.head_dim;
  const index_t nq = dims.num_heads, group = dims.num_heads / dims.num_kv_heads;
  IntrospectionRequest all;
  IntrospectionRecorder prefill(all, dims.num_layers, nq), decode(all, dims.num_layers, nq);
  run(model, tokens, 0, prefill);
  run(model, tokens, 5, decode);

  for (int l = 0; l < dims.num_layers; ++l) {
    INFO("layer " << l);
    const index_t window = ModelDims::is_sliding_layer(l) ? dims.sliding_window : 0;
    const auto maps = prefill.attention_dump(l);
    const auto stepped = decode.attention_dump(l);
    REQUIRE(maps.probs.shape() == std::array{nq, t_count, t_count});
    REQUIRE(stepped.probs.shape() == maps.probs.shape());
    GPTOSS_REQUIRE_CLOSE(compare_to_max(stepped.probs.storage(), maps.probs.storage(), 1e-5, 0.0));
    GPTOSS_REQUIRE_CLOSE(compare_to_max(stepped.sink.storage(), maps.sink.storage(), 1e-5, 0.0));

    // Rows + sink sum to 1; nothing outside the causal window.
    for (index_t i = 0; i < nq; ++i) {
      for (index_t t = 0; t < t_count; ++t) {
        double total = maps.sink(i, t);
        for (index_t j = 0; j < t_count; ++j) {
          const bool visible = j <= t && (window == 0 || t - j < window);
          if (!visible) REQUIRE(maps.probs(i, t, j) == 0.0f);
          total += maps.probs(i, t, j);
        }
        REQUIRE(total == Approx(1.0).margin(1e-5));
      }
    }

    // out = x + (sum_j p_j v_j) Wout^T + bout, in float64, from the layer's v.
    const auto& rec = prefill.layer(l);
    const auto& bw = l % 2 == 0 ? std::get<0>(model.weights().blocks)[static_cast<std::size_t>(l / 2)].attn
                                : std::get<1>(model.weights().blocks)[static_cast<std::size_t>(l / 2)].attn;
    const Slide layer(AttentionParams::from(dims));  // project() does not depend on the span
    Tensor<float, 3> q({t_count, nq, d}), k({t_count, dims.num_kv_heads, d}), v({t_count, dims.num_kv_heads, d});
    layer.project(bw, MatrixView<const float>(rec.input.data(), {t_count, h}), 0, q.view(), k.view(), v.view());
    std::vector<double> rebuilt(static_cast<std::size_t>(t_count * h));
    for (index_t t = 0; t < t_count; ++t) {
      std::vector<double> a(static_cast<std::size_t>(nq * d), 0.0);
      for (index_t hq = 0; hq < nq; ++hq) {
        for (index_t j = 0; j <= t; ++j) {
          for (index_t c = 0; c < d; ++c) a[static_cast<std::size_t>(hq * d + c)] += static_cast<double>(maps.probs(hq, t, j)) * v(j, hq / group, c);
        }
      }
      for (index_t o = 0; o < h; ++o) {
        double acc = rec.input[static_cast<std::size_t>(t * h + o)] + static_cast<double>(bw.out_bias[o].to_float());
        for (index_t c = 0; c < nq * d; ++c) acc += static_cast<double>(bw.out_weight(o, c).to_float()) * a[static_cast<std::size_t>(c)];
        rebuilt[static_cast<std::size_t>(t * h + o)] = acc;
      }
    }
    GPTOSS_REQUIRE_CLOSE(compare_to_max(rec.attn_out, rebuilt, 0.0, 1e-4));
  }
}

TEST_CASE("Observed routing matches a float64 router and the reference", "[introspection][moe][golden]") {
  const Model& model = golden_model();
  const ModelDims& dims = model.dims();
  const auto tokens = golden_tokens();
  const io::SafetensorsFile golden(test::golden_dir() / "tiny" / "golden.safetensors");
  const index_t t_count = static_cast<index_t>(tokens.size()), h = dims.hidden, e = dims.num_experts;
  const index_t top_k = dims.experts_per_token;
  IntrospectionRecorder rec({.residual = true, .routing = true, .attention = false, .layers = {}, .heads = {}},
                            dims.num_layers, dims.num_heads);
  run(model, tokens, 3, rec);
  for (int l = 0; l < dims.num_layers; ++l) {
    INFO("layer " << l);
    const auto& r = rec.layer(l);
    const auto& mw = l % 2 == 0 ? std::get<0>(model.weights().blocks)[static_cast<std::size_t>(l / 2)].mlp
                                : std::get<1>(model.weights().blocks)[static_cast<std::size_t>(l / 2)].mlp;
    REQUIRE(r.router_logits.size() == static_cast<std::size_t>(t_count * e));
    REQUIRE(r.expert_indices.size() == static_cast<std::size_t>(t_count * top_k));
    // Float64 router on the block's post-attention stream: RMSNorm, gate, top-k, softmax.
    std::vector<double> logits(static_cast<std::size_t>(t_count * e));
    for (index_t t = 0; t < t_count; ++t) {
      const float* x = r.attn_out.data() + t * h;
      double ms = 0.0;
      for (index_t c = 0; c < h; ++c) ms += static_cast<double>(x[c]) * x[c];
      const double inv = 1.0 / std::sqrt(ms / static_cast<double>(h) + dims.rms_eps);
      for (index_t x_e = 0; x_e < e; ++x_e) {
        double acc = mw.gate_bias[x_e].to_float();
        for (index_t c = 0; c < h; ++c) {
          acc += static_cast<double>(mw.gate_weight(x_e, c).to_float()) * (x[c] * inv * mw.norm.scale[c].to_float());
        }
        logits[static_cast<std::size_t>(t * e + x_e)] = acc;
      }
      std::vector<index_t> order(static_cast<std::size_t>(e));
      std::iota(order.begin(), order.end(), index_t{0});
      const double* row = &logits[static_cast<std::size_t>(t * e)];
      std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return row[a] > row[b]; });
      double denom = 0.0;
      for (index_t j = 0; j < top_k; ++j) denom += std::exp(row[order[static_cast<std::size_t>(j)]] - row[order[0]]);
      // Choices are compared where the float64 ranking has a clear margin.
      if (row[order[static_cast<std::size_t>(top_k - 1)]] - row[order[static_cast<std::size_t>(top_k)]] < 1e-4) continue;
      for (index_t j = 0; j < top_k; ++j) {
        const index_t want = order[static_cast<std::size_t>(j)];
        CHECK(r.expert_indices[static_cast<std::size_t>(t * top_k + j)] == want);
        CHECK(r.expert_weights[static_cast<std::size_t>(t * top_k + j)] ==
              Approx(std::exp(row[want] - row[order[0]]) / denom).margin(1e-5));
      }
    }
    GPTOSS_REQUIRE_CLOSE(compare_to_max(r.router_logits, logits, 0.0, 1e-4));
    const std::string prefix = "block." + std::to_string(l) + ".";
    GPTOSS_REQUIRE_CLOSE(compare_to_max(r.router_logits, golden.read<float>(prefix + "router_logits"), 0.0, 1e-4));
    CHECK(r.expert_indices == golden.read<std::int32_t>(prefix + "expert_indices"));
    GPTOSS_REQUIRE_CLOSE(compare_to_max(r.expert_weights, golden.read<float>(prefix + "expert_weights"), 1e-5, 0.0));
  }
}

TEST_CASE("Observed residual streams match the reference's block outputs", "[introspection][golden]") {
  const Model& model = golden_model();
  const ModelDims& dims = model.dims();
  const auto tokens = golden_tokens();
  const io::SafetensorsFile golden(test::golden_dir() / "tiny" / "golden.safetensors");
  const index_t t_count = static_cast<index_t>(tokens.size()), h = dims.hidden;
  for (index_t prefill : {index_t{0}, index_t{6}}) {
    INFO("prefill " << prefill);
    IntrospectionRecorder rec({.residual = true, .routing = false, .attention = false, .layers = {}, .heads = {}},
                              dims.num_layers, dims.num_heads);
    run(model, tokens, prefill, rec);
    // Block 0's input is the embedding rows, widened from bf16.
    const auto& table = model.weights().embedding.table;
    for (index_t t = 0; t < t_count; ++t) {
      for (index_t c = 0; c < h; ++c) {
        REQUIRE(rec.layer(0).input[static_cast<std::size_t>(t * h + c)] == table(tokens[static_cast<std::size_t>(t)], c).to_float());
      }
    }
    for (int l = 0; l < dims.num_layers; ++l) {
      INFO("layer " << l);
      const std::string prefix = "block." + std::to_string(l) + ".";
      GPTOSS_REQUIRE_CLOSE(compare_to_max(rec.layer(l).attn_out, golden.read<float>(prefix + "attn_out"), 0.0, 1e-4));
      GPTOSS_REQUIRE_CLOSE(compare_to_max(rec.layer(l).mlp_out, golden.read<float>(prefix + "mlp_out"), 0.0, 1e-4));
      if (l + 1 < dims.num_layers) CHECK(rec.layer(l + 1).input == rec.layer(l).mlp_out);
    }
    CHECK(rec.layers().at(0).router_logits.empty());
    CHECK(rec.layers().at(0).attention.empty());
  }
}

TEST_CASE("Observing changes nothing: the default pass is the plain layer composition, bit for bit", "[introspection][model]") {
  const Model& model = golden_model();
  const ModelDims& dims = model.dims();
  const auto tokens = golden_tokens();

  // The layers called one by one, as the forward pass did before observers.
  const Tensor<float, 2> plain = test::PlainForward<default_backend>(dims)(model, tokens);
  CHECK(model.forward(tokens).storage() == plain.storage());
  CHECK(model.forward(tokens, NoObserver{}).storage() == plain.storage());
  IntrospectionRecorder everything({}, dims.num_layers, dims.num_heads);
  CHECK(model.forward(tokens, everything).storage() == plain.storage());
  CHECK(everything.layer(dims.num_layers - 1).attention.size() == 1);
  // Decoding with an observer gives the same logits as without one.
  IntrospectionRecorder stepped({}, dims.num_layers, dims.num_heads);
  CHECK(run(model, tokens, 4, stepped) == run(model, tokens, 4, NoObserver{}));
}

TEST_CASE("The recorder writes its documented tensors and rejects unknown layers and heads", "[introspection]") {
  const Model& model = golden_model();
  const ModelDims& dims = model.dims();
  const std::vector<std::int32_t> tokens{3, 1, 4, 1, 5, 9, 2, 6, 5, 3};
  const index_t t_count = static_cast<index_t>(tokens.size());
  IntrospectionRecorder rec({.residual = true, .routing = true, .attention = true, .layers = {1, 2}, .heads = {7, 2}},
                            dims.num_layers, dims.num_heads);
  run(model, tokens, 4, rec);
  const auto dir = std::filesystem::temp_directory_path() / "gptoss_introspection_test";
  std::filesystem::remove_all(dir);
  REQUIRE(rec.write(dir).size() == 3);
  const io::SafetensorsFile residual(dir / "residual.safetensors"), router(dir / "router.safetensors"),
      attention(dir / "attention.safetensors");
  CHECK(residual.tensors().size() == 6);
  CHECK(residual.info("block.2.input").shape == std::vector<index_t>{t_count, dims.hidden});
  CHECK(residual.info("block.1.mlp_out").shape == std::vector<index_t>{t_count, dims.hidden});
  CHECK_FALSE(residual.contains("block.0.input"));
  CHECK(router.info("block.1.router_logits").shape == std::vector<index_t>{t_count, dims.num_experts});
  CHECK(router.info("block.2.expert_indices").dtype == DType::I32);
  CHECK(router.info("block.2.expert_weights").shape == std::vector<index_t>{t_count, dims.experts_per_token});
  CHECK(attention.info("block.1.attn_probs").shape == std::vector<index_t>{2, t_count, t_count});
  CHECK(attention.info("block.2.attn_sink").shape == std::vector<index_t>{2, t_count});
  CHECK(attention.read<std::int32_t>("block.2.attn_heads") == std::vector<std::int32_t>{7, 2});
  CHECK(attention.read<std::int64_t>("query_positions").back() == t_count - 1);
  // Head 7's maps are the same whichever other heads are recorded.
  IntrospectionRecorder one({.residual = false, .routing = false, .attention = true, .layers = {2}, .heads = {7}},
                            dims.num_layers, dims.num_heads);
  run(model, tokens, 0, one);
  const auto probs = attention.read<float>("block.2.attn_probs");
  const auto single = one.attention_dump(2).probs.storage();
  GPTOSS_REQUIRE_CLOSE(compare_to_max(std::vector<float>(probs.begin(), probs.begin() + t_count * t_count), single, 1e-5, 0.0));
  std::filesystem::remove_all(dir);

  REQUIRE_THROWS_MATCHES(IntrospectionRecorder({.layers = {4}, .heads = {}}, dims.num_layers, dims.num_heads), RangeError,
                         Catch::Message("introspection: layer 4 is outside [0, 4)"));
  REQUIRE_THROWS_MATCHES(IntrospectionRecorder({.layers = {}, .heads = {0, 8}}, dims.num_layers, dims.num_heads), RangeError,
                         Catch::Message("introspection: head 8 is outside [0, 8)"));
}

TEST_CASE("StageTimer charges each interval to the part that ran in it", "[introspection][stage_timer]") {
  // Hooks called by hand with sleeps of distinct lengths in between: each part
  // gets at least its own sleep (sleeps never end early), so a part charged
  // with another's interval falls short of its own.
  using std::chrono::milliseconds;
  const auto sleep = [](int ms) { std::this_thread::sleep_for(milliseconds(ms)); };
  const Tensor<float, 2> x({1, 4});
  StageTimer timer;
  timer.begin_pass();
  sleep(60);  // embedding
  timer.residual(0, BlockStage::input, x.view());
  sleep(20);
  timer.residual(0, BlockStage::attention_out, x.view());
  sleep(5);
  timer.residual(0, BlockStage::mlp_out, x.view());
  timer.residual(1, BlockStage::input, x.view());
  sleep(20);
  timer.residual(1, BlockStage::attention_out, x.view());
  sleep(5);
  timer.residual(1, BlockStage::mlp_out, x.view());
  sleep(60);  // final norm and unembedding
  timer.end_pass();

  const StageTimer::Totals& t = timer.totals();
  CHECK(t.passes == 1);
  CHECK(t.outside_blocks_s >= 0.120);
  CHECK(t.attention_s >= 0.040);
  CHECK(t.feed_forward_s >= 0.010);
  CHECK(timer.attention_seconds(0) >= 0.020);
  CHECK(timer.attention_seconds(1) >= 0.020);
  CHECK(timer.feed_forward_seconds(1) >= 0.005);
  CHECK(timer.attention_seconds(0) + timer.attention_seconds(1) == Approx(t.attention_s));
  CHECK(timer.feed_forward_seconds(0) + timer.feed_forward_seconds(1) == Approx(t.feed_forward_s));
  CHECK(timer.attention_seconds(7) == 0.0);
  CHECK_THROWS_AS(timer.attention_seconds(-1), RangeError);

  // Misuse is an error, not a silent mis-charge.
  CHECK_THROWS_WITH(timer.end_pass(), Catch::Contains("without begin_pass"));
  CHECK_THROWS_WITH(timer.residual(0, BlockStage::input, x.view()), Catch::Contains("without begin_pass"));
  timer.begin_pass();
  CHECK_THROWS_WITH(timer.begin_pass(), Catch::Contains("twice"));
  CHECK_THROWS_WITH(timer.reset(), Catch::Contains("during a pass"));
  timer.end_pass();
  timer.reset();
  CHECK(timer.totals().passes == 0);
  CHECK(timer.totals().total_s() == 0.0);
}

TEST_CASE("StageTimer on a model: every block timed, the parts add up, the logits unchanged", "[introspection][stage_timer][model]") {
  const Model& model = golden_model();
  const ModelDims& dims = model.dims();
  const auto tokens = golden_tokens();
  StageTimer timer;
  Sequence seq = model.new_sequence(static_cast<index_t>(tokens.size()));
  Sequence plain_seq = model.new_sequence(static_cast<index_t>(tokens.size()));
  const std::span<const std::int32_t> all(tokens);
  double outer_s = 0.0;
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const auto t0 = std::chrono::steady_clock::now();
    timer.begin_pass();
    const Tensor<float, 2> timed = model.forward_last(seq, all.subspan(t, 1), timer);
    timer.end_pass();
    outer_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(timed.storage() == model.forward_last(plain_seq, all.subspan(t, 1)).storage());
  }
  const StageTimer::Totals& total = timer.totals();
  CHECK(total.passes == static_cast<int>(tokens.size()));
  CHECK(total.total_s() <= outer_s);
  double attention = 0.0, feed_forward = 0.0;
  for (int l = 0; l < dims.num_layers; ++l) {
    INFO("layer " << l);
    CHECK(timer.attention_seconds(l) > 0.0);
    CHECK(timer.feed_forward_seconds(l) > 0.0);
    attention += timer.attention_seconds(l);
    feed_forward += timer.feed_forward_seconds(l);
  }
  CHECK(timer.attention_seconds(dims.num_layers) == 0.0);
  CHECK(attention == Approx(total.attention_s));
  CHECK(feed_forward == Approx(total.feed_forward_s));
  CHECK(total.outside_blocks_s > 0.0);
}
