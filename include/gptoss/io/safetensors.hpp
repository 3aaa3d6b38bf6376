// Reading and writing safetensors files.
//
// Format: an 8-byte little-endian header length N, N bytes of JSON
// ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}),
// then the raw little-endian tensor data. The reader memory-maps the file,
// validates the whole header up front (dtypes, shapes, byte sizes, bounds,
// overlaps) and then hands out zero-copy TensorViews. Every error is a
// FormatError whose message names the file and, where there is one, the tensor.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gptoss/core/dtype.hpp"
#include "gptoss/core/error.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/io/mapped_file.hpp"

namespace gptoss::io {

/// Where one tensor lives in a safetensors file.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<index_t> shape;
  std::size_t offset = 0;  // from the start of the data section
  std::size_t nbytes = 0;

  index_t numel() const {
    index_t n = 1;
    for (auto e : shape) n *= e;
    return n;
  }
};

/// Largest header the reader accepts (the real gpt-oss shards have < 100 KiB).
inline constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;

/// A validated, memory-mapped safetensors file.
class SafetensorsFile {
 public:
  /// Opens and validates `path`; throws FormatError on any inconsistency.
  explicit SafetensorsFile(std::filesystem::path path) : file_(std::move(path)) { parse(); }

  /// Parses bytes already in memory (not copied: they must outlive the
  /// object); `name` stands for the path in error messages.
  static SafetensorsFile from_bytes(std::span<const std::byte> bytes, std::filesystem::path name) {
    return SafetensorsFile(MappedFile::borrow(bytes, std::move(name)));
  }

