// CudaTransformer: weight upload, device sequences and the forward step
// (host-side orchestration of the kernels in gptoss/cuda/kernels.hpp).
#include "gptoss/cuda/transformer.hpp"

#include <cmath>
#include <string>

#include "gptoss/kernels/reference/swiglu.hpp"
#include "gptoss/layers/embedding.hpp"
#include "gptoss/layers/yarn_rope.hpp"

namespace gptoss::cuda {

namespace {

template <class T>
DeviceBuffer<T> upload(const T* data, std::size_t n) {
  return DeviceBuffer<T>(std::span<const T>(data, n));
}
template <class T, std::size_t R>
DeviceBuffer<T> upload(TensorView<const T, R> v) {
  return upload(v.data(), static_cast<std::size_t>(v.size()));
}

/// Uploads the experts' blocks and scales back to back (E, rows, cols/32, 16 | ...).
void upload_experts(const std::vector<HostExperts>& experts, DeviceBuffer<std::uint8_t>& blocks,
                    DeviceBuffer<std::uint8_t>& scales) {
  const std::size_t groups = static_cast<std::size_t>(experts.at(0).rows() * experts.at(0).blocks_per_row());
  blocks = DeviceBuffer<std::uint8_t>(experts.size() * groups * 16);
  scales = DeviceBuffer<std::uint8_t>(experts.size() * groups);
  for (std::size_t e = 0; e < experts.size(); ++e) {
    copy_to_device(blocks.data() + e * groups * 16, experts[e].blocks(), groups * 16);
    copy_to_device(scales.data() + e * groups, experts[e].scales(), groups);
  }
}

}  // namespace

struct CudaTransformer::Weights {
  struct Layer {
    bool sliding = false;
    DeviceBuffer<bf16> attn_norm, qkv_weight, qkv_bias, sinks, out_weight, out_bias;
    DeviceBuffer<bf16> mlp_norm, gate_weight, gate_bias, mlp1_bias, mlp2_bias;
    DeviceBuffer<std::uint8_t> mlp1_blocks, mlp1_scales, mlp2_blocks, mlp2_scales;
  };
  ModelDims dims;
  ModelOptions options;
  DeviceBuffer<bf16> embedding, norm, unembedding;
  std::vector<Layer> layers;
  DeviceBuffer<double> inv_freq;  // (D/2)
  double concentration = 1.0;
  std::size_t bytes = 0;

