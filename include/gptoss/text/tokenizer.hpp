// The gpt-oss tokenizer (o200k_harmony) from a HF tokenizer.json: byte-level
// BPE with ranked merges, the Split regex pre-tokenizer and added (special)
// tokens matched in the raw text before pre-tokenization.
//
//   auto tok = gptoss::text::Tokenizer::from_file("gpt-oss-20b/tokenizer.json");
//   std::vector<int32_t> ids = tok.encode("Hello<|end|>");      // [13225, 200007]
//   tok.encode("<|end|>", SpecialTokens::plain);                  // the text, as ordinary tokens
//   std::string bytes = tok.decode(ids);                          // exact bytes back
//
// This header is not part of gptoss.hpp: it needs PCRE2. Link libpcre2-8
// (CMake: pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8) and
// target_link_libraries(... PkgConfig::PCRE2)).
//
// A Tokenizer is immutable once loaded; encode and decode are safe to call
// from several threads at once.
#pragma once

#include <algorithm>
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gptoss/core/error.hpp"
#include "gptoss/text/bpe.hpp"
#include "gptoss/text/byte_level.hpp"
#include "gptoss/text/pretokenizer.hpp"
#include "gptoss/text/tokenizer_json.hpp"

namespace gptoss::text {

/// How encode treats the text of special tokens such as "<|end|>".
enum class SpecialTokens {
  recognize,  ///< special-token text becomes the special token's id (trusted text)
  plain,      ///< special-token text is encoded as ordinary text (untrusted text)
};

/// An added token of tokenizer.json (gpt-oss: the 21 ids 199998..200018).
struct AddedToken {
  std::int32_t id = 0;
  std::string content;
  bool special = true;
};

namespace detail {

/// Finds added tokens in raw text, leftmost first and longest at a
/// position (the HF rule).
class AddedTokenMatcher {
 public:
  void add(std::string_view content, std::int32_t id) {
    if (content.empty()) return;
    by_text_.emplace(std::string(content), id);
    first_bytes_.set(static_cast<unsigned char>(content[0]));
    if (std::find(lengths_.begin(), lengths_.end(), content.size()) == lengths_.end()) {
      lengths_.push_back(content.size());
      std::sort(lengths_.begin(), lengths_.end(), std::greater<>());
    }
    single_first_byte_ = first_bytes_.count() == 1 ? static_cast<int>(static_cast<unsigned char>(content[0])) : -1;
  }
  bool empty() const noexcept { return by_text_.empty(); }

  struct Match {
    std::size_t position = std::string_view::npos, length = 0;
    std::int32_t id = -1;
  };

  /// The first added token in text[from, ...), or position npos.
  Match find(std::string_view text, std::size_t from) const {
    std::size_t i = from;
    while (i < text.size()) {
      if (single_first_byte_ >= 0) {
        const void* hit = std::memchr(text.data() + i, single_first_byte_, text.size() - i);
        if (hit == nullptr) return {};
        i = static_cast<std::size_t>(static_cast<const char*>(hit) - text.data());
      } else if (!first_bytes_.test(static_cast<unsigned char>(text[i]))) {
        ++i;
        continue;
      }
      for (const std::size_t length : lengths_) {
        if (i + length > text.size()) continue;
        if (const auto it = by_text_.find(text.substr(i, length)); it != by_text_.end()) {
          return {i, length, it->second};
        }
      }
      ++i;
    }
    return {};
  }

 private:
  std::map<std::string, std::int32_t, std::less<>> by_text_;
  std::bitset<256> first_bytes_;
  std::vector<std::size_t> lengths_;  // distinct content lengths, longest first
  int single_first_byte_ = -1;
};

inline std::string read_whole_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw FormatError("tokenizer file '" + path.string() + "' does not exist or is not a file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError("tokenizer file '" + path.string() + "' cannot be opened");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  std::string data(static_cast<std::size_t>(size), '\0');
  if (!in.read(data.data(), size)) throw FormatError("tokenizer file '" + path.string() + "' cannot be read");
  return data;
}

/// GPT-2's pattern, used by a ByteLevel pre-tokenizer with use_regex = true.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace detail

class Tokenizer {
 public:
  /// Loads a HF tokenizer.json. A missing, malformed or unsupported file is
  /// a FormatError naming the file and what is wrong.
  static Tokenizer from_file(const std::filesystem::path& path) {
    return from_json(detail::read_whole_file(path), path.string());
  }

  /// Loads tokenizer.json text; `origin` names it in errors.
  static Tokenizer from_json(std::string_view json_text, const std::string& origin = "tokenizer.json") {
    return Tokenizer(read_tokenizer_json(json_text, origin), origin);
  }

