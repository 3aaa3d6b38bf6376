// The regex pre-tokenizer: splits text into the pieces BPE sees, with
// tokenizer.json's Split pattern and behaviour "Isolated" (every match is a
// piece, and so is every stretch of text between matches).
//
// The pattern needs Unicode properties (\p{L}, \p{N}, \p{M}), a negative
// lookahead and case-insensitive groups, so it runs on PCRE2 (8-bit code
// units, UTF + UCP, JIT-compiled). Users of this header link libpcre2-8
// (pkg-config libpcre2-8).
//
// Two details keep the split identical to the reference encoders:
//  * \s and \S mean Unicode White_Space (as in Rust's regex and tiktoken),
//    not PCRE2's UCP \s (separators Z plus \t\n\v\f\r), which lacks
//    U+0085 (NEL); the pattern is rewritten to spell the class out.
//  * Input need not be valid UTF-8 (PCRE2_MATCH_INVALID_UTF): malformed
//    bytes never match and so become pieces of their own, which BPE encodes
//    byte by byte, keeping decode(encode(bytes)) == bytes.
#pragma once

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "gptoss/core/error.hpp"

namespace gptoss::text {

namespace detail {

/// Unicode White_Space, as ranges for a character class.
inline constexpr std::string_view kWhiteSpaceRanges =
    "\\x{9}-\\x{d}\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";

/// Rewrites \s and \S to explicit White_Space classes (outside and inside
/// character classes, which may hold POSIX classes such as [:digit:]). \S
/// inside a class has no range form; it is left to PCRE2 (the o200k pattern
/// has none).
inline std::string spell_out_whitespace(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() * 2);
  bool in_class = false;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[i + 1];
      if (next == 's') {
        if (in_class) {
          out += kWhiteSpaceRanges;
        } else {
          out += '[';
          out += kWhiteSpaceRanges;
          out += ']';
        }
      } else if (next == 'S' && !in_class) {
        out += "[^";
        out += kWhiteSpaceRanges;
        out += ']';
      } else {
        out += c;
        out += next;
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == '[' && in_class && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      // A POSIX class such as [:digit:] inside a class: its ']' does not close the class.
      const std::size_t end = pattern.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out += pattern.substr(i, end + 2 - i);
        i = end + 1;
        continue;
      }
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

struct Pcre2CodeFree {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct Pcre2MatchDataFree {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
struct Pcre2MatchContextFree {
  void operator()(pcre2_match_context* context) const { pcre2_match_context_free(context); }
};

}  // namespace detail

/// A compiled Split pattern. Immutable after construction and safe to use
/// from several threads at once.
class RegexSplitter {
 public:
  RegexSplitter() = default;

  /// Compiles `pattern`; a pattern PCRE2 rejects is a FormatError naming
  /// `origin` (e.g. the tokenizer file), the offset and PCRE2's reason.
  RegexSplitter(std::string_view pattern, const std::string& origin) : pattern_(pattern), origin_(origin) {
    const std::string rewritten = detail::spell_out_whitespace(pattern);
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error_code,
                                     &error_offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof(message));
      throw FormatError(origin + ": the pre-tokenizer pattern does not compile (offset " +
                        std::to_string(error_offset) + "): " + reinterpret_cast<const char*>(message));
    }
    code_.reset(code);
    jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    // The default limits (10M backtracking steps) stop a linear scan of a
    // few megabytes of whitespace; the pattern never needs more than a
    // constant times the text length, so lift them.
    context_.reset(pcre2_match_context_create(nullptr));
    if (!context_) throw Error("pre-tokenizer: out of memory creating a PCRE2 match context");
    pcre2_set_match_limit(context_.get(), UINT32_MAX);
    pcre2_set_depth_limit(context_.get(), UINT32_MAX);
    pcre2_set_heap_limit(context_.get(), UINT32_MAX);
  }

  const std::string& pattern() const noexcept { return pattern_; }
  bool jit_compiled() const noexcept { return jit_; }

  /// Calls on_piece(std::string_view) for each piece of `text`, in order;
  /// the pieces concatenate to `text`. A match PCRE2 gives up on (its
  /// backtracking limit) is an Error naming the pattern's origin and the byte.
  template <class OnPiece>
  void split(std::string_view text, OnPiece&& on_piece) const {
    if (text.empty()) return;
    if (!code_) {
      on_piece(text);
      return;
    }
    const std::unique_ptr<pcre2_match_data, detail::Pcre2MatchDataFree> match(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr));
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t done = 0;  // text[0, done) has been emitted
    std::size_t start = 0;
    while (start < text.size()) {
      int rc = jit_ ? pcre2_jit_match(code_.get(), subject, text.size(), start, 0, match.get(), context_.get())
                    : PCRE2_ERROR_JIT_STACKLIMIT;
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {  // no JIT, or its stack is too small: interpret
        rc = pcre2_match(code_.get(), subject, text.size(), start, 0, match.get(), context_.get());
      }
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, sizeof(message));
        throw Error(origin_ + ": the pre-tokenizer pattern failed to match at byte " + std::to_string(start) +
                    " of the text: " + reinterpret_cast<const char*>(message));
      }
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
      const std::size_t begin = ovector[0], end = ovector[1];
      if (end == begin) {  // an empty match: step over one code unit
        start = begin + 1;
        continue;
      }
      if (begin > done) on_piece(text.substr(done, begin - done));
      on_piece(text.substr(begin, end - begin));
      done = start = end;
    }
    if (done < text.size()) on_piece(text.substr(done));
  }

 private:
  std::string pattern_;
  std::string origin_;  // where the pattern came from, for error messages
  std::unique_ptr<pcre2_code, detail::Pcre2CodeFree> code_;
  std::unique_ptr<pcre2_match_context, detail::Pcre2MatchContextFree> context_;
  bool jit_ = false;
};

}  // namespace gptoss::text
