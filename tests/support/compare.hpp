// Comparison helpers with tolerances that scale with magnitude
// (|a - g| <= abs + rel * scale), reporting the worst element on failure.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace gptoss::test {

/// Largest |x| of a sequence.
template <class Range>
double max_abs(const Range& values) {
  double m = 0.0;
  for (auto v : values) m = std::max(m, std::fabs(static_cast<double>(v)));
  return m;
}

/// Outcome of an element-wise comparison.
struct Comparison {
  double max_error = 0.0;
  std::size_t worst = 0;
  std::size_t count = 0;
  bool sizes_match = true;
  bool finite = true;
  double bound = 0.0;
  bool ok() const { return sizes_match && finite && max_error <= bound; }
  std::string describe() const {
    std::ostringstream s;
    if (!sizes_match) return "sizes differ";
    s << "max |actual - expected| = " << max_error << " at element " << worst << " of " << count
      << " (bound " << bound << (finite ? "" : ", non-finite value") << ")";
    return s.str();
  }
};

/// max |a - e| against a single bound for the whole tensor:
/// bound = abs_tol + rel_tol * max(1, max|e|) (the golden README's rule).
template <class A, class E>
Comparison compare_to_max(const A& actual, const E& expected, double abs_tol, double rel_tol) {
  Comparison c;
  c.count = expected.size();
  c.sizes_match = actual.size() == expected.size();
  if (!c.sizes_match) return c;
  c.bound = abs_tol + rel_tol * std::max(1.0, max_abs(expected));
  for (std::size_t i = 0; i < c.count; ++i) {
    const double a = actual[i], e = expected[i];
    if (!std::isfinite(a) && a != e) c.finite = false;
    const double err = std::fabs(a - e);
    if (err > c.max_error || std::isnan(err)) {
      c.max_error = std::isnan(err) ? INFINITY : err;
      c.worst = i;
    }
  }
  return c;
}

/// Element-wise |a - e| <= abs_tol + rel_tol |e| (llm.c's rule); reports the
/// element with the largest excess.
template <class A, class E>
Comparison compare_elementwise(const A& actual, const E& expected, double abs_tol, double rel_tol) {
  Comparison c;
  c.count = expected.size();
  c.sizes_match = actual.size() == expected.size();
  if (!c.sizes_match) return c;
  double worst_excess = -INFINITY;
  for (std::size_t i = 0; i < c.count; ++i) {
    const double a = actual[i], e = expected[i];
    const double bound = abs_tol + rel_tol * std::fabs(e);
    const double err = std::fabs(a - e);
    if (std::isnan(err)) c.finite = false;
    if (err - bound > worst_excess) {
      worst_excess = err - bound;
      c.worst = i;
      c.max_error = err;
      c.bound = bound;
    }
  }
  return c;
}

}  // namespace gptoss::test

/// REQUIRE a Comparison, printing its description on failure.
#define GPTOSS_REQUIRE_CLOSE(comparison)          \
  do {                                            \
    const auto gptoss_cmp_ = (comparison);        \
    INFO(gptoss_cmp_.describe());                 \
    REQUIRE(gptoss_cmp_.ok());                    \
  } while (0)