  Tokenizer(Tokenizer&&) noexcept = default;
  Tokenizer& operator=(Tokenizer&&) noexcept = default;

  /// Token ids of `text` (any bytes; invalid UTF-8 is encoded byte-wise).
  std::vector<std::int32_t> encode(std::string_view text, SpecialTokens mode = SpecialTokens::recognize) const {
    std::vector<std::int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    encode_into(text, ids, mode);
    return ids;
  }

  /// Appends the ids of `text` to `ids`.
  void encode_into(std::string_view text, std::vector<std::int32_t>& ids,
                   SpecialTokens mode = SpecialTokens::recognize) const {
    const detail::AddedTokenMatcher& matcher = mode == SpecialTokens::recognize ? all_added_ : non_special_added_;
    if (matcher.empty()) {
      encode_ordinary_into(text, ids);
      return;
    }
    std::size_t done = 0;
    while (done < text.size()) {
      const auto match = matcher.find(text, done);
      if (match.position == std::string_view::npos) break;
      encode_ordinary_into(text.substr(done, match.position - done), ids);
      ids.push_back(match.id);
      done = match.position + match.length;
    }
    encode_ordinary_into(text.substr(done), ids);
  }

  /// The exact bytes of `ids` (special tokens as their text). The result
  /// need not be valid UTF-8 (a token may hold part of a character). An id
  /// with no token is a RangeError naming it.
  std::string decode(std::span<const std::int32_t> ids) const {
    std::string out;
    out.reserve(ids.size() * 4);
    for (const std::int32_t id : ids) out += token_bytes(id);
    return out;
  }

  /// The bytes of one token; RangeError for an id with no token.
  std::string_view token_bytes(std::int32_t id) const {
    if (id >= 0 && id < vocab_size_) {
      if (const auto it = added_by_id_.find(id); it != added_by_id_.end()) return added_[it->second].content;
      const auto& tokens = bpe_.tokens();
      if (static_cast<std::size_t>(id) < tokens.size() && !tokens[static_cast<std::size_t>(id)].empty()) {
        return tokens[static_cast<std::size_t>(id)];
      }
      throw RangeError("token id " + std::to_string(id) + " has no token in " + origin_);
    }
    throw RangeError("token id " + std::to_string(id) + " is outside the tokenizer's vocabulary [0, " +
                     std::to_string(vocab_size_) + ")");
  }

  /// The id of a token written as in tokenizer.json: an added token's
  /// content ("<|end|>") or a vocabulary entry in byte-level text ("Ġthe").
  std::optional<std::int32_t> token_to_id(std::string_view token) const {
    for (const AddedToken& a : added_) {
      if (a.content == token) return a.id;
    }
    const auto bytes = byte_level::decode(token);
    if (!bytes) return std::nullopt;
    const std::int32_t id = bpe_.find(*bytes);
    return id >= 0 ? std::optional<std::int32_t>(id) : std::nullopt;
  }

  /// A token as tokenizer.json writes it (byte-level text, or an added
  /// token's content); RangeError for an id with no token.
  std::string id_to_token(std::int32_t id) const {
    if (const auto it = added_by_id_.find(id); it != added_by_id_.end()) return added_[it->second].content;
    return byte_level::encode(token_bytes(id));
  }

  /// One past the largest token id (gpt-oss: 200019).
  std::int32_t vocab_size() const noexcept { return vocab_size_; }

  /// The id of a special (added) token by its text, e.g. "<|return|>";
  /// RangeError when the tokenizer has no such token.
  std::int32_t special_token_id(std::string_view name) const {
    for (const AddedToken& a : added_) {
      if (a.content == name) return a.id;
    }
    throw RangeError("the tokenizer " + origin_ + " has no special token '" + std::string(name) + "'");
  }

  /// True for the ids of special added tokens.
  bool is_special(std::int32_t id) const {
    const auto it = added_by_id_.find(id);
    return it != added_by_id_.end() && added_[it->second].special;
  }

  const std::vector<AddedToken>& added_tokens() const noexcept { return added_; }
  /// The Split pattern the pre-tokenizer uses.
  const std::string& pattern() const noexcept { return splitter_.pattern(); }
  /// Where the tokenizer was loaded from (for messages).
  const std::string& origin() const noexcept { return origin_; }

 private:
  Tokenizer(TokenizerJson json, std::string origin) : origin_(std::move(origin)) {
    const nlohmann::json& root = json.rest;
    check_model(root);
    load_vocab(json);
    load_merges(json);
    load_pre_tokenizer(root);
    load_normalizer_and_decoder(root);
  }

  [[noreturn]] void fail(const std::string& what) const { throw FormatError(origin_ + ": " + what); }

