// UTF-8 for the text layer: appending a code point, reading one
// back, counting characters, and finding how much of a byte stream is
// complete, so that streamed token text is never cut inside a character.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace gptoss::text::utf8 {

/// Appends the UTF-8 encoding of code point `cp` (<= 0x10FFFF) to `out`.
inline void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

/// What must follow a lead byte: the sequence's length and the allowed
/// range of its second byte (length 0: the byte starts no sequence).
struct LeadByte {
  std::size_t length = 0;
  unsigned char lo = 0x80, hi = 0xBF;
};

constexpr LeadByte lead_byte(unsigned char b0) {
  if (b0 < 0x80) return {1};
  if (b0 >= 0xC2 && b0 <= 0xDF) return {2};
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    return {3, static_cast<unsigned char>(b0 == 0xE0 ? 0xA0 : 0x80), static_cast<unsigned char>(b0 == 0xED ? 0x9F : 0xBF)};
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    return {4, static_cast<unsigned char>(b0 == 0xF0 ? 0x90 : 0x80), static_cast<unsigned char>(b0 == 0xF4 ? 0x8F : 0xBF)};
  }
  return {};
}

/// Number of bytes from s[i], a lead byte, that begin a well-formed
/// sequence (at most its length).
inline std::size_t valid_prefix(std::string_view s, std::size_t i, const LeadByte& lead) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  std::size_t n = 1;
  if (lead.length > 1 && i + 1 < s.size() && byte(i + 1) >= lead.lo && byte(i + 1) <= lead.hi) {
    ++n;
    while (n < lead.length && i + n < s.size() && (byte(i + n) & 0xC0) == 0x80) ++n;
  }
  return n;
}

/// Length of the well-formed UTF-8 sequence starting at s[i], or 0 when the
/// bytes there are not one (bad lead byte, bad continuation, overlong form,
/// surrogate, beyond U+10FFFF, or cut short by the end of s).
inline std::size_t sequence_length(std::string_view s, std::size_t i) {
  const LeadByte lead = lead_byte(static_cast<unsigned char>(s[i]));
  if (lead.length == 0) return 0;
  return valid_prefix(s, i, lead) == lead.length ? lead.length : 0;
}

/// Length of the malformed bytes at s[i] (where sequence_length is 0) that
/// one U+FFFD replaces: the longest prefix of a well-formed sequence found
/// there, or one byte (Unicode's "maximal subpart", as Rust's
/// from_utf8_lossy and Python's errors="replace" count).
inline std::size_t maximal_subpart(std::string_view s, std::size_t i) {
  const LeadByte lead = lead_byte(static_cast<unsigned char>(s[i]));
  return lead.length == 0 ? 1 : valid_prefix(s, i, lead);
}

/// Number of characters in s, as Python's len() counts them: each
/// well-formed sequence is one, and so is each byte of a malformed one.
inline std::size_t code_points(std::string_view s) {
  std::size_t count = 0;
  for (std::size_t i = 0; i < s.size(); ++count) {
    const std::size_t n = sequence_length(s, i);
    i += n == 0 ? 1 : n;
  }
  return count;
}

/// Decodes the well-formed sequence at s[i] (see sequence_length), setting
/// `length`; returns U+FFFD with length 1 for a malformed byte.
inline char32_t decode(std::string_view s, std::size_t i, std::size_t& length) {
  length = sequence_length(s, i);
  if (length == 0) {
    length = 1;
    return 0xFFFD;
  }
  const auto byte = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k])); };
  switch (length) {
    case 1: return byte(0);
    case 2: return ((byte(0) & 0x1F) << 6) | (byte(1) & 0x3F);
    case 3: return ((byte(0) & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F);
    default: return ((byte(0) & 0x07) << 18) | ((byte(1) & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) | (byte(3) & 0x3F);
  }
}

/// True when every byte of s belongs to a well-formed UTF-8 sequence.
inline bool is_valid(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

/// Number of leading bytes of s that can be shown now: everything except a
/// trailing, still incomplete (but so far valid) multi-byte sequence.
/// Malformed bytes count as complete; they will never become valid.
inline std::size_t complete_prefix(std::string_view s) {
  const std::size_t size = s.size();
  // An incomplete sequence is at most 3 bytes long: look back that far for its lead byte.
  for (std::size_t back = 1; back <= 3 && back <= size; ++back) {
    const auto b = static_cast<unsigned char>(s[size - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking
    const LeadByte lead = lead_byte(b);
    // Pending: a multi-byte sequence whose bytes so far are all valid and too few.
    const bool pending = lead.length > back && valid_prefix(s, size - back, lead) == back;
    return pending ? size - back : size;
  }
  return size;
}

/// s with each malformed part replaced by one U+FFFD (maximal_subpart).
inline std::string lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = sequence_length(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      i += maximal_subpart(s, i);
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

/// Turns a byte stream (token after token) into text in whole characters:
/// push() returns what can be shown now, holding back a character whose
/// bytes have not all arrived; flush() returns the rest.
class StreamDecoder {
 public:
  std::string push(std::string_view bytes) {
    pending_ += bytes;
    const std::size_t ready = complete_prefix(pending_);
    std::string out = pending_.substr(0, ready);
    pending_.erase(0, ready);
    return out;
  }
  std::string flush() { return std::exchange(pending_, std::string()); }

 private:
  std::string pending_;
};

}  // namespace gptoss::text::utf8
