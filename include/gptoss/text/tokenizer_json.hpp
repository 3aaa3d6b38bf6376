// Reading a HF tokenizer.json. The file is large (gpt-oss: 28 MB, 200k
// vocabulary entries, 446k merges), so it is read with a SAX parser: the
// vocabulary and merges stream straight into flat vectors, and only the
// small remainder (model options, pre-tokenizer, added tokens, ...) becomes
// a JSON tree. Byte-level token text is turned into raw bytes on the way
// in. Syntax errors are FormatErrors naming the file and byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "gptoss/core/error.hpp"
#include "gptoss/text/byte_level.hpp"

namespace gptoss::text {

/// The raw content of a tokenizer.json; tokens are raw bytes (byte-level
/// text decoded).
struct TokenizerJson {
  struct VocabEntry {
    std::uint32_t offset, length;  // in vocab_bytes
    std::int64_t id;
  };
  struct MergeEntry {
    std::uint32_t offset, left_length, right_length;  // left then right, adjacent in merge_bytes
  };

  nlohmann::json rest;  // everything except model.vocab and model.merges
  std::string vocab_bytes;
  std::vector<VocabEntry> vocab;  // file order
  std::string merge_bytes;
  std::vector<MergeEntry> merges;  // rank = position
  bool has_vocab = false;
  bool has_merges = false;

  std::string_view token(const VocabEntry& e) const { return std::string_view(vocab_bytes).substr(e.offset, e.length); }
  std::string_view left(const MergeEntry& m) const { return std::string_view(merge_bytes).substr(m.offset, m.left_length); }
  std::string_view right(const MergeEntry& m) const {
    return std::string_view(merge_bytes).substr(m.offset + m.left_length, m.right_length);
  }
  /// left + right: the token the merge makes.
  std::string_view merged(const MergeEntry& m) const {
    return std::string_view(merge_bytes).substr(m.offset, m.left_length + m.right_length);
  }
};

namespace detail {

/// SAX handler: builds a tree for everything but model.vocab / model.merges.
class TokenizerJsonReader : public nlohmann::json_sax<nlohmann::json> {
 public:
  TokenizerJsonReader(TokenizerJson& out, const std::string& origin) : out_(out), origin_(origin) {}

  bool null() override { return value(nullptr); }
  bool boolean(bool v) override { return value(v); }
  bool number_integer(number_integer_t v) override {
    if (mode_ == Mode::vocab) return vocab_id(v);
    return value(v);
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == Mode::vocab) {
      return vocab_id(v > static_cast<number_unsigned_t>(INT64_MAX) ? INT64_MAX : static_cast<std::int64_t>(v));
    }
    return value(v);
  }
  bool number_float(number_float_t v, const string_t&) override {
    if (mode_ == Mode::vocab) fail("model.vocab: the id of '" + pending_token_text() + "' is not an integer");
    return value(v);
  }
  bool binary(binary_t&) override { return value(nullptr); }
  bool string(string_t& v) override {
    if (mode_ == Mode::vocab) fail("model.vocab: the id of '" + pending_token_text() + "' is not an integer");
    if (mode_ == Mode::merges) {
      if (merge_depth_ == 0) {  // the "left right" form
        const std::size_t space = v.find(' ');
        if (space == std::string::npos || v.find(' ', space + 1) != std::string::npos) {
          fail(merge_name() + ": '" + v + "' is not two tokens separated by one space");
        }
        begin_merge();
        merge_part(std::string_view(v).substr(0, space));
        merge_part(std::string_view(v).substr(space + 1));
        end_merge();
      } else {  // the ["left", "right"] form
        if (merge_parts_ == 2) fail(merge_name() + " has more than 2 strings");
        merge_part(v);
      }
      return true;
    }
    return value(std::move(v));
  }
  bool start_object(std::size_t) override {
    if (mode_ == Mode::merges) fail(merge_name() + " is an object");
    if (mode_ == Mode::vocab) fail("model.vocab: the value of '" + pending_token_text() + "' is an object");
    if (at_model_key("vocab")) {
      if (out_.has_vocab) fail("model.vocab appears twice");
      mode_ = Mode::vocab;
      out_.has_vocab = true;
      return true;
    }
    return open(nlohmann::json::object());
  }
  bool end_object() override {
    if (mode_ == Mode::vocab) {
      mode_ = Mode::tree;
      return true;
    }
    return close();
  }
  bool start_array(std::size_t) override {
    if (mode_ == Mode::vocab) fail("model.vocab: the value of '" + pending_token_text() + "' is an array");
    if (mode_ == Mode::merges) {
      if (merge_depth_ > 0) fail(merge_name() + " nests arrays");
      merge_depth_ = 1;
      begin_merge();
      return true;
    }
    if (at_model_key("merges")) {
      if (out_.has_merges) fail("model.merges appears twice");
      mode_ = Mode::merges;
      out_.has_merges = true;
      return true;
    }
    return open(nlohmann::json::array());
  }
  bool end_array() override {
    if (mode_ == Mode::merges) {
      if (merge_depth_ == 0) {
        mode_ = Mode::tree;
        return true;
      }
      merge_depth_ = 0;
      if (merge_parts_ != 2) fail(merge_name() + " has " + std::to_string(merge_parts_) + " strings, not 2");
      end_merge();
      return true;
    }
    return close();
  }
  bool key(string_t& k) override {
    if (mode_ == Mode::vocab) {
      pending_offset_ = out_.vocab_bytes.size();
      if (k.empty() || !byte_level::decode_append(k, out_.vocab_bytes)) {
        fail("model.vocab: '" + k + "' is not byte-level text");
      }
      return true;
    }
    key_ = k;
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) override {
    std::string what = e.what();
    // nlohmann's message starts "[json.exception.parse_error.101] parse error at line 1, column 2: ..."
    if (const auto at = what.find("parse error"); at != std::string::npos) what = what.substr(at);
    throw FormatError(origin_ + ": invalid JSON near byte " + std::to_string(position) + ": " + what);
  }

