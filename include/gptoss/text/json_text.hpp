// JSON text as the reference writers write it: python_json is Python's
// json.dumps(value, ensure_ascii=False) (", " and ": " separators, floats
// as repr writes them), the `tojson` of chat templates; rust_json is Rust
// serde_json's compact form (floats in ryu's notation), what openai-harmony
// writes. Both refuse values nested deeper than kMaxJsonDepth.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "gptoss/core/error.hpp"

namespace gptoss::text {

using ordered_json = nlohmann::ordered_json;

/// The deepest nesting python_json and the TypeScript writers accept: they
/// recurse once per level, so a deeper value is refused before it can use
/// up the stack.
inline constexpr int kMaxJsonDepth = 256;

/// Throws FormatError naming `what` if `value` nests deeper than
/// kMaxJsonDepth (checked without recursion).
inline void check_json_depth(const ordered_json& value, const std::string& what) {
  std::vector<std::pair<const ordered_json*, int>> pending{{&value, 1}};
  while (!pending.empty()) {
    const auto [v, depth] = pending.back();
    pending.pop_back();
    if (!v->is_structured()) continue;
    if (depth > kMaxJsonDepth) {
      throw FormatError(what + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    for (const ordered_json& item : *v) pending.emplace_back(&item, depth + 1);
  }
}

namespace detail {

/// A finite, nonzero double's shortest round-trip decimal digits: |value| =
/// 0.digits x 10^point (1.5 is {"15", 1}; 0.001 is {"1", -2}).
struct ShortestDecimal {
  bool negative = false;
  std::string digits;
  int point = 0;
};

inline ShortestDecimal shortest_decimal(double value) {
  if (!std::isfinite(value) || value == 0.0) throw RangeError("shortest_decimal: needs a finite, nonzero value");
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  const std::string_view text(buffer, static_cast<std::size_t>(result.ptr - buffer));  // "-d.ddde+XX"
  ShortestDecimal out;
  std::size_t i = 0;
  if (text[i] == '-') {
    out.negative = true;
    ++i;
  }
  const std::size_t e = text.find('e');
  for (; i < e; ++i) {
    if (text[i] != '.') out.digits += text[i];
  }
  int exponent = 0;
  std::from_chars(text.data() + e + (text[e + 1] == '+' ? 2 : 1), text.data() + text.size(), exponent);
  out.point = exponent + 1;
  return out;
}

/// d with its decimal point in place: "0.00ddd", "ddd00.0" or "dd.ddd"
/// (with its sign).
inline std::string positional(const ShortestDecimal& d) {
  const int n = static_cast<int>(d.digits.size());
  std::string out = d.negative ? "-" : "";
  if (d.point <= 0) return out + "0." + std::string(static_cast<std::size_t>(-d.point), '0') + d.digits;
  if (d.point >= n) return out + d.digits + std::string(static_cast<std::size_t>(d.point - n), '0') + ".0";
  const auto point = static_cast<std::size_t>(d.point);
  return out + d.digits.substr(0, point) + "." + d.digits.substr(point);
}

/// d's digits as "d.ddd" (or "d"), with its sign: what precedes the
/// exponent of a scientific form, whose exponent is d.point - 1.
inline std::string scientific_digits(const ShortestDecimal& d) {
  std::string out = d.negative ? "-" : "";
  out += d.digits.substr(0, 1);
  if (d.digits.size() > 1) out += "." + d.digits.substr(1);
  return out;
}

/// A float as Python's repr (and so json.dumps) writes it: positional for
/// exponents -4..15 ("0.0001", "1000000000000000.0"), otherwise "1e-05",
/// "1.5e+16".
inline std::string python_float(double value) {
  if (std::isnan(value)) return "NaN";  // json.dumps' words for what JSON cannot hold
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  if (value == 0.0) return std::signbit(value) ? "-0.0" : "0.0";
  const ShortestDecimal d = shortest_decimal(value);
  const int exponent = d.point - 1;
  if (exponent >= -4 && exponent < 16) return positional(d);
  const int magnitude = exponent < 0 ? -exponent : exponent;
  return scientific_digits(d) + (exponent < 0 ? "e-" : "e+") + (magnitude < 10 ? "0" : "") + std::to_string(magnitude);
}

/// A float as Rust's serde_json writes it (ryu): positional while the
/// decimal point falls within -5 < point <= 16 ("0.00001",
/// "1000000000000000.0"), otherwise "1e-6", "1.5e16".
inline std::string rust_float(double value) {
  if (!std::isfinite(value)) return "null";  // as serde_json writes NaN and infinities
  if (value == 0.0) return std::signbit(value) ? "-0.0" : "0.0";
  const ShortestDecimal d = shortest_decimal(value);
  if (d.point > -5 && d.point <= 16) return positional(d);
  return scientific_digits(d) + "e" + std::to_string(d.point - 1);
}

/// rust_json without the depth check: nlohmann's compact form except for
/// floats.
inline std::string rust_json_nested(const ordered_json& value) {
  switch (value.type()) {
    case ordered_json::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, item] : value.items()) {
        if (!first) out += ',';
        first = false;
        out += ordered_json(key).dump() + ":" + rust_json_nested(item);
      }
      return out + "}";
    }
    case ordered_json::value_t::array: {
      std::string out = "[";
      for (std::size_t i = 0; i < value.size(); ++i) {
        if (i) out += ',';
        out += rust_json_nested(value[i]);
      }
      return out + "]";
    }
    case ordered_json::value_t::number_float:
      return rust_float(value.get<double>());
    default:
      return value.dump();
  }
}

/// python_json without the depth check (it recurses once per level).
inline std::string python_json_nested(const ordered_json& value) {
  std::string out;
  switch (value.type()) {
    case ordered_json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, item] : value.items()) {
        if (!first) out += ", ";
        first = false;
        out += python_json_nested(ordered_json(key));
        out += ": ";
        out += python_json_nested(item);
      }
      out += '}';
      return out;
    }
    case ordered_json::value_t::array: {
      out += '[';
      for (std::size_t i = 0; i < value.size(); ++i) {
        if (i) out += ", ";
        out += python_json_nested(value[i]);
      }
      out += ']';
      return out;
    }
    case ordered_json::value_t::string: {
      out += '"';
      for (const char c : value.get_ref<const std::string&>()) {
        switch (c) {
          case '"': out += "\\\""; break;
          case '\\': out += "\\\\"; break;
          case '\n': out += "\\n"; break;
          case '\r': out += "\\r"; break;
          case '\t': out += "\\t"; break;
          case '\b': out += "\\b"; break;
          case '\f': out += "\\f"; break;
          default:
            if (static_cast<unsigned char>(c) < 0x20) {
              char buffer[8];
              std::snprintf(buffer, sizeof(buffer), "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
              out += buffer;
            } else {
              out += c;
            }
        }
      }
      out += '"';
      return out;
    }
    case ordered_json::value_t::number_float:
      return python_float(value.get<double>());
    default:
      return value.dump();  // integers, booleans, null: the same in both
  }
}

}  // namespace detail

/// JSON text as Python's json.dumps(value, ensure_ascii=False) writes it;
/// a value nested deeper than kMaxJsonDepth is a FormatError.
inline std::string python_json(const ordered_json& value) {
  check_json_depth(value, "python_json");
  return detail::python_json_nested(value);
}

/// Compact JSON as Rust's serde_json writes it; a value nested deeper than
/// kMaxJsonDepth is a FormatError.
inline std::string rust_json(const ordered_json& value) {
  check_json_depth(value, "rust_json");
  return detail::rust_json_nested(value);
}

}  // namespace gptoss::text