  const std::filesystem::path& path() const noexcept { return file_.path(); }
  /// Tensors sorted by name.
  const std::vector<TensorInfo>& tensors() const noexcept { return tensors_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

  bool contains(std::string_view name) const noexcept { return find(name) != nullptr; }

  /// The tensor's record; throws FormatError naming the file when absent.
  const TensorInfo& info(std::string_view name) const {
    const TensorInfo* t = find(name);
    if (t == nullptr) throw FormatError(where() + ": no tensor named '" + std::string(name) + "'");
    return *t;
  }

  /// The tensor's raw bytes (zero-copy).
  std::span<const std::byte> bytes(std::string_view name) const {
    const TensorInfo& t = info(name);
    return {data_begin_ + t.offset, t.nbytes};
  }

  /// A zero-copy view with dtype and rank checked against T and Rank.
  template <class T, std::size_t Rank>
  TensorView<const T, Rank> view(std::string_view name) const {
    const TensorInfo& t = info(name);
    check_dtype<T>(t);
    if (t.shape.size() != Rank) {
      throw FormatError(where(t) + ": expected rank " + std::to_string(Rank) + ", got shape " +
                        shape_string(t.shape));
    }
    const std::byte* p = data_begin_ + t.offset;
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) != 0) {
      throw FormatError(where(t) + ": data is not aligned to " + std::to_string(alignof(T)) +
                        " bytes; use read() to copy it instead");
    }
    std::array<index_t, Rank> shape{};
    std::copy(t.shape.begin(), t.shape.end(), shape.begin());
    return TensorView<const T, Rank>(reinterpret_cast<const T*>(p), shape);
  }

  /// As view(), and the shape must equal `expected`.
  template <class T, std::size_t Rank>
  TensorView<const T, Rank> view(std::string_view name,
                                 const std::array<index_t, Rank>& expected) const {
    auto v = view<T, Rank>(name);
    if (v.shape() != expected) {
      throw FormatError(where(info(name)) + ": expected shape " + shape_string(expected) +
                        ", got " + shape_string(v.shape()));
    }
    return v;
  }

  /// A copy of the elements (no alignment requirement); dtype must be T's.
  template <class T>
  std::vector<T> read(std::string_view name) const {
    const TensorInfo& t = info(name);
    check_dtype<T>(t);
    std::vector<T> out(static_cast<std::size_t>(t.numel()));
    if (t.nbytes) std::memcpy(out.data(), data_begin_ + t.offset, t.nbytes);
    return out;
  }

  /// A float copy of a floating-point tensor (F64, F32, F16 or BF16).
  std::vector<float> read_as_float(std::string_view name) const {
    const TensorInfo& t = info(name);
    switch (t.dtype) {
      case DType::F32: return read<float>(name);
      case DType::F64: return convert<double>(name);
      case DType::BF16: return convert<bf16>(name);
      case DType::F16: return convert<f16>(name);
      default:
        throw FormatError(where(t) + ": dtype " + std::string(dtype_name(t.dtype)) +
                          " is not a floating-point type");
    }
  }

  /// "file 'path'" or "file 'path', tensor 'name'": the prefix of error messages.
  std::string where() const { return "safetensors file '" + path().string() + "'"; }
  std::string where(const TensorInfo& t) const { return where() + ", tensor '" + t.name + "'"; }

 private:
  explicit SafetensorsFile(MappedFile file) : file_(std::move(file)) { parse(); }

  template <class T>
  void check_dtype(const TensorInfo& t) const {
    if (t.dtype != dtype_of_v<T>) {
      throw FormatError(where(t) + ": expected dtype " + std::string(dtype_name(dtype_of_v<T>)) +
                        ", got " + std::string(dtype_name(t.dtype)));
    }
  }

  template <class Src>
  std::vector<float> convert(std::string_view name) const {
    const std::vector<Src> src = read<Src>(name);
    std::vector<float> out(src.size());
    for (std::size_t i = 0; i < src.size(); ++i) {
      if constexpr (std::is_same_v<Src, double>) {
        out[i] = static_cast<float>(src[i]);
      } else {
        out[i] = src[i].to_float();
      }
    }
    return out;
  }

  const TensorInfo* find(std::string_view name) const noexcept {
    auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                               [](const TensorInfo& t, std::string_view n) { return t.name < n; });
    return (it != tensors_.end() && it->name == name) ? &*it : nullptr;
  }

  [[noreturn]] void bad(const std::string& what) const { throw FormatError(where() + ": " + what); }

  static std::uint64_t json_index(const nlohmann::json& j, const std::string& ctx,
                                  const SafetensorsFile& self) {
    // Check unsigned first: is_number_integer() is also true for unsigned
    // values, and reading one above 2^63 as int64 would make it "negative".
    if (j.is_number_unsigned()) return j.get<std::uint64_t>();
    if (j.is_number_integer() && j.get<std::int64_t>() >= 0) {
      return static_cast<std::uint64_t>(j.get<std::int64_t>());
    }
    self.bad(ctx + " must be a non-negative integer, got " + j.dump());
  }

  void parse() {
    const std::size_t file_size = file_.size();
    if (file_size < 8) {
      bad("truncated: " + std::to_string(file_size) +
          " bytes, fewer than the 8-byte header length");
    }
    std::uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) {
      header_len = (header_len << 8) | static_cast<std::uint8_t>(file_.data()[i]);
    }
    if (header_len > kMaxHeaderBytes) {
      bad("header length " + std::to_string(header_len) + " exceeds the " +
          std::to_string(kMaxHeaderBytes) + "-byte limit");
    }
    if (header_len > file_size - 8) {
      bad("header length " + std::to_string(header_len) + " runs past the end of the file (" +
          std::to_string(file_size) + " bytes)");
    }
    const char* text = reinterpret_cast<const char*>(file_.data() + 8);
    nlohmann::json header;
    // JSON keeps the last of two equal keys; a header naming a tensor twice
    // would lose one silently, so top-level keys are collected as they come.
    std::set<std::string> top_keys;
    std::string repeated_key;
    const auto note_keys = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      if (event == nlohmann::json::parse_event_t::key && depth == 1 && repeated_key.empty() &&
          !top_keys.insert(parsed.get<std::string>()).second) {
        repeated_key = parsed.get<std::string>();
      }
      return true;
    };
    try {
      header = nlohmann::json::parse(text, text + header_len, note_keys);
    } catch (const nlohmann::json::exception& e) {
      bad(std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) bad("header is not a JSON object");
    if (!repeated_key.empty()) bad("header names '" + repeated_key + "' twice");

    data_begin_ = file_.data() + 8 + header_len;
    const std::uint64_t data_size = file_size - 8 - header_len;

    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        if (!entry.is_object()) bad("__metadata__ is not an object");
        for (const auto& [key, value] : entry.items()) {
          if (!value.is_string()) bad("__metadata__ value for '" + key + "' is not a string");
          metadata_[key] = value.get<std::string>();
        }
        continue;
      }
      const std::string ctx = "tensor '" + name + "'";
      if (!entry.is_object()) bad(ctx + ": entry is not an object");
      if (!entry.contains("dtype") || !entry["dtype"].is_string()) bad(ctx + ": missing dtype");
      if (!entry.contains("shape") || !entry["shape"].is_array()) bad(ctx + ": missing shape");
      if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
          entry["data_offsets"].size() != 2) {
        bad(ctx + ": data_offsets must be an array of two integers");
      }
      TensorInfo t;
      t.name = name;
      const std::string dtype = entry["dtype"].get<std::string>();
      const auto parsed = parse_dtype(dtype);
      if (!parsed) bad(ctx + ": unknown dtype '" + dtype + "'");
      t.dtype = *parsed;

      // Element count with overflow checks: a 2^60 extent must not wrap, and
      // every running product must fit index_t (numel() and TensorView::size()
      // multiply the extents in this order).
      constexpr auto kMaxIndex = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max());
      std::uint64_t count = 1;
      for (const auto& e : entry["shape"]) {
        const std::uint64_t extent = json_index(e, ctx + ": shape extent", *this);
        if (extent > kMaxIndex || (extent != 0 && count > kMaxIndex / extent)) {
          bad(ctx + ": shape " + entry["shape"].dump() + " is too large");
        }
        count *= extent;
        t.shape.push_back(static_cast<index_t>(extent));
      }
      const std::uint64_t elem = dtype_size(t.dtype);
      if (count > data_size / elem + 1) {
        bad(ctx + ": shape " + entry["shape"].dump() + " needs more bytes than the file holds");
      }
      const std::uint64_t begin = json_index(entry["data_offsets"][0], ctx + ": data offset", *this);
      const std::uint64_t end = json_index(entry["data_offsets"][1], ctx + ": data offset", *this);
      if (begin > end) {
        bad(ctx + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
            "] are reversed");
      }
      if (end > data_size) {
        bad(ctx + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
            "] run past the data section (" + std::to_string(data_size) +
            " bytes; the file may be truncated)");
      }
      if (end - begin != count * elem) {
        bad(ctx + ": " + std::to_string(end - begin) + " bytes in data_offsets, but dtype " +
            dtype + " and shape " + entry["shape"].dump() + " need " +
            std::to_string(count * elem));
      }
      t.offset = static_cast<std::size_t>(begin);
      t.nbytes = static_cast<std::size_t>(end - begin);
      tensors_.push_back(std::move(t));
    }

    // No two tensors may share bytes. Empty tensors share none; each
    // non-empty one is compared with the one reaching furthest before it, so
    // an overlap cannot hide behind an empty or a nested tensor.
    std::vector<const TensorInfo*> by_offset;
    for (const auto& t : tensors_) {
      if (t.nbytes != 0) by_offset.push_back(&t);
    }
    std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
      return a->offset != b->offset ? a->offset < b->offset : a->nbytes < b->nbytes;
    });
    const TensorInfo* furthest = nullptr;
    for (const TensorInfo* cur : by_offset) {
      if (furthest != nullptr && cur->offset < furthest->offset + furthest->nbytes) {
        bad("tensors '" + furthest->name + "' and '" + cur->name +
            "' overlap in the data section");
      }
      if (furthest == nullptr ||
          cur->offset + cur->nbytes > furthest->offset + furthest->nbytes) {
        furthest = cur;
      }
    }
    std::sort(tensors_.begin(), tensors_.end(),
              [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  }

  MappedFile file_;
  const std::byte* data_begin_ = nullptr;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// One tensor to be written: its name, dtype, shape and raw bytes.
struct TensorRecord {
  std::string name;
  DType dtype = DType::F32;
  std::vector<index_t> shape;
  std::span<const std::byte> data;

  template <class T>
  static TensorRecord of(std::string name, std::vector<index_t> shape, std::span<const T> values) {
    return {std::move(name), dtype_of_v<T>, std::move(shape), std::as_bytes(values)};
  }
};

/// Name, dtype and shape of a tensor to be written.
struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<index_t> shape;
};

