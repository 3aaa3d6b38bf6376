// Embedding and Unembedding on random bf16 tables: looked-up rows are the
// widened table rows, logits match a float64 matrix-vector product, and bad
// token ids or shapes are rejected with errors that say what is wrong.
#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/gptoss.hpp"
#include "support/compare.hpp"
#include "support/random.hpp"

using namespace gptoss;
using gptoss::test::compare_elementwise;

TEST_CASE("Embedding property: rows are the bf16 table rows widened", "[property][embedding]") {
  for (const std::uint32_t seed : {1u, 2u, 3u}) {
    DYNAMIC_SECTION("seed " << seed) {
      test::Rng rng(seed);
      const index_t vocab = 50, hidden = 24;
      const Tensor<bf16, 2> table = test::random_bf16<2>(rng, {vocab, hidden}, -3.0f, 3.0f);  // (V, H)
      std::vector<std::int32_t> tokens{0, static_cast<std::int32_t>(vocab - 1)};  // (T)
      for (int t = 0; t < 10; ++t) tokens.push_back(static_cast<std::int32_t>(test::uniform_int(rng, 0, vocab - 1)));
      tokens.push_back(tokens[3]);  // a repeated id
      const index_t t_count = static_cast<index_t>(tokens.size());

      const Embedding<> embedding(vocab, hidden);
      Tensor<float, 2> out({t_count, hidden});  // (T, H)
      embedding.forward({table.view()}, tokens, out.view());
      std::vector<std::uint32_t> got, widened;  // (T, H) bit patterns
      for (index_t t = 0; t < t_count; ++t) {
        for (index_t i = 0; i < hidden; ++i) {
          got.push_back(std::bit_cast<std::uint32_t>(out(t, i)));
          // bf16 -> float is exact: the bf16 bits are the upper 16 bits of the float.
          widened.push_back(static_cast<std::uint32_t>(table(tokens[static_cast<std::size_t>(t)], i).bits) << 16);
        }
      }
      CHECK(got == widened);
    }
  }
}

TEST_CASE("Unembedding property: logits match a float64 matrix-vector product",
          "[property][embedding]") {
  for (const std::uint32_t seed : {4u, 5u}) {
    for (const float amplitude : {1e-3f, 1.0f, 100.0f}) {
      DYNAMIC_SECTION("seed " << seed << ", input amplitude " << amplitude) {
        test::Rng rng(seed);
        const index_t vocab = 70, hidden = 48, t_count = 5;
        const Tensor<bf16, 2> weight = test::random_bf16<2>(rng, {vocab, hidden}, -0.5f, 0.5f);  // (V, H)
        const Tensor<float, 2> x = test::random_matrix(rng, t_count, hidden, amplitude);      // (T, H)
        const Unembedding<> unembedding(vocab, hidden);
        Tensor<float, 2> logits({t_count, vocab});  // (T, V)
        unembedding.forward({weight.view()}, x.view(), logits.view());

        std::vector<double> expected;  // (T, V)
        for (index_t t = 0; t < t_count; ++t) {
          for (index_t v = 0; v < vocab; ++v) {
            double acc = 0.0;
            for (index_t i = 0; i < hidden; ++i) acc += static_cast<double>(weight(v, i).to_float()) * x(t, i);
            expected.push_back(acc);
          }
        }
        // float64 accumulation: one float rounding, at any scale of the input.
        GPTOSS_REQUIRE_CLOSE(compare_elementwise(logits.storage(), expected,
                                                 1e-7 * test::max_abs(expected), 1e-6));
      }
    }
  }
}

TEST_CASE("Embedding property: out-of-range token ids throw RangeError naming id and position",
          "[property][embedding]") {
  test::Rng rng(6);
  const index_t vocab = 16, hidden = 8;
  const Tensor<bf16, 2> table = test::random_bf16<2>(rng, {vocab, hidden}, -1.0f, 1.0f);  // (V, H)
  const Embedding<> embedding(vocab, hidden);

  struct BadCase {
    std::vector<std::int32_t> tokens;
    std::int32_t id;
    int position;
  };
  const BadCase cases[] = {
      {{-1}, -1, 0},
      {{3, 15, -1, 2}, -1, 2},
      {{0, 1, 2, 16}, 16, 3},
      {{16, 0}, 16, 0},
      {{5, 2147483647}, 2147483647, 1},
  };
  for (const BadCase& c : cases) {
    Tensor<float, 2> out({static_cast<index_t>(c.tokens.size()), hidden});
    INFO("id " << c.id << " at position " << c.position);
    CHECK_THROWS_AS(embedding.forward({table.view()}, c.tokens, out.view()), RangeError);
    CHECK_THROWS_WITH(embedding.forward({table.view()}, c.tokens, out.view()),
                      Catch::Contains("token id " + std::to_string(c.id)) &&
                          Catch::Contains("position " + std::to_string(c.position)));
  }
  // The boundary ids are fine.
  Tensor<float, 2> out({2, hidden});
  CHECK_NOTHROW(embedding.forward({table.view()}, std::vector<std::int32_t>{0, 15}, out.view()));
}

TEST_CASE("Embedding property: wrong shapes throw ShapeError", "[property][embedding]") {
  test::Rng rng(7);
  const index_t vocab = 16, hidden = 8;
  const Tensor<bf16, 2> table = test::random_bf16<2>(rng, {vocab, hidden}, -1.0f, 1.0f);  // (V, H)
  const Tensor<bf16, 2> narrow = test::random_bf16<2>(rng, {vocab, hidden - 1}, -1.0f, 1.0f);
  const std::vector<std::int32_t> tokens{1, 2, 3};
  Tensor<float, 2> out({3, hidden}), short_out({2, hidden});
  const Embedding<> embedding(vocab, hidden);
  CHECK_THROWS_AS(embedding.forward({narrow.view()}, tokens, out.view()), ShapeError);
  CHECK_THROWS_WITH(embedding.forward({narrow.view()}, tokens, out.view()),
                    Catch::Contains("embedding.weight"));
  CHECK_THROWS_AS(embedding.forward({table.view()}, tokens, short_out.view()), ShapeError);

  const Unembedding<> unembedding(vocab, hidden);
  const Tensor<float, 2> x = test::random_matrix(rng, 3, hidden);  // (T, H)
  const Tensor<float, 2> wide_x = test::random_matrix(rng, 3, hidden + 1);
  Tensor<float, 2> logits({3, vocab}), bad_logits({3, vocab + 1});
  CHECK_NOTHROW(unembedding.forward({table.view()}, x.view(), logits.view()));
  CHECK_THROWS_WITH(unembedding.forward({narrow.view()}, x.view(), logits.view()),
                    Catch::Contains("unembedding.weight"));
  CHECK_THROWS_AS(unembedding.forward({table.view()}, wide_x.view(), logits.view()), ShapeError);
  CHECK_THROWS_AS(unembedding.forward({table.view()}, x.view(), bad_logits.view()), ShapeError);
}
