// The tokenizer against the reference ids of tests/data/tokenizer/cases.jsonl
// (every row, both special-token modes), decode's exact bytes, round trips on
// random text and random bytes, the merge forms and options of tokenizer.json,
// and malformed files rejected with a FormatError naming file and fault.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "gptoss/text/tokenizer.hpp"
#include "support/matchers.hpp"
#include "support/test_data.hpp"

using namespace gptoss;
using gptoss::test::MessageHas;
using gptoss::text::SpecialTokens;
using gptoss::text::Tokenizer;

namespace {

std::filesystem::path tokenizer_dir() { return test::data_dir() / "tokenizer"; }

/// The gpt-oss tokenizer, loaded once for the whole test file.
const Tokenizer& gpt_oss_tokenizer() {
  static const Tokenizer tokenizer = Tokenizer::from_file(tokenizer_dir() / "tokenizer.json");
  return tokenizer;
}

std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
  std::ifstream in(path);
  REQUIRE(in);
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  }
  return rows;
}

std::string ids_string(const std::vector<std::int32_t>& ids) {
  std::string s;
  for (const auto id : ids) {
    if (!s.empty()) s += ',';
    s += std::to_string(id);
  }
  return s;
}

/// Random text mixing ASCII words, digits, whitespace of every kind,
/// contractions, special-token text, accents, combining marks, CJK (also
/// astral), emoji with ZWJ, RTL scripts, controls and private-use
/// characters: always valid UTF-8.
std::string random_text(std::mt19937& rng, std::size_t pieces) {
  static const std::vector<std::string> fragments = {
      "the", " quick", "Brown", " FOX", "'s", "'LL", "'Ve", " 123", "4567", "0.5", " ", "  ", "\t", "\n",
      "\r\n", "\n\n\n", "   \n", "\u00a0", "\u2028", "\u0085", "\ufeff", "\u200b", "<|end|>", "<|start|>",
      "<|return|>", "<|", "|>", "é", "e\u0301", "ñ", "ß", "İ", "ﬁ", "中文", "日本語", "한국어", "𠀀𠀁", "😀",
      "👩\u200d💻", "🇺🇸", "مرحبا", "שלום", "हिन्दी", "ไทย", "\x01", "\x1b[0m", "\u0080", "\ue000", "{\"a\": [1, 2]}",
      "x = y + 1;", "://", "...", "—", "«»", "'", "\"", "#", "$", "%", "&&", "||", "/**/", "\\n"};
  std::string text;
  for (std::size_t i = 0; i < pieces; ++i) {
    if (rng() % 5 == 0) {  // a random code point from anywhere in Unicode (no surrogates)
      char32_t cp = static_cast<char32_t>(rng() % 0x110000);
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0x41;
      text::utf8::append(text, cp);
    } else {
      text += fragments[rng() % fragments.size()];
    }
  }
  return text;
}

/// o200k's pre-tokenizer pattern (the Split regex of gpt-oss's tokenizer.json).
constexpr const char* kO200kPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|)"
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|)"
    R"(\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string random_bytes(std::mt19937& rng, std::size_t length) {
  std::string bytes(length, '\0');
  for (auto& b : bytes) b = static_cast<char>(rng() & 0xFF);
  return bytes;
}

/// A small byte-level tokenizer.json: the 256 single bytes (ids 0..255),
/// then `extra` tokens (raw bytes) from id 256, the given merges (pairs of
/// raw byte strings), the o200k Split pattern and two special tokens.
nlohmann::json small_tokenizer_json(const std::vector<std::string>& extra,
                                    const std::vector<std::pair<std::string, std::string>>& merges,
                                    bool merges_as_strings, bool ignore_merges) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[text::byte_level::encode(std::string(1, static_cast<char>(b)))] = b;
  for (std::size_t i = 0; i < extra.size(); ++i) vocab[text::byte_level::encode(extra[i])] = 256 + i;
  nlohmann::json merge_list = nlohmann::json::array();
  for (const auto& [a, b] : merges) {
    const auto left = text::byte_level::encode(a), right = text::byte_level::encode(b);
    if (merges_as_strings) {
      merge_list.push_back(left + " " + right);
    } else {
      merge_list.push_back({left, right});
    }
  }
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 256 + extra.size()}, {"content", "<|end|>"}, {"special", true}},
        {{"id", 257 + extra.size()}, {"content", "<|user|>"}, {"special", false}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", kO200kPattern}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"}, {"ignore_merges", ignore_merges}, {"byte_fallback", false}, {"vocab", vocab},
        {"merges", merge_list}}}};
  return j;
}

Tokenizer small_tokenizer(const nlohmann::json& j) { return Tokenizer::from_json(j.dump(), "small.json"); }

}  // namespace

