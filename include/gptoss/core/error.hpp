// Exception types thrown by gptoss. Every error names what is at fault
// (file, tensor, shape or value) so that bad input is diagnosed, never
// silently accepted.
#pragma once

#include <stdexcept>
#include <string>

namespace gptoss {

/// Base of every exception the library throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A tensor or argument has the wrong shape for the operation.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A file (safetensors, config.json) is malformed, truncated or inconsistent.
class FormatError : public Error {
 public:
  using Error::Error;
};

/// A configuration value is invalid (non-divisible heads, bad YaRN bounds...).
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// A run-time value is outside its valid range (token id, position, NaN input).
class RangeError : public Error {
 public:
  using Error::Error;
};

}  // namespace gptoss
