// Host-side planning of the CUDA model (gptoss/cuda/plan.hpp), checked on
// the CPU: the weights gathered from a CPU Transformer, their shape checks,
// path choice and scratch sizes. Needs no CUDA.
#include <catch2/catch.hpp>

#include "gptoss/config/test_configs.hpp"
#include "gptoss/cuda/plan.hpp"
#include "gptoss/model/random_weights.hpp"

using namespace gptoss;

TEST_CASE("The CUDA plan gathers every layer's weights from a CPU model", "[cuda][plan]") {
  // period-2 gpt-oss pattern: layer l is slot l % 2, index l / 2
  Transformer<DynamicConfig, cpu_reference> model(TinyMoE::value);
  fill_random_weights(model, 5);
  const cuda::HostModel h = cuda::host_model(model);
  cuda::check_host_model(h);
  REQUIRE(h.layers.size() == 2);
  const auto& w = model.weights();
  for (std::size_t l = 0; l < h.layers.size(); ++l) {
    INFO("layer " << l);
    CHECK(h.layers[l].sliding == (l % 2 == 0));
    const AttentionWeights& attn = l % 2 == 0 ? std::get<0>(w.blocks)[l / 2].attn : std::get<1>(w.blocks)[l / 2].attn;
    const auto& mlp = l % 2 == 0 ? std::get<0>(w.blocks)[l / 2].mlp : std::get<1>(w.blocks)[l / 2].mlp;
    CHECK(h.layers[l].attn.q_weight.data() == attn.q_weight.data());
    CHECK(h.layers[l].attn.sinks.data() == attn.sinks.data());
    CHECK(h.layers[l].mlp.mlp2_weight[3].blocks() == mlp.mlp2_weight[3].blocks());
  }
  CHECK(h.embedding.data() == w.embedding.table.data());
  CHECK(h.unembedding.data() == w.unembedding.weight.data());

  cuda::HostModel broken = h;
  broken.layers[1].mlp.mlp1_weight[2] = broken.layers[1].mlp.mlp1_weight[2].row_range(0, 8);
  REQUIRE_THROWS_WITH(cuda::check_host_model(broken),
                      Catch::Contains("block.1.mlp.mlp1_weight[2]: shape (8, 64), expected (128, 64)"));
  broken = h;
  broken.layers[0].attn.sinks = broken.layers[0].attn.sinks.slice(0, 3);
  REQUIRE_THROWS_AS(cuda::check_host_model(broken), ShapeError);
  broken = h;
  broken.layers.pop_back();
  REQUIRE_THROWS_WITH(cuda::check_host_model(broken), Catch::Contains("1 layers for a config of 2"));
}

TEST_CASE("The CUDA plan picks paths and sizes scratch from the token count", "[cuda][plan]") {
  const cuda::ModelOptions o;  // defaults: GEMM from 16 tokens, grouped experts from 8
  CHECK_FALSE(cuda::use_tensor_cores(1, o));
  CHECK(cuda::use_tensor_cores(16, o));
  CHECK_FALSE(cuda::use_grouped_experts(7, o));
  CHECK(cuda::use_grouped_experts(8, o));
  CHECK_FALSE(cuda::use_tensor_cores(4096, cuda::ModelOptions{.tensor_cores = false}));

  const ModelDims d;  // gpt-oss-20b
  const auto s = cuda::ScratchSizes::of(d, 100);
  CHECK(s.hidden == 100u * 2880u);
  CHECK(s.qkv == 100u * 5120u);
  CHECK(s.heads == 100u * 4096u);
  CHECK(s.entries == 400u);
  CHECK(s.up == 400u * 5760u);
  CHECK(s.tiles == 7u + 32u);  // ceil(400 / 64) + 32 experts
  CHECK(s.logits == 100u * 201088u);
  CHECK(cuda::expert_tile_bound(64, 4) == 5);
  CHECK(cuda::expert_tile_bound(65, 4) == 6);
}