TEST_CASE("Every row of cases.jsonl encodes to its ids and decodes back", "[tokenizer]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  const auto rows = read_jsonl(tokenizer_dir() / "cases.jsonl");
  REQUIRE(rows.size() == 173);
  std::size_t ordinary_rows = 0;
  for (const auto& row : rows) {
    const std::string text = row.at("text").get<std::string>();
    const auto expected = row.at("ids").get<std::vector<std::int32_t>>();
    INFO("case " << row.at("id").get<std::string>() << " (" << row.at("category").get<std::string>()
                 << "): " << row.at("text").dump());
    const auto ids = tok.encode(text);
    CHECK(ids_string(ids) == ids_string(expected));
    CHECK(tok.decode(expected) == text);
    if (row.contains("ids_ordinary")) {
      ++ordinary_rows;
      const auto ordinary = row.at("ids_ordinary").get<std::vector<std::int32_t>>();
      const auto plain = tok.encode(text, SpecialTokens::plain);
      CHECK(ids_string(plain) == ids_string(ordinary));
      CHECK(tok.decode(plain) == text);
    }
  }
  CHECK(ordinary_rows >= 10);
}

TEST_CASE("Special tokens have the ids of special_tokens.json", "[tokenizer]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  std::ifstream in(tokenizer_dir() / "special_tokens.json");
  const auto specials = nlohmann::json::parse(in);
  for (const auto* group : {"named", "reserved_in_tokenizer_json"}) {
    for (const auto& [name, id] : specials.at(group).items()) {
      INFO(name);
      CHECK(tok.special_token_id(name) == id.get<std::int32_t>());
      CHECK(tok.token_to_id(name) == id.get<std::int32_t>());
      CHECK(tok.id_to_token(id.get<std::int32_t>()) == name);
      CHECK(tok.is_special(id.get<std::int32_t>()));
      CHECK(tok.decode(std::vector<std::int32_t>{id.get<std::int32_t>()}) == name);
    }
  }
  CHECK(tok.vocab_size() == 200019);
  CHECK(tok.pattern() == kO200kPattern);
  CHECK(tok.added_tokens().size() == 21);
  CHECK_FALSE(tok.is_special(13225));
  // Reserved ids past 200018 are not in tokenizer.json: their text is ordinary text.
  CHECK_THROWS_MATCHES(tok.special_token_id("<|reserved_200100|>"), RangeError, MessageHas({"<|reserved_200100|>"}));
  CHECK(tok.encode("<|reserved_200100|>").size() > 1);
}

TEST_CASE("Vocabulary entries convert between text, bytes and ids", "[tokenizer]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  CHECK(tok.token_to_id("Hello") == 13225);
  CHECK(tok.id_to_token(13225) == "Hello");
  CHECK(tok.token_to_id("\u0120world") == 2375);  // "Ġworld": the byte-level form of " world"
  CHECK(tok.id_to_token(2375) == "\u0120world");
  CHECK(tok.token_bytes(2375) == " world");
  CHECK(tok.token_to_id("no such token, surely") == std::nullopt);
  CHECK(tok.token_to_id("\xff") == std::nullopt);  // not byte-level text
  // Every id of the vocabulary maps to a token and back.
  for (std::int32_t id = 0; id < tok.vocab_size(); id += 97) {
    INFO("id " << id);
    CHECK(tok.token_to_id(tok.id_to_token(id)) == id);
  }
}

TEST_CASE("Decoding returns exact bytes and rejects ids with no token", "[tokenizer]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  // A multi-byte character split over two tokens: each alone is not UTF-8, together they are.
  const std::string emoji = "\xF0\x9F\x98\x80";
  const auto ids = tok.encode(emoji);
  std::string joined;
  for (const auto id : ids) joined += tok.decode(std::vector<std::int32_t>{id});
  CHECK(joined == emoji);
  CHECK(tok.decode(std::vector<std::int32_t>{}).empty());

  CHECK_THROWS_MATCHES(tok.decode(std::vector<std::int32_t>{13225, -1}), RangeError, MessageHas({"token id -1"}));
  CHECK_THROWS_MATCHES(tok.decode(std::vector<std::int32_t>{200019}), RangeError, MessageHas({"token id 200019", "200019)"}));
  CHECK_THROWS_MATCHES(tok.decode(std::vector<std::int32_t>{201087}), RangeError, MessageHas({"201087"}));
  CHECK_THROWS_AS(tok.id_to_token(-5), RangeError);
}