  /// The member `key` of `object` as a string, or `fallback` if absent/null.
  std::string string_member(const nlohmann::json& object, const char* key, const std::string& where,
                            const std::string& fallback = "") const {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return fallback;
    if (!it->is_string()) fail(where + "." + key + " is not a string");
    return it->get<std::string>();
  }
  bool bool_member(const nlohmann::json& object, const char* key, const std::string& where, bool fallback) const {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) fail(where + "." + key + " is not true or false");
    return it->get<bool>();
  }

  void check_model(const nlohmann::json& root) {
    const auto model = root.find("model");
    if (model == root.end() || !model->is_object()) fail("has no \"model\" object");
    const std::string type = string_member(*model, "type", "model", "BPE");
    if (type != "BPE") fail("model.type is '" + type + "'; only BPE is supported");
    if (bool_member(*model, "byte_fallback", "model", false)) fail("model.byte_fallback = true is not supported");
    for (const char* key : {"unk_token", "continuing_subword_prefix", "end_of_word_suffix"}) {
      if (!string_member(*model, key, "model").empty()) fail(std::string("model.") + key + " is not supported");
    }
    if (const auto d = model->find("dropout"); d != model->end() && !d->is_null() && !(d->is_number() && d->get<double>() == 0.0)) {
      fail("model.dropout is not supported");
    }
    ignore_merges_ = bool_member(*model, "ignore_merges", "model", false);
  }

  void load_vocab(TokenizerJson& json) {
    if (!json.has_vocab) fail("model.vocab is missing");
    constexpr std::int64_t kMaxId = 16'777'216;
    std::int64_t max_id = -1;
    for (const auto& entry : json.vocab) {
      if (entry.id < 0 || entry.id >= kMaxId) {
        fail("model.vocab: '" + byte_level::encode(json.token(entry)) + "' has id " + std::to_string(entry.id) +
             ", outside [0, 2^24)");
      }
      max_id = std::max(max_id, entry.id);
    }
    std::vector<std::string> tokens(static_cast<std::size_t>(max_id + 1));
    for (const auto& entry : json.vocab) {
      std::string& slot = tokens[static_cast<std::size_t>(entry.id)];
      if (!slot.empty()) fail("model.vocab: id " + std::to_string(entry.id) + " is given to two tokens");
      slot = json.token(entry);
    }
    json.vocab = {};
    json.vocab_bytes = {};

    const nlohmann::json& root = json.rest;
    std::int64_t top = max_id;
    if (const auto added = root.find("added_tokens"); added != root.end() && !added->is_null()) {
      if (!added->is_array()) fail("added_tokens is not an array");
      for (std::size_t i = 0; i < added->size(); ++i) {
        const nlohmann::json& a = (*added)[i];
        const std::string where = "added_tokens[" + std::to_string(i) + "]";
        if (!a.is_object()) fail(where + " is not an object");
        const auto id = a.find("id");
        if (id == a.end() || !id->is_number_integer() || id->get<std::int64_t>() < 0 || id->get<std::int64_t>() >= kMaxId) {
          fail(where + ".id is missing or not a token id");
        }
        AddedToken token{static_cast<std::int32_t>(id->get<std::int64_t>()), string_member(a, "content", where), true};
        if (token.content.empty()) fail(where + ".content is missing or empty");
        token.special = bool_member(a, "special", where, false);
        for (const char* key : {"lstrip", "rstrip", "single_word"}) {
          if (bool_member(a, key, where, false)) fail(where + " ('" + token.content + "'): " + key + " = true is not supported");
        }
        if (added_by_id_.count(token.id)) fail(where + ": id " + std::to_string(token.id) + " is added twice");
        added_by_id_.emplace(token.id, added_.size());
        top = std::max<std::int64_t>(top, token.id);
        all_added_.add(token.content, token.id);
        if (!token.special) non_special_added_.add(token.content, token.id);
        added_.push_back(std::move(token));
      }
    }
    vocab_size_ = static_cast<std::int32_t>(top + 1);
    bpe_ = BpeModel(std::move(tokens), ignore_merges_);
    for (int b = 0; b < 256; ++b) {
      if (bpe_.byte_id(static_cast<unsigned char>(b)) < 0) {
        static constexpr char kHex[] = "0123456789abcdef";
        fail(std::string("model.vocab has no token for the single byte 0x") + kHex[b >> 4] + kHex[b & 15] +
             " (a byte-level vocabulary needs all 256)");
      }
    }
  }

