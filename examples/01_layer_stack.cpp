// Example: compose the gpt-oss layers by hand. Opens the bundled reference
// checkpoint (tests/data/golden/tiny), builds block 0 (embedding, sliding-
// window sink attention, MXFP4 mixture of experts), runs the reference's
// golden tokens through it, and compares both residual-stream outputs with
// the reference's at the golden README's tolerance.
//
// Usage: 01_layer_stack [model.safetensors [golden.safetensors]]
// (default: the bundled tiny checkpoint; golden.safetensors next to the model)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "gptoss/gptoss.hpp"

using namespace gptoss;

namespace {

using Expert = FP4TensorView<MXFP4Checkpoint>;

/// Weights of block.0.attn, viewed in place in the memory-mapped checkpoint.
template <class Attention>
AttentionWeights attention_weights(const Attention& attention, const io::SafetensorsFile& ckpt,
                                   const std::string& p) {
  AttentionWeights w;
  w.norm.scale = ckpt.view<bf16, 1>(p + "norm.scale");
  attention.set_merged_qkv(w, ckpt.view<bf16, 2>(p + "qkv.weight"), ckpt.view<bf16, 1>(p + "qkv.bias"));
  w.sinks = ckpt.view<bf16, 1>(p + "sinks");
  w.out_weight = ckpt.view<bf16, 2>(p + "out.weight");
  w.out_bias = ckpt.view<bf16, 1>(p + "out.bias");
  return w;
}

/// Weights of block.0.mlp: the experts stay MXFP4, one view per expert.
MoEWeights<Expert> moe_weights(const io::SafetensorsFile& ckpt, const std::string& p) {
  MoEWeights<Expert> w;
  w.norm.scale = ckpt.view<bf16, 1>(p + "norm.scale");
  w.gate_weight = ckpt.view<bf16, 2>(p + "gate.weight");
  w.gate_bias = ckpt.view<bf16, 1>(p + "gate.bias");
  w.mlp1_bias = ckpt.view<bf16, 2>(p + "mlp1_bias");
  w.mlp2_bias = ckpt.view<bf16, 2>(p + "mlp2_bias");
  // blocks (E, rows, cols/32, 16) and scales (E, rows, cols/32).
  const auto mlp1_blocks = ckpt.view<std::uint8_t, 4>(p + "mlp1_weight.blocks");
  const auto mlp1_scales = ckpt.view<std::uint8_t, 3>(p + "mlp1_weight.scales");
  const auto mlp2_blocks = ckpt.view<std::uint8_t, 4>(p + "mlp2_weight.blocks");
  const auto mlp2_scales = ckpt.view<std::uint8_t, 3>(p + "mlp2_weight.scales");
  for (index_t e = 0; e < mlp1_blocks.extent(0); ++e) {
    w.mlp1_weight.push_back(Expert::from_blocks(mlp1_blocks[e], mlp1_scales[e]));
    w.mlp2_weight.push_back(Expert::from_blocks(mlp2_blocks[e], mlp2_scales[e]));
  }
  return w;
}

/// Prints a few values next to the reference's; true when
/// max|ours - ref| <= 1e-4 * max(1, max|ref|).
bool report(const char* name, const Tensor<float, 2>& ours, const std::vector<float>& ref) {
  if (ours.storage().size() != ref.size()) {
    std::printf("%s: %zu values, the reference has %zu: FAIL\n", name, ours.storage().size(),
                ref.size());
    return false;
  }
  double max_err = 0.0, max_ref = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    max_err = std::max(max_err, static_cast<double>(std::fabs(ours.storage()[i] - ref[i])));
    max_ref = std::max(max_ref, static_cast<double>(std::fabs(ref[i])));
  }
  for (float v : ours.storage()) {
    if (!std::isfinite(v)) max_err = INFINITY;
  }
  const double rel = max_err / std::max(1.0, max_ref);
  const bool ok = rel <= 1e-4;
  std::printf("%s (%lld x %lld)\n", name, static_cast<long long>(ours.extent(0)),
              static_cast<long long>(ours.extent(1)));
  const index_t last = ours.extent(0) - 1, h = ours.extent(1);
  for (const auto& [t, i] : {std::pair<index_t, index_t>{0, 0}, {0, 1}, {1, 7}, {last, h - 1}}) {
    std::printf("  [%3lld, %3lld]  ours % .7f  reference % .7f\n", static_cast<long long>(t),
                static_cast<long long>(i), ours(t, i), ref[static_cast<std::size_t>(t * h + i)]);
  }
  std::printf("  max |ours - ref| = %.3g, max |ref| = %.3g, error / max(1, max |ref|) = %.3g"
              " (limit 1e-4): %s\n",
              max_err, max_ref, rel, ok ? "OK" : "FAIL");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::filesystem::path model_path = argc > 1 ? argv[1] : GPTOSS_EXAMPLE_MODEL;
    const std::filesystem::path golden_path =
        argc > 2 ? std::filesystem::path(argv[2]) : model_path.parent_path() / "golden.safetensors";
    const io::SafetensorsFile ckpt(model_path);
    const io::SafetensorsFile golden(golden_path);

    // The tiny reference config: hidden 256, 8 query / 2 KV heads of 64,
    // window 8, YaRN (theta 150000, factor 32, L0 4096, alpha 1, beta 32).
    const AttentionParams attn_params{
        .hidden = 256, .head_dim = 64, .num_heads = 8, .num_kv_heads = 2, .sliding_window = 8,
        .rope = {.head_dim = 64, .theta = 150000.0, .scaling_factor = 32.0,
                 .initial_context = 4096.0, .ntk_alpha = 1.0, .ntk_beta = 32.0}};
    const MoEParams moe_params{.hidden = 256, .intermediate = 256, .num_experts = 8,
                               .experts_per_token = 4};
    const index_t vocab = 1024;

    // The layers: block 0 is a sliding-window layer (even blocks are).
    const Embedding<> embedding(vocab, attn_params.hidden);
    const SlidingSinkAttention<AttentionSpan::sliding> attention(attn_params);
    const MoEBlock<Expert> moe(moe_params);

    const Embedding<>::Weights embedding_w{ckpt.view<bf16, 2>("embedding.weight")};
    const AttentionWeights attention_w = attention_weights(attention, ckpt, "block.0.attn.");
    const MoEWeights<Expert> moe_w = moe_weights(ckpt, "block.0.mlp.");

    // embedding -> attention (x + attn(x)) -> MoE (x + moe(x)), positions 0..T-1.
    const std::vector<std::int32_t> tokens = golden.read<std::int32_t>("tokens");
    const index_t t_count = static_cast<index_t>(tokens.size());
    Tensor<float, 2> x({t_count, attn_params.hidden});
    Tensor<float, 2> after_attn({t_count, attn_params.hidden});
    Tensor<float, 2> after_moe({t_count, attn_params.hidden});
    embedding.forward(embedding_w, tokens, x.view());
    attention.forward(attention_w, x.view(), after_attn.view());
    moe.forward(moe_w, after_attn.view(), after_moe.view());

    std::printf("%s: %lld tokens through block 0\n", model_path.string().c_str(),
                static_cast<long long>(t_count));
    const bool attn_ok = report("block.0.attn_out", after_attn, golden.read<float>("block.0.attn_out"));
    const bool mlp_ok = report("block.0.mlp_out", after_moe, golden.read<float>("block.0.mlp_out"));
    return attn_ok && mlp_ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "01_layer_stack: %s\n", e.what());
    return 2;
  }
}