TEST_CASE("decode(encode(text)) == text for random Unicode text", "[tokenizer][property]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  std::mt19937 rng(20250805);
  for (int trial = 0; trial < 400; ++trial) {
    const std::string text = random_text(rng, 1 + rng() % 60);
    INFO("trial " << trial << ": " << nlohmann::json(text).dump());
    REQUIRE(text::utf8::is_valid(text));
    const auto ids = tok.encode(text);
    CHECK(tok.decode(ids) == text);
    const auto plain = tok.encode(text, SpecialTokens::plain);
    CHECK(tok.decode(plain) == text);
    CHECK(std::none_of(plain.begin(), plain.end(), [&](std::int32_t id) { return tok.is_special(id); }));
    // Encoding is a function of the text alone: pieces split at special tokens encode the same.
    CHECK(tok.encode(text) == ids);
  }
}

TEST_CASE("decode(encode(bytes)) == bytes for arbitrary bytes, valid UTF-8 or not", "[tokenizer][property]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  std::mt19937 rng(7);
  for (int trial = 0; trial < 400; ++trial) {
    std::string bytes = random_bytes(rng, rng() % 200);
    if (trial % 3 == 0) bytes = random_text(rng, 5) + bytes + random_text(rng, 5);  // invalid bytes amid text
    INFO("trial " << trial);
    CHECK(tok.decode(tok.encode(bytes)) == bytes);
    CHECK(tok.decode(tok.encode(bytes, SpecialTokens::plain)) == bytes);
  }
  // Lone continuation bytes, overlong forms, surrogates, truncated sequences.
  for (const std::string bad : {"\x80", "\xC0\xAF", "\xED\xA0\x80", "abc\xE2\x82", "\xF4\x90\x80\x80", "\xFF\xFE"}) {
    CHECK(tok.decode(tok.encode(bad)) == bad);
  }
}

TEST_CASE("Very long pre-tokens encode in reasonable time and round-trip", "[tokenizer]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  for (const std::string unit : {" ", "a", "\n", "7", "中", "ab", "😀"}) {
    std::string text;
    while (text.size() < 200'000) text += unit;
    INFO("runs of " << nlohmann::json(unit).dump());
    const auto ids = tok.encode(text);
    CHECK(tok.decode(ids) == text);
    CHECK(ids.size() < text.size());
  }
}

TEST_CASE("Merges load from pairs and from \"a b\" strings alike", "[tokenizer]") {
  const std::vector<std::string> extra = {"ab", "abc", "cd", "abcd", "  "};
  const std::vector<std::pair<std::string, std::string>> merges = {{"a", "b"}, {"c", "d"}, {"ab", "cd"}, {" ", " "}};
  const Tokenizer pairs = small_tokenizer(small_tokenizer_json(extra, merges, false, false));
  const Tokenizer strings = small_tokenizer(small_tokenizer_json(extra, merges, true, false));
  for (const std::string text : {"abcd", "abc", "xabcdab cd", "    ab", "<|end|>abcd<|user|>"}) {
    INFO(text);
    CHECK(pairs.encode(text) == strings.encode(text));
    CHECK(pairs.decode(pairs.encode(text)) == text);
  }
  // "abcd" merges a+b (rank 0), c+d (rank 1), then ab+cd (rank 2): one token.
  CHECK(pairs.encode("abcd") == std::vector<std::int32_t>{259});
  // "abc": a+b, then no merge makes abc, although it is in the vocabulary.
  CHECK(pairs.encode("abc") == std::vector<std::int32_t>{256, 'c'});
  // Added tokens: the special one only in recognize mode, the non-special one always.
  CHECK(pairs.encode("<|end|>") == std::vector<std::int32_t>{261});
  CHECK(pairs.encode("<|user|>", SpecialTokens::plain) == std::vector<std::int32_t>{262});
  CHECK(pairs.encode("<|end|>", SpecialTokens::plain).size() > 1);
  CHECK(pairs.vocab_size() == 263);
}

TEST_CASE("ignore_merges emits a pre-token found in the vocabulary directly", "[tokenizer]") {
  const std::vector<std::string> extra = {"ab", "abc"};
  const std::vector<std::pair<std::string, std::string>> merges = {{"a", "b"}};
  const Tokenizer direct = small_tokenizer(small_tokenizer_json(extra, merges, false, true));
  const Tokenizer merged = small_tokenizer(small_tokenizer_json(extra, merges, false, false));
  CHECK(direct.encode("abc") == std::vector<std::int32_t>{257});
  CHECK(merged.encode("abc") == std::vector<std::int32_t>{256, 'c'});
  CHECK(direct.encode("abcabc") == merged.encode("abcabc"));  // "abcabc" is not in the vocabulary
}

