// GPT-2's byte-level alphabet: every byte 0..255 is written as one printable
// code point in tokenizer.json ("Ġ" for a space, "Ċ" for a newline), so that
// vocabulary entries and merges are text. These tables convert both ways.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "gptoss/text/utf8.hpp"

namespace gptoss::text::byte_level {

/// Printable bytes (33..126, 161..172, 174..255) stand for themselves; the
/// other 68 bytes map, in order, to U+0100, U+0101, ...
constexpr std::array<char32_t, 256> make_byte_to_char() {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
  }
  return table;
}

inline constexpr std::array<char32_t, 256> kByteToChar = make_byte_to_char();

/// The inverse table: code points 0..323 -> byte, -1 where none.
constexpr std::array<std::int16_t, 256 + 68> make_char_to_byte() {
  std::array<std::int16_t, 256 + 68> table{};
  for (auto& v : table) v = -1;
  for (int b = 0; b < 256; ++b) table[kByteToChar[static_cast<std::size_t>(b)]] = static_cast<std::int16_t>(b);
  return table;
}

inline constexpr std::array<std::int16_t, 256 + 68> kCharToByte = make_char_to_byte();

/// The byte a code point stands for, or -1 when it is not in the alphabet.
constexpr int char_to_byte(char32_t cp) { return cp < kCharToByte.size() ? kCharToByte[cp] : -1; }

/// Raw bytes -> their byte-level text (as stored in tokenizer.json).
inline std::string encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) utf8::append(out, kByteToChar[b]);
  return out;
}

/// Appends the raw bytes of byte-level `text` to `out`; false (with `out`
/// unchanged) when it holds a character outside the alphabet or is not
/// valid UTF-8.
inline bool decode_append(std::string_view text, std::string& out) {
  const std::size_t start = out.size();
  for (std::size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    int b = -1;
    if (lead < 0x80) {  // printable ASCII stands for itself
      b = char_to_byte(lead);
      i += 1;
    } else if (utf8::sequence_length(text, i) == 2) {  // every other alphabet character takes two bytes
      std::size_t length = 0;
      b = char_to_byte(utf8::decode(text, i, length));
      i += 2;
    }
    if (b < 0) {
      out.resize(start);
      return false;
    }
    out.push_back(static_cast<char>(b));
  }
  return true;
}

/// Byte-level text -> raw bytes; nullopt when it holds a character outside
/// the alphabet or is not valid UTF-8.
inline std::optional<std::string> decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  if (!decode_append(text, out)) return std::nullopt;
  return out;
}

}  // namespace gptoss::text::byte_level
