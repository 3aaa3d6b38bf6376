// Checkpoints as users download them: the Hugging Face layout (separate
// q/k/v, renamed tensors, MXFP4 as *_blocks/*_scales, sharded files with an
// index), layout detection, the original/ subfolder, load plans from the real
// gpt-oss-20b config and index without weights, and malformed indexes and
// configs.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "gptoss/gptoss.hpp"
#include "support/compare.hpp"
#include "support/matchers.hpp"
#include "support/test_data.hpp"

using namespace gptoss;
using gptoss::test::MessageHas;

namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("gptoss_layout_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

nlohmann::json read_json(const fs::path& p) { return io::read_json_file(p); }
void write_json(const fs::path& p, const nlohmann::json& j) { std::ofstream(p) << j.dump(2); }

}  // namespace

TEST_CASE("Layout: golden checkpoints give identical logits in both layouts, sharded", "[checkpoint][layout]") {
  for (const char* name : {"tiny", "tiny_long"}) {
    SECTION(name) {
      const fs::path original = test::golden_dir() / name;
      const auto model = load_checkpoint(original);
      const fs::path hf = fresh_dir(std::string("hf_") + name);
      write_checkpoint(model, hf, CheckpointLayout::hugging_face, 3);

      // Three shards and an index; some layer's tensors straddle two shards.
      const auto index = read_json(hf / "model.safetensors.index.json");
      std::set<std::string> shard_names;
      std::map<std::string, std::set<std::string>> shards_of_layer;
      for (const auto& [tensor, file] : index["weight_map"].items()) {
        shard_names.insert(file.get<std::string>());
        if (tensor.rfind("model.layers.", 0) == 0) {
          shards_of_layer[tensor.substr(0, tensor.find('.', 13))].insert(file.get<std::string>());
        }
      }
      CHECK(shard_names.size() == 3);
      bool straddles = false;
      for (const auto& [layer, files] : shards_of_layer) straddles = straddles || files.size() > 1;
      CHECK(straddles);
      CHECK(index["weight_map"].contains("model.layers.0.self_attn.q_proj.weight"));
      CHECK(index["weight_map"].contains("model.layers.3.mlp.experts.gate_up_proj_blocks"));

      const CheckpointInfo info = inspect_checkpoint(hf);
      CHECK(info.layout == CheckpointLayout::hugging_face);
      CHECK(info.files.size() == 3);
      const auto loaded = load_checkpoint(hf);
      CHECK(loaded.dims() == model.dims());
      const io::SafetensorsFile golden(original / "golden.safetensors");
      const auto tokens = golden.read<std::int32_t>("tokens");
      const auto a = model.forward(tokens), b = loaded.forward(tokens);
      CHECK(a.storage() == b.storage());  // bit-identical: the same bytes, viewed in place
      GPTOSS_REQUIRE_CLOSE(test::compare_to_max(b.storage(), golden.read<float>("logits"), 0.0, 1e-4));

      // And back to the original layout, one file.
      const fs::path back = fresh_dir(std::string("back_") + name);
      write_checkpoint(loaded, back, CheckpointLayout::original);
      const io::SafetensorsFile ours(back / "model.safetensors"), theirs(original / "model.safetensors");
      REQUIRE(ours.tensors().size() == theirs.tensors().size());
      for (const auto& t : theirs.tensors()) {
        INFO(t.name);
        REQUIRE(ours.contains(t.name));
        CHECK(ours.info(t.name).shape == t.shape);
        const auto x = ours.bytes(t.name), y = theirs.bytes(t.name);
        CHECK(std::equal(x.begin(), x.end(), y.begin(), y.end()));
      }
      fs::remove_all(hf);
      fs::remove_all(back);
    }
  }
}

TEST_CASE("Layout: the original/ subfolder of a Hugging Face repo is found", "[checkpoint][layout]") {
  const fs::path repo = fresh_dir("repo");
  fs::create_directories(repo / "original");
  for (const char* f : {"config.json", "model.safetensors"}) {
    fs::copy_file(test::golden_dir() / "tiny" / f, repo / "original" / f);
  }
  const CheckpointInfo info = inspect_checkpoint(repo);
  CHECK(info.layout == CheckpointLayout::original);
  CHECK(info.dir == repo / "original");
  const auto model = load_checkpoint(repo);
  CHECK(model.dims().vocab == 1024);
  fs::remove_all(repo);
}