TEST_CASE("The pre-tokenizer's \\s rewrite keeps POSIX classes inside a class", "[tokenizer]") {
  const auto pieces = [](std::string_view pattern, std::string_view text) {
    std::vector<std::string> out;
    text::RegexSplitter(pattern, "test pattern").split(text, [&](std::string_view p) { out.emplace_back(p); });
    return out;
  };
  using Pieces = std::vector<std::string>;
  CHECK(pieces("[0-9\\s]", "1 2") == Pieces{"1", " ", "2"});
  CHECK(pieces("[[:digit:]\\s]", "1 2") == Pieces{"1", " ", "2"});
  // \s is Unicode White_Space: a no-break space joins the digits' run.
  CHECK(pieces("[[:digit:]\\s]+", "a\u00a01 2b") == Pieces{"a", "\u00a01 2", "b"});
  // Unmatched text between matches is a piece of its own.
  CHECK(pieces("[^[:alpha:]\\s]+", "ab 12 cd") == Pieces{"ab ", "12", " cd"});
}

TEST_CASE("Malformed tokenizer.json files are rejected naming the file and the fault", "[tokenizer][errors]") {
  const auto good = small_tokenizer_json({"ab"}, {{"a", "b"}}, false, false);
  const auto rejects = [](const nlohmann::json& j, std::initializer_list<std::string> fragments) {
    CHECK_THROWS_MATCHES(Tokenizer::from_json(j.dump(), "bad.json"), FormatError, MessageHas(fragments));
  };
  CHECK_NOTHROW(small_tokenizer(good));

  SECTION("not JSON") {
    CHECK_THROWS_MATCHES(Tokenizer::from_json("{\"model\": {", "broken.json"), FormatError,
                         MessageHas({"broken.json", "invalid JSON"}));
    CHECK_THROWS_MATCHES(Tokenizer::from_json("[1, 2]", "array.json"), FormatError,
                         MessageHas({"array.json", "not a JSON object"}));
  }
  SECTION("missing parts") {
    auto j = good;
    j.erase("model");
    rejects(j, {"bad.json", "\"model\""});
    j = good;
    j["model"].erase("vocab");
    rejects(j, {"bad.json", "model.vocab is missing"});
    j = good;
    j["model"].erase("merges");
    rejects(j, {"model.merges is missing"});
    j = good;
    j.erase("pre_tokenizer");
    rejects(j, {"pre_tokenizer is missing"});
  }
  SECTION("bad vocabulary") {
    auto j = good;
    j["model"]["vocab"]["xyz"] = "seven";
    rejects(j, {"model.vocab", "'xyz'", "not an integer"});
    for (const nlohmann::json& id : {nlohmann::json(nullptr), nlohmann::json(true), nlohmann::json(false)}) {
      j = good;
      j["model"]["vocab"]["xyz"] = id;
      rejects(j, {"model.vocab", "'xyz'", "not an integer"});
    }
    j = good;
    j["model"]["vocab"]["xyz"] = 3;  // id 3 is byte 3's
    rejects(j, {"id 3 is given to two tokens"});
    j = good;
    j["model"]["vocab"]["xyz"] = -4;
    rejects(j, {"'xyz' has id -4"});
    j = good;
    j["model"]["vocab"].erase(text::byte_level::encode("\n"));
    rejects(j, {"no token for the single byte 0x0a"});
    j = good;
    j["model"]["vocab"][" plain space"] = 300;  // a raw space is not byte-level text
    rejects(j, {"model.vocab", "' plain space'", "not byte-level text"});
  }
  SECTION("bad merges") {
    auto j = good;
    j["model"]["merges"].push_back({"a", "q", "z"});
    rejects(j, {"model.merges[1]", "more than 2 strings"});
    j = good;
    j["model"]["merges"].push_back("ab");
    rejects(j, {"model.merges[1]", "'ab'", "two tokens"});
    j = good;
    j["model"]["merges"].push_back({"ab", "ab"});
    rejects(j, {"model.merges[1]", "merged token 'abab' is not in model.vocab"});
    j = good;
    j["model"]["merges"].push_back(7);
    rejects(j, {"model.merges[1]", "not a string or a pair"});
  }
  SECTION("unsupported or invalid options") {
    auto j = good;
    j["model"]["type"] = "WordPiece";
    rejects(j, {"model.type is 'WordPiece'"});
    j = good;
    j["model"]["byte_fallback"] = true;
    rejects(j, {"byte_fallback"});
    j = good;
    j["normalizer"] = {{"type", "NFC"}};
    rejects(j, {"normalizer"});
    j = good;
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
    rejects(j, {"bad.json", "pattern does not compile"});
    j = good;
    j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
    rejects(j, {"behavior is 'Removed'"});
    j = good;
    j["added_tokens"][0]["lstrip"] = true;
    rejects(j, {"added_tokens[0]", "<|end|>", "lstrip"});
    j = good;
    j["added_tokens"][0].erase("id");
    rejects(j, {"added_tokens[0].id"});
  }
  SECTION("missing file") {
    CHECK_THROWS_MATCHES(Tokenizer::from_file(tokenizer_dir() / "no-such-tokenizer.json"), FormatError,
                         MessageHas({"no-such-tokenizer.json", "does not exist"}));
  }
}