/// Bytes of a tensor's data; ShapeError unless every extent is non-negative
/// and their running product fits index_t, as the reader requires
/// (unchecked, {-2, -2} would pass as 4 elements).
inline std::uint64_t checked_bytes(const TensorSpec& t) {
  std::uint64_t count = 1;
  for (auto e : t.shape) {
    const auto extent = static_cast<std::uint64_t>(e);
    if (e < 0 || (e != 0 && count > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max()) / extent)) {
      throw ShapeError("write_safetensors: tensor '" + t.name + "' has invalid shape " + shape_string(t.shape));
    }
    count *= extent;
  }
  return count * dtype_size(t.dtype);
}

/// Writes a safetensors file whose data arrives in pieces, so that files far
/// larger than memory can be produced. The header is written up front;
/// tensors are laid out back to back (no holes, as other safetensors readers
/// require), widest dtype first, after a header padded to 8 bytes, so every
/// tensor is aligned to its element size. Data must then be written in
/// order() order, in chunks of any size; finish() checks it all arrived.
class SafetensorsStreamWriter {
 public:
  SafetensorsStreamWriter(const std::filesystem::path& path, std::vector<TensorSpec> specs,
                          const std::map<std::string, std::string>& metadata = {})
      : path_(path), order_(std::move(specs)) {
    std::set<std::string_view> names;
    for (const auto& t : order_) {
      // A repeated name would overwrite its header entry and leave a hole.
      if (t.name == "__metadata__") {
        throw FormatError("write_safetensors: tensor name '__metadata__' is reserved");
      }
      if (!names.insert(t.name).second) {
        throw FormatError("write_safetensors: duplicate tensor name '" + t.name + "'");
      }
      checked_bytes(t);
    }
    std::stable_sort(order_.begin(), order_.end(), [](const TensorSpec& a, const TensorSpec& b) {
      return dtype_size(a.dtype) > dtype_size(b.dtype);
    });
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    for (const TensorSpec& t : order_) {
      const std::uint64_t n = checked_bytes(t);
      header[t.name] = {{"dtype", dtype_name(t.dtype)},
                        {"shape", t.shape},
                        {"data_offsets", {total_, total_ + n}}};
      total_ += n;
    }
    std::string text = header.dump();
    text.resize((text.size() + 7) / 8 * 8, ' ');
    out_.open(path, std::ios::binary | std::ios::trunc);
    if (!out_) throw Error("cannot write '" + path.string() + "'");
    const std::uint64_t n = text.size();
    char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    out_.write(len, 8);
    out_.write(text.data(), static_cast<std::streamsize>(text.size()));
  }