TEST_CASE("Layout: the real gpt-oss-20b config and index plan 459 tensors and 20.9B parameters", "[checkpoint][layout]") {
  const fs::path dir = test::data_dir() / "gpt-oss-20b-hf";
  Transformer<> model(ModelDims{});
  const CheckpointPlan plan = plan_checkpoint(dir, &model);
  CHECK(plan.info.layout == CheckpointLayout::hugging_face);
  CHECK(plan.info.dims == GptOss20b::value);  // the HF config parses to the released dims
  CHECK(plan.absent_files.size() == 3);       // the shards themselves are not here
  CHECK(plan.missing.empty());
  CHECK(plan.unexpected.empty());
  REQUIRE(plan.tensors.size() == 459);

  // Names, dtypes and shapes agree with the list derived from the real files,
  // and the byte total equals the index's total_size.
  const auto derived = read_json(dir / "tensors_derived.json")["tensors"];
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& t : derived) by_name[t["name"].get<std::string>()] = t;
  for (const auto& t : plan.tensors) {
    INFO(t.name);
    REQUIRE(by_name.count(t.name));
    CHECK(std::string(dtype_name(t.dtype)) == by_name[t.name]["dtype"].get<std::string>());
    CHECK(t.shape == by_name[t.name]["shape"].get<std::vector<index_t>>());
  }
  const auto index = read_json(dir / "model.safetensors.index.json");
  CHECK(plan.bytes() == index["metadata"]["total_size"].get<std::uint64_t>());

  // The model card: 20.9B parameters, 3.6B active per token.
  const ParameterCount count = count_parameters(model);
  CHECK(count.total == 20914757184);
  CHECK(count.active_per_token == Approx(3.6e9).epsilon(0.01));
  CHECK(count.bytes() == static_cast<std::int64_t>(plan.bytes()));
  // Its split by part of a block, against the real tensor list: a layer's
  // attention half is self_attn.* and its norm (input_layernorm), its
  // feed-forward half mlp.* and its norm (post_attention_layernorm).
  std::int64_t attention = 0, feed_forward = 0, experts = 0;
  for (const auto& t : derived) {
    const std::string name = t["name"].get<std::string>();
    std::int64_t bytes = t["dtype"].get<std::string>() == "BF16" ? 2 : 1;
    for (const auto& e : t["shape"]) bytes *= e.get<std::int64_t>();
    const auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
    if (has(".self_attn.") || has(".input_layernorm.")) attention += bytes;
    if (has(".mlp.") || has(".post_attention_layernorm.")) feed_forward += bytes;
    if (has(".mlp.experts.")) experts += bytes;
  }
  CHECK(count.attention_bytes == attention);
  CHECK(count.feed_forward_bytes == feed_forward);
  CHECK(count.expert_bytes == experts);

  // The original/ config of the same repo describes the same model.
  CHECK(io::read_original_config(dir / "original" / "config.json") == plan.info.dims);
  // Loading for real names the missing shard.
  REQUIRE_THROWS_MATCHES(load_checkpoint(dir), FormatError, MessageHas({"model-0000", "does not exist"}));
}

TEST_CASE("Layout: Hugging Face config variants", "[checkpoint][layout][config]") {
  const auto real = read_json(test::data_dir() / "gpt-oss-20b-hf" / "config.json");
  SECTION("rope_parameters is accepted as rope_scaling") {
    auto j = real;
    j["rope_parameters"] = j["rope_scaling"];
    j["rope_parameters"]["rope_theta"] = j["rope_theta"];
    j.erase("rope_scaling");
    j.erase("rope_theta");
    CHECK(io::parse_hf_config(j, "x") == GptOss20b::value);
  }
  SECTION("truncate missing means true: the YaRN bounds are rounded") {
    auto j = real;
    j["rope_scaling"].erase("truncate");
    const ModelDims d = io::parse_hf_config(j, "x");
    CHECK(d.rope_truncate);
    CHECK(d.rope().low() == 8.0);    // floor(8.09)
    CHECK(d.rope().high() == 18.0);  // ceil(17.40)
    CHECK_FALSE(io::parse_hf_config(real, "x").rope_truncate);
  }
  SECTION("a YaRN beta that makes the bounds NaN or infinite is refused, rounded or not") {
    for (const bool truncate : {true, false}) {
      for (const double beta : {-32.0, 0.0}) {
        auto j = real;
        j["rope_scaling"]["truncate"] = truncate;
        j["rope_scaling"]["beta_fast"] = beta;
        INFO("truncate " << truncate << ", beta_fast " << beta);
        REQUIRE_THROWS_AS(io::parse_hf_config(j, "cfg"), ConfigError);
      }
    }
  }
  SECTION("a layer pattern other than even-sliding is refused") {
    auto j = real;
    j["layer_types"][0] = "full_attention";
    REQUIRE_THROWS_MATCHES(io::parse_hf_config(j, "cfg"), ConfigError, MessageHas({"layer_types[0]", "sliding_attention"}));
  }
  SECTION("another quantization method is refused") {
    auto j = real;
    j["quantization_config"]["quant_method"] = "gptq";
    REQUIRE_THROWS_MATCHES(io::parse_hf_config(j, "cfg"), ConfigError, MessageHas({"gptq"}));
    j["quantization_config"]["quant_method"] = 5;
    REQUIRE_THROWS_MATCHES(io::parse_hf_config(j, "cfg"), ConfigError, MessageHas({"quant_method is 5"}));
    j["quantization_config"].erase("quant_method");
    REQUIRE_THROWS_MATCHES(io::parse_hf_config(j, "cfg"), ConfigError, MessageHas({"quant_method is missing"}));
  }
  SECTION("absurd or non-integral sizes are refused") {
    auto j = real;
    j["hidden_size"] = 1e30;
    REQUIRE_THROWS_MATCHES(io::parse_hf_config(j, "cfg"), ConfigError, MessageHas({"hidden_size"}));
    // Integers, but absurd: refused before any layer is built.
    j = real;
    j["head_dim"] = 16777216;
    REQUIRE_THROWS_MATCHES(io::parse_hf_config(j, "cfg"), ConfigError, MessageHas({"cfg", "head_dim", "at most"}));
    j = real;
    j["num_hidden_layers"] = 2147483647;
    j.erase("layer_types");  // (which would be refused first: it lists 24)
    REQUIRE_THROWS_MATCHES(io::parse_hf_config(j, "cfg"), ConfigError, MessageHas({"cfg", "num_layers", "at most"}));
    j = real;
    j["num_local_experts"] = "32";
    REQUIRE_THROWS_MATCHES(io::parse_hf_config(j, "cfg"), ConfigError, MessageHas({"num_local_experts", "not a number"}));
  }
}