  void load_merges(TokenizerJson& json) {
    if (!json.has_merges) fail("model.merges is missing");
    MergeTable& table = bpe_.merges();
    table.reserve(json.merges.size());
    for (std::size_t rank = 0; rank < json.merges.size(); ++rank) {
      const TokenizerJson::MergeEntry& merge = json.merges[rank];
      const std::int32_t left_id = bpe_.find(json.left(merge)), right_id = bpe_.find(json.right(merge));
      const std::int32_t merged_id = bpe_.find(json.merged(merge));
      if (left_id < 0 || right_id < 0 || merged_id < 0) {
        const std::string left = byte_level::encode(json.left(merge)), right = byte_level::encode(json.right(merge));
        fail("model.merges[" + std::to_string(rank) + "] ('" + left + "', '" + right + "'): " +
             (left_id < 0 ? "'" + left + "' is not in model.vocab"
              : right_id < 0 ? "'" + right + "' is not in model.vocab"
                             : "the merged token '" + left + right + "' is not in model.vocab"));
      }
      table.add(left_id, right_id, MergeRule{static_cast<std::int32_t>(rank), merged_id});
    }
    json.merges = {};
    json.merge_bytes = {};
  }

  void load_pre_tokenizer(const nlohmann::json& root) {
    const auto pre = root.find("pre_tokenizer");
    if (pre == root.end() || pre->is_null()) fail("pre_tokenizer is missing (a byte-level BPE needs one)");
    std::vector<const nlohmann::json*> steps;
    if (!pre->is_object()) fail("pre_tokenizer is not an object");
    const std::string type = string_member(*pre, "type", "pre_tokenizer");
    if (type == "Sequence") {
      const auto list = pre->find("pretokenizers");
      if (list == pre->end() || !list->is_array()) fail("pre_tokenizer.pretokenizers is not an array");
      for (const auto& step : *list) steps.push_back(&step);
    } else {
      steps.push_back(&*pre);
    }
    std::string pattern;
    bool byte_level_seen = false;
    for (std::size_t i = 0; i < steps.size(); ++i) {
      const nlohmann::json& step = *steps[i];
      const std::string where = "pre_tokenizer step " + std::to_string(i);
      if (!step.is_object()) fail(where + " is not an object");
      const std::string step_type = string_member(step, "type", where);
      if (step_type == "Split") {
        if (!pattern.empty() || byte_level_seen) fail(where + ": only one Split, before ByteLevel, is supported");
        const auto p = step.find("pattern");
        if (p == step.end() || !p->is_object()) fail(where + ".pattern is not an object");
        if (p->contains("Regex")) {
          pattern = string_member(*p, "Regex", where + ".pattern");
        } else {
          fail(where + ".pattern: only {\"Regex\": ...} patterns are supported");
        }
        if (pattern.empty()) fail(where + ".pattern.Regex is empty");
        const std::string behavior = string_member(step, "behavior", where);
        if (behavior != "Isolated") fail(where + ".behavior is '" + behavior + "'; only Isolated is supported");
        if (bool_member(step, "invert", where, false)) fail(where + ".invert = true is not supported");
      } else if (step_type == "ByteLevel") {
        byte_level_seen = true;
        if (bool_member(step, "add_prefix_space", where, false)) fail(where + ".add_prefix_space = true is not supported");
        if (bool_member(step, "use_regex", where, true)) {
          if (!pattern.empty()) fail(where + ": ByteLevel.use_regex = true after a Split is not supported");
          pattern = detail::kGpt2Pattern;
        }
      } else {
        fail(where + " has type '" + step_type + "'; only Split and ByteLevel are supported");
      }
    }
    if (!byte_level_seen) fail("pre_tokenizer has no ByteLevel step; only byte-level BPE is supported");
    if (!pattern.empty()) splitter_ = RegexSplitter(pattern, origin_);
  }

  void load_normalizer_and_decoder(const nlohmann::json& root) {
    if (const auto n = root.find("normalizer"); n != root.end() && !n->is_null()) {
      fail("a normalizer is not supported (gpt-oss has none)");
    }
    if (const auto d = root.find("decoder"); d != root.end() && !d->is_null()) {
      if (!d->is_object() || string_member(*d, "type", "decoder") != "ByteLevel") {
        fail("the decoder must be ByteLevel");
      }
    }
  }

  void encode_ordinary_into(std::string_view text, std::vector<std::int32_t>& ids) const {
    splitter_.split(text, [&](std::string_view piece) { bpe_.encode_word(piece, ids); });
  }

  std::string origin_;
  BpeModel bpe_;
  RegexSplitter splitter_;
  bool ignore_merges_ = false;
  std::vector<AddedToken> added_;
  std::unordered_map<std::int32_t, std::size_t> added_by_id_;
  detail::AddedTokenMatcher all_added_, non_special_added_;
  std::int32_t vocab_size_ = 0;
};

}  // namespace gptoss::text