 private:
  enum class Mode { tree, vocab, merges };

  [[noreturn]] void fail(const std::string& what) const { throw FormatError(origin_ + ": " + what); }

  std::string pending_token_text() const {
    return byte_level::encode(std::string_view(out_.vocab_bytes).substr(pending_offset_));
  }
  std::string merge_name() const { return "model.merges[" + std::to_string(out_.merges.size()) + "]"; }

  bool vocab_id(std::int64_t id) {
    const std::size_t length = out_.vocab_bytes.size() - pending_offset_;
    out_.vocab.push_back({static_cast<std::uint32_t>(pending_offset_), static_cast<std::uint32_t>(length), id});
    return true;
  }

  void begin_merge() {
    merge_parts_ = 0;
    current_merge_ = {static_cast<std::uint32_t>(out_.merge_bytes.size()), 0, 0};
  }
  void merge_part(std::string_view text) {
    const std::size_t before = out_.merge_bytes.size();
    if (text.empty() || !byte_level::decode_append(text, out_.merge_bytes)) {
      fail(merge_name() + ": '" + std::string(text) + "' is not byte-level text");
    }
    const auto length = static_cast<std::uint32_t>(out_.merge_bytes.size() - before);
    (merge_parts_ == 0 ? current_merge_.left_length : current_merge_.right_length) = length;
    ++merge_parts_;
  }
  void end_merge() { out_.merges.push_back(current_merge_); }

  /// True when the value about to start is the member `name` of the
  /// top-level "model" object.
  bool at_model_key(const char* name) const {
    return stack_.size() == 2 && path_[1] == "model" && key_ == name && stack_.back()->is_object();
  }

  bool value(nlohmann::json v) {
    if (mode_ == Mode::merges) fail(merge_name() + " is not a string or a pair of strings");
    // null, true, false: the ids of model.vocab must be integers.
    if (mode_ == Mode::vocab) fail("model.vocab: the id of '" + pending_token_text() + "' is not an integer");
    if (stack_.empty()) {
      out_.rest = std::move(v);
      return true;
    }
    nlohmann::json& top = *stack_.back();
    if (top.is_object()) {
      top[key_] = std::move(v);
    } else {
      top.push_back(std::move(v));
    }
    return true;
  }

  bool open(nlohmann::json container) {
    std::string name = key_;
    if (stack_.empty()) {
      out_.rest = std::move(container);
      stack_.push_back(&out_.rest);
    } else {
      nlohmann::json& top = *stack_.back();
      if (top.is_object()) {
        top[key_] = std::move(container);
        stack_.push_back(&top[key_]);
      } else {
        top.push_back(std::move(container));
        stack_.push_back(&top.back());
        name.clear();
      }
    }
    path_.push_back(std::move(name));
    return true;
  }
  bool close() {
    stack_.pop_back();
    path_.pop_back();
    return true;
  }

  TokenizerJson& out_;
  const std::string& origin_;
  Mode mode_ = Mode::tree;
  std::vector<nlohmann::json*> stack_;
  std::vector<std::string> path_;  // the key of each open container ("" for array elements and the root)
  std::string key_;
  std::size_t pending_offset_ = 0;  // where the current vocabulary key's bytes start
  int merge_depth_ = 0;
  int merge_parts_ = 0;
  TokenizerJson::MergeEntry current_merge_{};
};

}  // namespace detail

/// Parses tokenizer.json text; `origin` names the file in errors.
inline TokenizerJson read_tokenizer_json(std::string_view json_text, const std::string& origin) {
  TokenizerJson out;
  out.vocab_bytes.reserve(json_text.size() / 16);
  out.merge_bytes.reserve(json_text.size() / 8);
  detail::TokenizerJsonReader reader(out, origin);
  nlohmann::json::sax_parse(json_text.begin(), json_text.end(), &reader);
  if (!out.rest.is_object()) throw FormatError(origin + ": the top level is not a JSON object");
  return out;
}

}  // namespace gptoss::text