  /// Uploads the YaRN frequencies and counts the weight bytes.
  void finish() {
    const YaRNRope<cpu_reference> rope(dims.rope(), 0);
    inv_freq = DeviceBuffer<double>(std::span<const double>(rope.inv_freq()));
    concentration = rope.concentration();
    bytes = embedding.bytes() + norm.bytes() + unembedding.bytes();
    for (const Layer& l : layers) {
      for (const auto* b : {&l.attn_norm, &l.qkv_weight, &l.qkv_bias, &l.sinks, &l.out_weight, &l.out_bias,
                            &l.mlp_norm, &l.gate_weight, &l.gate_bias, &l.mlp1_bias, &l.mlp2_bias}) {
        bytes += b->bytes();
      }
      bytes += l.mlp1_blocks.bytes() + l.mlp1_scales.bytes() + l.mlp2_blocks.bytes() + l.mlp2_scales.bytes();
    }
  }
};

CudaTransformer::CudaTransformer(const HostModel& host, ModelOptions options)
    : w_(std::make_unique<Weights>()) {
  check_host_model(host);
  const ModelDims& d = host.dims;
  w_->dims = d;
  w_->options = options;
  w_->embedding = upload(host.embedding);
  w_->norm = upload(host.norm);
  w_->unembedding = upload(host.unembedding);
  const std::size_t hid = static_cast<std::size_t>(d.hidden);
  const std::size_t q_rows = static_cast<std::size_t>(d.head_dim) * d.num_heads;
  const std::size_t kv_rows = static_cast<std::size_t>(d.head_dim) * d.num_kv_heads;
  for (const HostLayer& hl : host.layers) {
    Weights::Layer l;
    l.sliding = hl.sliding;
    const AttentionWeights& a = hl.attn;
    l.attn_norm = upload(a.norm.scale);
    l.qkv_weight = DeviceBuffer<bf16>((q_rows + 2 * kv_rows) * hid);
    copy_to_device(l.qkv_weight.data(), a.q_weight.data(), q_rows * hid * sizeof(bf16));
    copy_to_device(l.qkv_weight.data() + q_rows * hid, a.k_weight.data(), kv_rows * hid * sizeof(bf16));
    copy_to_device(l.qkv_weight.data() + (q_rows + kv_rows) * hid, a.v_weight.data(), kv_rows * hid * sizeof(bf16));
    l.qkv_bias = DeviceBuffer<bf16>(q_rows + 2 * kv_rows);
    copy_to_device(l.qkv_bias.data(), a.q_bias.data(), q_rows * sizeof(bf16));
    copy_to_device(l.qkv_bias.data() + q_rows, a.k_bias.data(), kv_rows * sizeof(bf16));
    copy_to_device(l.qkv_bias.data() + q_rows + kv_rows, a.v_bias.data(), kv_rows * sizeof(bf16));
    l.sinks = upload(a.sinks);
    l.out_weight = upload(a.out_weight);
    l.out_bias = upload(a.out_bias);
    const MoEWeights<HostExperts>& m = hl.mlp;
    l.mlp_norm = upload(m.norm.scale);
    l.gate_weight = upload(m.gate_weight);
    l.gate_bias = upload(m.gate_bias);
    l.mlp1_bias = upload(m.mlp1_bias);
    l.mlp2_bias = upload(m.mlp2_bias);
    upload_experts(m.mlp1_weight, l.mlp1_blocks, l.mlp1_scales);
    upload_experts(m.mlp2_weight, l.mlp2_blocks, l.mlp2_scales);
    w_->layers.push_back(std::move(l));
  }
  w_->finish();
}

CudaTransformer::CudaTransformer(std::unique_ptr<Weights> w) : w_(std::move(w)) {}

CudaTransformer CudaTransformer::random(const ModelDims& d, std::uint64_t seed, ModelOptions options) {
  validate(d);
  auto w = std::make_unique<Weights>();
  w->dims = d;
  w->options = options;
  std::uint64_t next_seed = seed * 0x9e3779b97f4a7c15ull;
  const auto bf16_buffer = [&](std::size_t n, float amplitude, float center = 0.0f) {
    DeviceBuffer<bf16> b(n);
    fill_random(b.data(), n, ++next_seed, center - amplitude, center + amplitude);
    return b;
  };
  // Weights of magnitude about 1/sqrt(fan-in) keep activations of order 1.
  const auto fan_in = [](int cols) { return 1.0f / std::sqrt(static_cast<float>(cols)); };
  const std::size_t v = static_cast<std::size_t>(d.vocab), h = static_cast<std::size_t>(d.hidden);
  const std::size_t e = static_cast<std::size_t>(d.num_experts), inter = static_cast<std::size_t>(d.intermediate);
  const std::size_t q = static_cast<std::size_t>(d.head_dim) * d.num_heads;
  w->embedding = bf16_buffer(v * h, 1.0f);
  w->norm = bf16_buffer(h, 0.0f, 1.0f);
  w->unembedding = bf16_buffer(v * h, fan_in(d.hidden));
  const auto experts = [&](std::size_t rows, std::size_t cols, DeviceBuffer<std::uint8_t>& blocks,
                           DeviceBuffer<std::uint8_t>& scales) {
    const std::size_t groups = e * rows * cols / 32;
    blocks = DeviceBuffer<std::uint8_t>(groups * 16);
    scales = DeviceBuffer<std::uint8_t>(groups);
    // codes up to 6 times 2^-7 (about 1/sqrt(2880) on average)
    fill_random_mxfp4(blocks.data(), scales.data(), groups, ++next_seed, 120);
  };
  for (int l = 0; l < d.num_layers; ++l) {
    Weights::Layer layer;
    layer.sliding = ModelDims::is_sliding_layer(l);
    layer.attn_norm = bf16_buffer(h, 0.0f, 1.0f);
    layer.qkv_weight = bf16_buffer(static_cast<std::size_t>(d.qkv_dim()) * h, fan_in(d.hidden));
    layer.qkv_bias = bf16_buffer(static_cast<std::size_t>(d.qkv_dim()), 0.01f);
    layer.sinks = bf16_buffer(static_cast<std::size_t>(d.num_heads), 1.0f);
    layer.out_weight = bf16_buffer(h * q, fan_in(static_cast<int>(q)));
    layer.out_bias = bf16_buffer(h, 0.01f);
    layer.mlp_norm = bf16_buffer(h, 0.0f, 1.0f);
    layer.gate_weight = bf16_buffer(e * h, fan_in(d.hidden));
    layer.gate_bias = bf16_buffer(e, 0.01f);
    layer.mlp1_bias = bf16_buffer(e * 2 * inter, 0.01f);
    layer.mlp2_bias = bf16_buffer(e * h, 0.01f);
    experts(2 * inter, h, layer.mlp1_blocks, layer.mlp1_scales);
    experts(h, inter, layer.mlp2_blocks, layer.mlp2_scales);
    w->layers.push_back(std::move(layer));
  }
  w->finish();
  synchronize();
  return CudaTransformer(std::move(w));
}

CudaTransformer::CudaTransformer(CudaTransformer&&) noexcept = default;
CudaTransformer& CudaTransformer::operator=(CudaTransformer&&) noexcept = default;
CudaTransformer::~CudaTransformer() = default;

const ModelDims& CudaTransformer::dims() const noexcept { return w_->dims; }
const ModelOptions& CudaTransformer::options() const noexcept { return w_->options; }
void CudaTransformer::set_options(const ModelOptions& options) noexcept { w_->options = options; }
std::size_t CudaTransformer::weight_bytes() const noexcept { return w_->bytes; }

DeviceSequence::DeviceSequence(const ModelDims& dims, index_t max_context) : capacity_(max_context) {
  if (max_context <= 0 || max_context > 2147483647) {
    throw RangeError("max_context " + std::to_string(max_context) + " must be in [1, 2^31)");
  }
  const std::size_t row = static_cast<std::size_t>(dims.num_kv_heads) * dims.head_dim;
  for (int l = 0; l < dims.num_layers; ++l) {
    k_.emplace_back(static_cast<std::size_t>(max_context) * row);
    v_.emplace_back(static_cast<std::size_t>(max_context) * row);
  }
}

std::size_t DeviceSequence::cache_bytes() const noexcept {
  std::size_t n = 0;
  for (std::size_t l = 0; l < k_.size(); ++l) n += k_[l].bytes() + v_[l].bytes();
  return n;
}

DeviceSequence CudaTransformer::new_sequence(index_t max_context) const {
  return DeviceSequence(w_->dims, max_context);
}

namespace {

void grow(DeviceScratch& s, const ModelDims& d, std::size_t tokens) {
  if (tokens <= s.tokens) return;
  const ScratchSizes z = ScratchSizes::of(d, tokens);
  s.token_ids = DeviceBuffer<std::int32_t>(tokens);
  s.x = DeviceBuffer<float>(z.hidden);
  s.normed = DeviceBuffer<float>(z.hidden);
  s.qkv = DeviceBuffer<float>(z.qkv);
  s.q = DeviceBuffer<float>(z.heads);
  s.attn = DeviceBuffer<float>(z.heads);
  s.router = DeviceBuffer<float>(z.router);
  s.indices = DeviceBuffer<std::int32_t>(z.entries);
  s.weights = DeviceBuffer<float>(z.entries);
  s.sorted_entry = DeviceBuffer<std::int32_t>(z.entries);
  s.entry_position = DeviceBuffer<std::int32_t>(z.entries);
  s.tile_expert = DeviceBuffer<std::int32_t>(z.tiles);
  s.tile_begin = DeviceBuffer<std::int32_t>(z.tiles);
  s.tile_end = DeviceBuffer<std::int32_t>(z.tiles);
  s.up = DeviceBuffer<float>(z.up);
  s.act = DeviceBuffer<float>(z.act);
  s.down = DeviceBuffer<float>(z.down);
  s.logits = DeviceBuffer<float>(z.logits);
  s.tokens = tokens;
}

}  // namespace

const float* CudaTransformer::enqueue(DeviceSequence& seq, std::span<const std::int32_t> tokens,
                                      int logit_rows) const {
  const ModelDims& d = w_->dims;
  const ModelOptions& o = w_->options;
  const int t = static_cast<int>(tokens.size());
  if (tokens.empty()) throw RangeError("forward: empty token list");
  if (seq.num_layers() != static_cast<std::size_t>(d.num_layers)) {
    throw Error("forward: the sequence was made for a model with " + std::to_string(seq.num_layers()) +
                " layers, this one has " + std::to_string(d.num_layers));
  }
  if (seq.length_ + t > seq.capacity_) {
    throw RangeError("context overflow: " + std::to_string(seq.length_) + " tokens held + " +
                     std::to_string(t) + " new exceed the context limit of " + std::to_string(seq.capacity_));
  }
  if (logit_rows < 1 || logit_rows > t) {
    throw RangeError("forward: " + std::to_string(logit_rows) + " logit rows of " + std::to_string(t) + " tokens");
  }
  check_token_ids(tokens, d.vocab);
  DeviceScratch& s = seq.scratch_;
  grow(s, d, tokens.size());
  s.token_ids.upload(tokens);

  const int h = d.hidden, e = d.num_experts, k = d.experts_per_token, inter = d.intermediate;
  const int nq = d.num_heads, nkv = d.num_kv_heads, hd = d.head_dim;
  const int first = static_cast<int>(seq.length_);
  const int entries = t * k;
  const LinearPath dense = use_tensor_cores(t, o) ? LinearPath::tensor_core : LinearPath::vector;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  embed(s.token_ids.data(), t, w_->embedding.data(), h, s.x.data());
  for (std::size_t li = 0; li < w_->layers.size(); ++li) {
    const Weights::Layer& l = w_->layers[li];
    // attention: x += out(attn(rope(qkv(norm(x)))))
    rms_norm(s.x.data(), t, h, l.attn_norm.data(), d.rms_eps, s.normed.data());
    linear(DeviceBF16{l.qkv_weight.data(), d.qkv_dim(), h}, l.qkv_bias.data(), s.normed.data(), t, nullptr,
           s.qkv.data(), dense);
    rope_qkv(s.qkv.data(), t, nq, nkv, hd, first, w_->inv_freq.data(), w_->concentration, s.q.data(),
             seq.k_[li].data(), seq.v_[li].data());
    sink_attention(s.q.data(), seq.k_[li].data(), seq.v_[li].data(), first, t, nq, nkv, hd, l.sinks.data(),
                   scale, l.sliding ? d.sliding_window : 0, s.attn.data());
    linear(DeviceBF16{l.out_weight.data(), h, nq * hd}, l.out_bias.data(), s.attn.data(), t, s.x.data(),
           s.x.data(), dense);
    // MoE: x += sum_j w_j expert_j(norm(x))
    rms_norm(s.x.data(), t, h, l.mlp_norm.data(), d.rms_eps, s.normed.data());
    linear(DeviceBF16{l.gate_weight.data(), e, h}, l.gate_bias.data(), s.normed.data(), t, nullptr,
           s.router.data(), LinearPath::vector);
    route_top_k(s.router.data(), t, e, k, s.indices.data(), s.weights.data());
    const DeviceMXFP4 w1{l.mlp1_blocks.data(), l.mlp1_scales.data(), 2 * inter, h, e};
    const DeviceMXFP4 w2{l.mlp2_blocks.data(), l.mlp2_scales.data(), h, inter, e};
    if (use_grouped_experts(t, o)) {
      const ExpertGrouping g{s.sorted_entry.data(), s.entry_position.data(), s.tile_expert.data(),
                             s.tile_begin.data(), s.tile_end.data(), expert_tile_bound(entries, e)};
      group_by_expert(s.indices.data(), entries, e, g);
      expert_linear_grouped(w1, l.mlp1_bias.data(), g, entries, s.normed.data(), true, k, s.up.data());
      swiglu(s.up.data(), entries, inter, kernels::kSwigluAlpha, d.swiglu_limit, s.act.data());
      expert_linear_grouped(w2, l.mlp2_bias.data(), g, entries, s.act.data(), false, 1, s.down.data());
      moe_combine(s.x.data(), s.down.data(), s.entry_position.data(), s.weights.data(), t, k, h, s.x.data());
    } else {
      expert_linear_vector(w1, l.mlp1_bias.data(), s.indices.data(), entries, s.normed.data(), k, s.up.data());
      swiglu(s.up.data(), entries, inter, kernels::kSwigluAlpha, d.swiglu_limit, s.act.data());
      expert_linear_vector(w2, l.mlp2_bias.data(), s.indices.data(), entries, s.act.data(), 1, s.down.data());
      moe_combine(s.x.data(), s.down.data(), nullptr, s.weights.data(), t, k, h, s.x.data());
    }
  }
  // final norm and unembedding of the last logit_rows tokens
  const float* last = s.x.data() + static_cast<std::size_t>(t - logit_rows) * h;
  rms_norm(last, logit_rows, h, w_->norm.data(), d.rms_eps, s.normed.data());
  const LinearPath unembed = use_tensor_cores(logit_rows, o) ? LinearPath::tensor_core : LinearPath::vector;
  linear(DeviceBF16{w_->unembedding.data(), d.vocab, h}, nullptr, s.normed.data(), logit_rows, nullptr,
         s.logits.data(), unembed);
  seq.length_ += t;
  return s.logits.data();
}

namespace {
Tensor<float, 2> download_logits(const float* device, int rows, int vocab) {
  Tensor<float, 2> out({rows, vocab});
  copy_to_host(out.data(), device, out.storage().size() * sizeof(float));  // waits for the step
  return out;
}
}  // namespace

Tensor<float, 2> CudaTransformer::forward(DeviceSequence& seq, std::span<const std::int32_t> tokens) const {
  const int t = static_cast<int>(tokens.size());
  const float* logits = enqueue(seq, tokens, t);
  return download_logits(logits, t, w_->dims.vocab);
}

Tensor<float, 2> CudaTransformer::forward_last(DeviceSequence& seq, std::span<const std::int32_t> tokens) const {
  const float* logits = enqueue(seq, tokens, 1);
  return download_logits(logits, 1, w_->dims.vocab);
}

Tensor<float, 2> CudaTransformer::forward(std::span<const std::int32_t> tokens) const {
  DeviceSequence seq = new_sequence(std::max<index_t>(1, static_cast<index_t>(tokens.size())));
  return forward(seq, tokens);
}

}  // namespace gptoss::cuda
