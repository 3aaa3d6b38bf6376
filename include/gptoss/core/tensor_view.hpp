// Non-owning, contiguous, row-major views of tensors (TensorView) and a small
// owning tensor (Tensor). Shapes are run-time values; the rank is part of the
// type. Views are what layers and kernels take: they wrap memory-mapped
// checkpoint bytes or caller-owned buffers without copying.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "gptoss/core/error.hpp"

namespace gptoss {

using index_t = std::int64_t;

/// "(2, 3, 4)": how shapes appear in error messages.
template <class Container>
std::string shape_string(const Container& shape) {
  std::ostringstream out;
  out << '(';
  bool first = true;
  for (auto extent : shape) {
    out << (first ? "" : ", ") << extent;
    first = false;
  }
  out << ')';
  return out.str();
}

/// A contiguous row-major view of Rank dimensions over elements of type T.
template <class T, std::size_t Rank>
class TensorView {
  static_assert(Rank >= 1, "a TensorView has at least one dimension");

 public:
  using element_type = T;
  using shape_type = std::array<index_t, Rank>;
  static constexpr std::size_t rank = Rank;

  constexpr TensorView() = default;
  constexpr TensorView(T* data, shape_type shape) : data_(data), shape_(shape) {}

  /// A const view of a mutable one.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  constexpr TensorView(const TensorView<U, Rank>& other)  // NOLINT(implicit)
      : data_(other.data()), shape_(other.shape()) {}

  constexpr T* data() const noexcept { return data_; }
  constexpr const shape_type& shape() const noexcept { return shape_; }
  constexpr index_t extent(std::size_t dim) const noexcept { return shape_[dim]; }
  constexpr index_t size() const noexcept {
    index_t n = 1;
    for (auto e : shape_) n *= e;
    return n;
  }
  constexpr bool empty() const noexcept { return size() == 0; }
  std::span<T> span() const noexcept { return {data_, static_cast<std::size_t>(size())}; }

  /// Element access by Rank indices (unchecked).
  template <class... I>
    requires(sizeof...(I) == Rank)
  constexpr T& operator()(I... indices) const noexcept {
    const std::array<index_t, Rank> idx{static_cast<index_t>(indices)...};
    index_t offset = 0;
    for (std::size_t d = 0; d < Rank; ++d) offset = offset * shape_[d] + idx[d];
    return data_[offset];
  }

  /// The sub-view at index i of the first dimension (unchecked).
  constexpr decltype(auto) operator[](index_t i) const noexcept {
    if constexpr (Rank == 1) {
      return (data_[i]);
    } else {
      std::array<index_t, Rank - 1> sub{};
      for (std::size_t d = 1; d < Rank; ++d) sub[d - 1] = shape_[d];
      return TensorView<T, Rank - 1>(data_ + i * (size() / shape_[0]), sub);
    }
  }

  /// Rows [begin, end) of the first dimension.
  constexpr TensorView slice(index_t begin, index_t end) const noexcept {
    shape_type sub = shape_;
    sub[0] = end - begin;
    const index_t row = shape_[0] ? size() / shape_[0] : 0;
    return TensorView(data_ + begin * row, sub);
  }

  /// The same elements seen with another shape of equal size.
  template <std::size_t NewRank>
  TensorView<T, NewRank> reshape(std::array<index_t, NewRank> shape) const {
    index_t n = 1;
    for (auto e : shape) n *= e;
    if (n != size()) {
      throw ShapeError("cannot reshape " + shape_string(shape_) + " to " + shape_string(shape));
    }
    return TensorView<T, NewRank>(data_, shape);
  }

 private:
  T* data_ = nullptr;
  shape_type shape_{};
};

template <class T>
using VectorView = TensorView<T, 1>;
template <class T>
using MatrixView = TensorView<T, 2>;

/// Throws ShapeError naming `what` unless `view` has exactly `expected` shape.
template <class T, std::size_t Rank>
void require_shape(const TensorView<T, Rank>& view, const std::array<index_t, Rank>& expected,
                   const std::string& what) {
  if (view.shape() != expected) {
    throw ShapeError(what + ": expected shape " + shape_string(expected) + ", got " +
                     shape_string(view.shape()));
  }
}

/// An owning, zero-initialised, contiguous row-major tensor.
template <class T, std::size_t Rank>
class Tensor {
 public:
  using shape_type = std::array<index_t, Rank>;

  Tensor() = default;
  explicit Tensor(shape_type shape) : shape_(shape), data_(count(shape)) {}

  T* data() noexcept { return data_.data(); }
  const T* data() const noexcept { return data_.data(); }
  const shape_type& shape() const noexcept { return shape_; }
  index_t extent(std::size_t dim) const noexcept { return shape_[dim]; }
  index_t size() const noexcept { return static_cast<index_t>(data_.size()); }
  std::vector<T>& storage() noexcept { return data_; }
  const std::vector<T>& storage() const noexcept { return data_; }

  TensorView<T, Rank> view() noexcept { return {data_.data(), shape_}; }
  TensorView<const T, Rank> view() const noexcept { return {data_.data(), shape_}; }
  operator TensorView<T, Rank>() noexcept { return view(); }  // NOLINT(implicit)
  operator TensorView<const T, Rank>() const noexcept { return view(); }  // NOLINT(implicit)

  template <class... I>
  T& operator()(I... indices) noexcept { return view()(indices...); }
  template <class... I>
  const T& operator()(I... indices) const noexcept { return view()(indices...); }

 private:
  static std::size_t count(const shape_type& shape) {
    index_t n = 1;
    for (auto e : shape) {
      if (e < 0) throw ShapeError("negative extent in shape " + shape_string(shape));
      if (__builtin_mul_overflow(n, e, &n) || n > std::numeric_limits<index_t>::max() / index_t{sizeof(T)}) {
        throw ShapeError("shape " + shape_string(shape) + " holds more elements than memory can");
      }
    }
    return static_cast<std::size_t>(n);
  }

  shape_type shape_{};
  std::vector<T> data_;
};

}  // namespace gptoss