TEST_CASE("Layout: malformed shard indexes are clear errors", "[checkpoint][layout]") {
  const auto model = load_checkpoint(test::golden_dir() / "tiny");
  const fs::path dir = fresh_dir("bad_index");
  write_checkpoint(model, dir, CheckpointLayout::hugging_face, 3);
  const fs::path index_path = dir / "model.safetensors.index.json";
  const auto index = read_json(index_path);

  SECTION("a shard file is missing") {
    fs::remove(dir / "model-00001-of-00003.safetensors");
    REQUIRE_THROWS_MATCHES(load_checkpoint(dir), FormatError,
                           MessageHas({"model-00001-of-00003.safetensors", "does not exist"}));
  }
  SECTION("the index puts a tensor in the wrong shard") {
    auto j = index;
    const std::string moved = "model.norm.weight";
    const std::string file = j["weight_map"][moved];
    j["weight_map"][moved] = file == "model-00000-of-00003.safetensors" ? "model-00002-of-00003.safetensors"
                                                                        : "model-00000-of-00003.safetensors";
    write_json(index_path, j);
    REQUIRE_THROWS_MATCHES(load_checkpoint(dir), FormatError, MessageHas({"model.norm.weight", "but it is in"}));
  }
  SECTION("the index names a path outside the directory") {
    auto j = index;
    j["weight_map"]["lm_head.weight"] = "../elsewhere.safetensors";
    write_json(index_path, j);
    REQUIRE_THROWS_MATCHES(load_checkpoint(dir), FormatError, MessageHas({"lm_head.weight", "not a file name"}));
  }
  SECTION("weight_map is not an object") {
    write_json(index_path, {{"weight_map", {1, 2}}});
    REQUIRE_THROWS_MATCHES(load_checkpoint(dir), FormatError, MessageHas({"no weight_map"}));
  }
  SECTION("weight_map is empty") {
    write_json(index_path, {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}});
    REQUIRE_THROWS_MATCHES(load_checkpoint(dir), FormatError, MessageHas({"index.json", "lists no tensors"}));
    REQUIRE_THROWS_MATCHES(plan_checkpoint(dir), FormatError, MessageHas({"index.json", "lists no tensors"}));
  }
  SECTION("the index is not JSON") {
    std::ofstream(index_path) << "{\"weight_map\": {";
    REQUIRE_THROWS_MATCHES(load_checkpoint(dir), ConfigError, MessageHas({"index.json", "not valid JSON"}));
  }
  SECTION("a needed tensor is in no shard") {
    auto j = index;
    j["weight_map"].erase("model.layers.2.self_attn.k_proj.bias");
    write_json(index_path, j);
    // The shard still holds it, so the index and the shards disagree.
    REQUIRE_THROWS_MATCHES(load_checkpoint(dir), FormatError, MessageHas({"model.layers.2.self_attn.k_proj.bias"}));
  }
  SECTION("no config at all") {
    fs::remove(dir / "config.json");
    REQUIRE_THROWS_MATCHES(load_checkpoint(dir), FormatError, MessageHas({"no config.json"}));
  }
  fs::remove_all(dir);
}