  /// The order in which tensor data must be written.
  const std::vector<TensorSpec>& order() const noexcept { return order_; }

  /// Appends data bytes (any split of the tensors in order()).
  void write(std::span<const std::byte> chunk) {
    if (written_ + chunk.size() > total_) {
      throw ShapeError("write_safetensors: more data than the tensors of '" + path_.string() + "' hold");
    }
    out_.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(chunk.size()));
    written_ += chunk.size();
  }

  /// Flushes and checks that every tensor's data was written.
  void finish() {
    if (written_ != total_) {
      throw ShapeError("write_safetensors: '" + path_.string() + "' got " + std::to_string(written_) +
                       " data bytes of " + std::to_string(total_));
    }
    out_.flush();
    if (!out_) throw Error("error while writing '" + path_.string() + "'");
  }

 private:
  std::filesystem::path path_;
  std::vector<TensorSpec> order_;
  std::ofstream out_;
  std::uint64_t total_ = 0, written_ = 0;
};

/// Writes a safetensors file from tensors in memory (layout as
/// SafetensorsStreamWriter). Throws ShapeError when a record's byte size
/// disagrees with its dtype and shape, FormatError for duplicate names,
/// Error on I/O failure.
inline void write_safetensors(const std::filesystem::path& path,
                              std::span<const TensorRecord> tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  std::vector<TensorSpec> specs;
  std::map<std::string, const TensorRecord*> by_name;
  for (const auto& t : tensors) {
    specs.push_back({t.name, t.dtype, t.shape});
    by_name.emplace(t.name, &t);
  }
  // Check sizes before the file is created.
  for (const auto& t : tensors) {
    const auto need = checked_bytes({t.name, t.dtype, t.shape});
    if (need != t.data.size()) {
      throw ShapeError("write_safetensors: tensor '" + t.name + "' has " +
                       std::to_string(t.data.size()) + " bytes, but dtype " +
                       std::string(dtype_name(t.dtype)) + " and shape " + shape_string(t.shape) +
                       " need " + std::to_string(need));
    }
  }
  SafetensorsStreamWriter writer(path, std::move(specs), metadata);
  for (const auto& spec : writer.order()) writer.write(by_name.at(spec.name)->data);
  writer.finish();
}

}  // namespace gptoss::io
