// The safetensors reader and writer: round trips for every dtype, the exact
// on-disk layout the writer produces, and every kind of corrupt file the
// reader must reject with a FormatError naming the file and the tensor.
// Corrupt files are written byte by byte into a fresh temporary directory.
#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "gptoss/io/safetensors.hpp"

#include "support/matchers.hpp"

using namespace gptoss;
namespace fs = std::filesystem;

namespace {

/// Matches an exception whose what() contains every given fragment.
using MentionsAll = test::MessageHas;

MentionsAll mentions(std::initializer_list<std::string> parts) { return MentionsAll(parts); }

/// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    for (int attempt = 0;; ++attempt) {
      const auto tag = std::to_string(rd()) + "_" + std::to_string(rd());
      path_ = fs::temp_directory_path() / ("gptoss_safetensors_test_" + tag);
      if (fs::create_directory(path_)) break;
      if (attempt > 100) throw std::runtime_error("cannot create a temporary directory");
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

/// n as 8 little-endian bytes.
std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

/// A safetensors file image: length prefix, header text, data bytes.
std::string image(const std::string& header, const std::string& data = {}) {
  return le64(header.size()) + header + data;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Writes a file image and returns its path.
fs::path write_image(const TempDir& dir, const std::string& name, const std::string& bytes) {
  const fs::path p = dir / name;
  write_bytes(p, bytes);
  return p;
}

/// Opening `path` must throw FormatError naming the file and every fragment.
void require_rejected(const fs::path& path, std::initializer_list<std::string> fragments) {
  std::vector<std::string> parts(fragments);
  parts.push_back(path.string());
  INFO("file " << path.string());
  REQUIRE_THROWS_MATCHES(io::SafetensorsFile(path), FormatError, MentionsAll(parts));
}

/// True when two spans hold the same bytes.
bool same_bytes(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

/// The tensor has type T, the given shape and values, and a zero-copy,
/// aligned view of it points straight into the mapped file.
template <class T, std::size_t Rank>
void check_typed(const io::SafetensorsFile& f, const std::string& name,
                 const std::array<index_t, Rank>& shape, const std::vector<T>& values) {
  INFO("tensor " << name);
  const io::TensorInfo& t = f.info(name);
  CHECK(t.dtype == dtype_of_v<T>);
  CHECK(t.shape == std::vector<index_t>(shape.begin(), shape.end()));
  CHECK(t.nbytes == values.size() * sizeof(T));
  CHECK(same_bytes(f.bytes(name), std::as_bytes(std::span(values))));
  const std::vector<T> copy = f.read<T>(name);
  CHECK(same_bytes(std::as_bytes(std::span(copy)), std::as_bytes(std::span(values))));

  const auto v = f.view<T, Rank>(name, shape);
  CHECK(static_cast<const void*>(v.data()) == static_cast<const void*>(f.bytes(name).data()));
  CHECK(reinterpret_cast<std::uintptr_t>(v.data()) % alignof(T) == 0);
  CHECK(reinterpret_cast<std::uintptr_t>(v.data()) % sizeof(T) == 0);
  CHECK(v.size() == static_cast<index_t>(values.size()));
  CHECK(same_bytes(std::as_bytes(v.span()), std::as_bytes(std::span(values))));
}

/// The header of the round-trip file: one tensor of every dtype.
struct AllDtypes {
  std::vector<double> f64{1.5, -2.25, 1e300, -0.0, 4.9406564584124654e-324, 3.0};
  std::vector<float> f32{0.1f, -3.5f, std::numeric_limits<float>::infinity()};
  std::vector<f16> f16v{{0x3c00}, {0xc000}, {0x7bff}, {0x0001}};
  std::vector<bf16> bf16v{bf16::from_float(1.0f), bf16::from_float(-0.15625f),
                          bf16::from_float(3.0e38f), bf16::from_float(-1e-30f)};
  std::vector<std::int64_t> i64{std::numeric_limits<std::int64_t>::min(), -1, 0,
                                std::numeric_limits<std::int64_t>::max()};
  std::vector<std::int32_t> i32{std::numeric_limits<std::int32_t>::min(), -7, 7,
                                std::numeric_limits<std::int32_t>::max(), 0};
  std::vector<std::int16_t> i16{-32768, 32767, 258};
  std::vector<std::int8_t> i8{-128, 127, 0, 5, -5};
  std::vector<std::uint64_t> u64{0, std::numeric_limits<std::uint64_t>::max(), 1ull << 63};
  std::vector<std::uint32_t> u32{0, 0xdeadbeefu, 0xffffffffu};
  std::vector<std::uint16_t> u16{0, 65535, 258};
  std::vector<std::uint8_t> u8{0, 255, 17};
  std::vector<std::uint8_t> boolv{1, 0, 1, 1, 0};
  std::vector<float> scalar{42.0f};
  std::vector<float> empty;

  std::vector<io::TensorRecord> records() const {
    using R = io::TensorRecord;
    // Deliberately narrowest first: the writer must reorder for alignment.
    return {
        {"flags", DType::BOOL, {5}, std::as_bytes(std::span(boolv))},
        R::of<std::uint8_t>("u8", {3}, u8),
        R::of<std::int8_t>("i8", {5}, i8),
        R::of<std::uint16_t>("u16", {3}, u16),
        R::of<std::int16_t>("i16", {3}, i16),
        R::of<f16>("f16", {2, 2}, f16v),
        R::of<bf16>("bf16", {4}, bf16v),
        R::of<std::uint32_t>("u32", {1, 3}, u32),
        R::of<std::int32_t>("i32", {5}, i32),
        R::of<float>("f32", {3}, f32),
        R::of<float>("scalar", {}, scalar),
        R::of<float>("empty", {0, 3}, empty),
        R::of<std::uint64_t>("u64", {3}, u64),
        R::of<std::int64_t>("i64", {4, 1}, i64),
        R::of<double>("f64", {2, 3}, f64),
    };
  }
};

}  // namespace

TEST_CASE("safetensors: writer and reader round-trip every dtype with metadata",
          "[safetensors][io]") {
  TempDir dir;
  const AllDtypes d;
  const auto records = d.records();
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"note", "round \"trip\""}};
  const fs::path path = dir / "all.safetensors";
  io::write_safetensors(path, records, metadata);

  const io::SafetensorsFile f(path);
  CHECK(f.path() == path);
  CHECK(f.metadata() == metadata);
  REQUIRE(f.tensors().size() == records.size());
  CHECK(std::is_sorted(f.tensors().begin(), f.tensors().end(),
                       [](const auto& a, const auto& b) { return a.name < b.name; }));
  for (const auto& r : records) {
    INFO("tensor " << r.name);
    REQUIRE(f.contains(r.name));
    CHECK(f.info(r.name).dtype == r.dtype);
    CHECK(f.info(r.name).shape == r.shape);
    CHECK(same_bytes(f.bytes(r.name), r.data));
  }

  check_typed<double, 2>(f, "f64", {2, 3}, d.f64);
  check_typed<float, 1>(f, "f32", {3}, d.f32);
  check_typed<f16, 2>(f, "f16", {2, 2}, d.f16v);
  check_typed<bf16, 1>(f, "bf16", {4}, d.bf16v);
  check_typed<std::int64_t, 2>(f, "i64", {4, 1}, d.i64);
  check_typed<std::int32_t, 1>(f, "i32", {5}, d.i32);
  check_typed<std::int16_t, 1>(f, "i16", {3}, d.i16);
  check_typed<std::int8_t, 1>(f, "i8", {5}, d.i8);
  check_typed<std::uint64_t, 1>(f, "u64", {3}, d.u64);
  check_typed<std::uint32_t, 2>(f, "u32", {1, 3}, d.u32);
  check_typed<std::uint16_t, 1>(f, "u16", {3}, d.u16);
  check_typed<std::uint8_t, 1>(f, "u8", {3}, d.u8);
  check_typed<float, 2>(f, "empty", {0, 3}, d.empty);

  // BOOL has no C++ element type: its bytes come back unchanged.
  CHECK(f.info("flags").dtype == DType::BOOL);
  CHECK(f.info("flags").numel() == 5);
  // A rank-0 tensor holds one element.
  CHECK(f.info("scalar").shape.empty());
  CHECK(f.info("scalar").numel() == 1);
  CHECK(f.read<float>("scalar") == std::vector<float>{42.0f});
}

TEST_CASE("safetensors: a written file follows the format byte for byte", "[safetensors][io]") {
  TempDir dir;
  const AllDtypes d;
  const auto records = d.records();
  // Names of every length 1..8 so that some headers need padding.
  for (int extra = 0; extra < 8; ++extra) {
    INFO("extra name length " << extra);
    std::vector<io::TensorRecord> recs = records;
    recs.front().name += std::string(static_cast<std::size_t>(extra), 'x');
    const fs::path path = dir / ("layout" + std::to_string(extra) + ".safetensors");
    io::write_safetensors(path, recs, {{"k", "v"}});
    const std::string bytes = read_bytes(path);
    REQUIRE(bytes.size() >= 8);

    // 8-byte little-endian header length, read byte by byte.
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
    REQUIRE(n % 8 == 0);
    REQUIRE(8 + n <= bytes.size());
    const std::string header_text = bytes.substr(8, n);
    CHECK(header_text.front() == '{');
    // Padding is trailing spaces only, and less than 8 of them.
    const auto last = header_text.find_last_not_of(' ');
    REQUIRE(last != std::string::npos);
    CHECK(header_text[last] == '}');
    CHECK(header_text.size() - 1 - last < 8);

    const auto header = nlohmann::json::parse(header_text);
    REQUIRE(header.is_object());
    CHECK(header.at("__metadata__") == nlohmann::json{{"k", "v"}});
    const std::uint64_t data_size = bytes.size() - 8 - n;

    // No holes: sorted by begin, the ranges tile [0, data_size) exactly.
    struct Range {
      std::uint64_t begin, end;
      std::string name;
      std::size_t elem;
    };
    std::vector<Range> ranges;
    for (const auto& r : recs) {
      INFO("tensor " << r.name);
      REQUIRE(header.contains(r.name));
      const auto& e = header.at(r.name);
      CHECK(e.at("dtype") == std::string(dtype_name(r.dtype)));
      CHECK(e.at("shape").get<std::vector<index_t>>() == r.shape);
      ranges.push_back({e.at("data_offsets").at(0).get<std::uint64_t>(),
                        e.at("data_offsets").at(1).get<std::uint64_t>(), r.name,
                        dtype_size(r.dtype)});
      const Range& g = ranges.back();
      REQUIRE(g.end - g.begin == r.data.size());
      // Every tensor is aligned to its element size in the file.
      CHECK((8 + n + g.begin) % g.elem == 0);
      CHECK(same_bytes(std::as_bytes(std::span(bytes)).subspan(8 + n + g.begin, g.end - g.begin),
                       r.data));
    }
    CHECK(header.size() == recs.size() + 1);
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t expect = 0;
    for (const Range& g : ranges) {
      INFO("tensor " << g.name);
      CHECK(g.begin == expect);
      expect = g.end;
    }
    CHECK(expect == data_size);
  }

  // Element bytes are little-endian on disk.
  const std::vector<std::uint32_t> word{0x01020304u};
  const std::vector<io::TensorRecord> one{io::TensorRecord::of<std::uint32_t>("w", {1}, word)};
  const fs::path path = dir / "le.safetensors";
  io::write_safetensors(path, one);
  const std::string bytes = read_bytes(path);
  REQUIRE(bytes.size() >= 4);
  CHECK(bytes.substr(bytes.size() - 4) == std::string("\x04\x03\x02\x01", 4));
  // Without metadata there is no __metadata__ entry.
  const io::SafetensorsFile f(path);
  CHECK(f.metadata().empty());
}

TEST_CASE("safetensors: read_as_float widens F16, BF16 and F64", "[safetensors][io]") {
  TempDir dir;
  const float inf = std::numeric_limits<float>::infinity();
  // F16 bit patterns: 1, -2, 65504 (max), 2^-24 (smallest subnormal), inf, -0, 0.5, 2^-14.
  const std::vector<f16> h{{0x3c00}, {0xc000}, {0x7bff}, {0x0001},
                           {0x7c00}, {0x8000}, {0x3800}, {0x0400}};
  const std::vector<float> h_expect{1.0f, -2.0f, 65504.0f, std::ldexp(1.0f, -24),
                                    inf,  -0.0f, 0.5f,     std::ldexp(1.0f, -14)};
  const std::vector<float> b_src{1.0f, -0.15625f, 3.0e38f, std::ldexp(1.0f, -133), -inf};
  std::vector<bf16> b;
  for (float x : b_src) b.push_back(bf16::from_float(x));
  const std::vector<double> dd{0.1, -2.5, 1e300, 5e-324, -0.0};
  const std::vector<std::int32_t> ints{1, 2};
  const std::vector<float> ff{1.25f, -7.0f};
  const std::vector<io::TensorRecord> recs{io::TensorRecord::of<f16>("h", {8}, h),
                                           io::TensorRecord::of<bf16>("b", {5}, b),
                                           io::TensorRecord::of<double>("d", {5}, dd),
                                           io::TensorRecord::of<std::int32_t>("ints", {2}, ints),
                                           io::TensorRecord::of<float>("f", {2}, ff)};
  const fs::path path = dir / "floats.safetensors";
  io::write_safetensors(path, recs);
  const io::SafetensorsFile f(path);

  auto bits = [](const std::vector<float>& v) {
    std::vector<std::uint32_t> out;
    for (float x : v) out.push_back(std::bit_cast<std::uint32_t>(x));
    return out;
  };
  CHECK(bits(f.read_as_float("h")) == bits(h_expect));
  std::vector<float> b_expect;
  for (bf16 x : b) b_expect.push_back(std::bit_cast<float>(std::uint32_t{x.bits} << 16));
  CHECK(bits(f.read_as_float("b")) == bits(b_expect));
  CHECK(f.read_as_float("b")[0] == 1.0f);
  CHECK(f.read_as_float("b")[1] == -0.15625f);
  CHECK(f.read_as_float("b")[4] == -inf);
  std::vector<float> d_expect;
  for (double x : dd) d_expect.push_back(static_cast<float>(x));
  CHECK(bits(f.read_as_float("d")) == bits(d_expect));
  CHECK(f.read_as_float("d")[2] == inf);  // 1e300 overflows float
  CHECK(bits(f.read_as_float("f")) == bits(ff));

  REQUIRE_THROWS_MATCHES(f.read_as_float("ints"), FormatError,
                         mentions({path.string(), "'ints'", "I32", "floating-point"}));
}

TEST_CASE("safetensors: views check dtype, rank, shape and alignment", "[safetensors][io]") {
  TempDir dir;
  const std::vector<float> vec{1, 2, 3, 4};
  const std::vector<float> mat{1, 2, 3, 4, 5, 6};
  const std::vector<io::TensorRecord> recs{io::TensorRecord::of<float>("vec", {4}, vec),
                                           io::TensorRecord::of<float>("mat", {2, 3}, mat)};
  const fs::path path = dir / "views.safetensors";
  io::write_safetensors(path, recs);
  const io::SafetensorsFile f(path);
  const std::string p = path.string();

  SECTION("wrong dtype names both dtypes") {
    REQUIRE_THROWS_MATCHES((f.view<double, 1>("vec")), FormatError,
                           mentions({p, "'vec'", "expected dtype F64", "got F32"}));
    REQUIRE_THROWS_MATCHES((f.view<bf16, 1>("vec")), FormatError,
                           mentions({p, "'vec'", "BF16", "F32"}));
    REQUIRE_THROWS_MATCHES(f.read<std::int32_t>("mat"), FormatError,
                           mentions({p, "'mat'", "I32", "F32"}));
  }
  SECTION("wrong rank names the rank and the shape") {
    REQUIRE_THROWS_MATCHES((f.view<float, 2>("vec")), FormatError,
                           mentions({p, "'vec'", "rank 2", "(4)"}));
    REQUIRE_THROWS_MATCHES((f.view<float, 3>("mat")), FormatError,
                           mentions({p, "'mat'", "rank 3", "(2, 3)"}));
  }
  SECTION("expected shape mismatch names both shapes") {
    REQUIRE_THROWS_MATCHES((f.view<float, 2>("mat", {3, 2})), FormatError,
                           mentions({p, "'mat'", "(3, 2)", "(2, 3)"}));
    REQUIRE_THROWS_MATCHES((f.view<float, 1>("vec", {5})), FormatError,
                           mentions({p, "'vec'", "(5)", "(4)"}));
    const auto ok = f.view<float, 2>("mat", {2, 3});
    CHECK(ok(1, 2) == 6.0f);
  }
  SECTION("a missing tensor is named") {
    CHECK_FALSE(f.contains("nope"));
    REQUIRE_THROWS_MATCHES(f.info("nope"), FormatError, mentions({p, "'nope'"}));
    REQUIRE_THROWS_MATCHES(f.bytes("nope"), FormatError, mentions({p, "'nope'"}));
    REQUIRE_THROWS_MATCHES((f.view<float, 1>("nope")), FormatError, mentions({p, "'nope'"}));
    REQUIRE_THROWS_MATCHES(f.read_as_float("nope"), FormatError, mentions({p, "'nope'"}));
  }
  SECTION("a misaligned tensor cannot be viewed but can be read") {
    // Header padded to 8 bytes; a 2-byte U8 tensor pushes the F32 one to offset 2.
    std::string header = R"({"pad":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                         R"("odd":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})";
    header.resize((header.size() + 7) / 8 * 8, ' ');
    const float one = 1.0f;
    std::string data(2, '\x7f');
    data.append(reinterpret_cast<const char*>(&one), sizeof one);
    const fs::path odd = write_image(dir, "odd.safetensors", image(header, data));
    const io::SafetensorsFile g(odd);
    REQUIRE_THROWS_MATCHES((g.view<float, 1>("odd")), FormatError,
                           mentions({odd.string(), "'odd'", "aligned"}));
    CHECK(g.read<float>("odd") == std::vector<float>{1.0f});
    CHECK(g.read_as_float("odd") == std::vector<float>{1.0f});
  }
}

TEST_CASE("safetensors: unopenable paths are FormatErrors naming the path", "[safetensors][io]") {
  TempDir dir;
  const fs::path missing = dir / "does_not_exist.safetensors";
  REQUIRE_THROWS_MATCHES(io::SafetensorsFile(missing), FormatError, mentions({missing.string()}));
  REQUIRE_THROWS_MATCHES(io::SafetensorsFile(dir.path()), FormatError,
                         mentions({dir.path().string(), "not a regular file"}));
}

TEST_CASE("safetensors: truncated prefixes and bad header lengths are rejected",
          "[safetensors][io][bad-input]") {
  TempDir dir;
  SECTION("empty file") {
    require_rejected(write_image(dir, "empty.safetensors", ""), {"truncated", "0 bytes"});
  }
  SECTION("7-byte file") {
    require_rejected(write_image(dir, "seven.safetensors", std::string(7, '\0')),
                     {"truncated", "7 bytes"});
  }
  SECTION("header length beyond the file size") {
    const std::string bytes = le64(100) + "{}" + std::string(8, ' ');
    require_rejected(write_image(dir, "short.safetensors", bytes),
                     {"header length 100", "past the end", "18 bytes"});
  }
  SECTION("header length beyond the 100 MiB limit") {
    const std::uint64_t too_big = io::kMaxHeaderBytes + 1;
    require_rejected(write_image(dir, "huge.safetensors", le64(too_big) + "{}      "),
                     {"header length " + std::to_string(too_big), "limit"});
    // The largest length must not overflow the bounds arithmetic either.
    require_rejected(write_image(dir, "max.safetensors",
                                 le64(std::numeric_limits<std::uint64_t>::max()) + "{}      "),
                     {"header length 18446744073709551615", "limit"});
  }
  SECTION("a big-endian length is not accepted as little-endian") {
    std::string len(8, '\0');
    len[7] = 8;  // 8 << 56 when read little-endian
    require_rejected(write_image(dir, "be.safetensors", len + "{}      "), {"limit"});
  }
}

TEST_CASE("safetensors: malformed header JSON is rejected", "[safetensors][io][bad-input]") {
  TempDir dir;
  SECTION("not JSON") {
    require_rejected(write_image(dir, "text.safetensors", image("{not json")), {"not valid JSON"});
    require_rejected(write_image(dir, "trailing.safetensors", image("{} {}")), {"not valid JSON"});
    require_rejected(write_image(dir, "utf8.safetensors", image("{\"\xff\":1}")),
                     {"not valid JSON"});
  }
  SECTION("JSON that is not an object") {
    require_rejected(write_image(dir, "array.safetensors", image("[1,2]")), {"not a JSON object"});
    require_rejected(write_image(dir, "number.safetensors", image("42")), {"not a JSON object"});
  }
  SECTION("an entry that is not an object") {
    require_rejected(write_image(dir, "entry.safetensors", image(R"({"w": 5})")),
                     {"tensor 'w'", "not an object"});
  }
  SECTION("missing or mistyped dtype") {
    require_rejected(write_image(dir, "nodtype.safetensors",
                                 image(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "abcd")),
                     {"tensor 'w'", "dtype"});
    require_rejected(
        write_image(dir, "intdtype.safetensors",
                    image(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", "abcd")),
        {"tensor 'w'", "dtype"});
  }
  SECTION("missing shape") {
    require_rejected(write_image(dir, "noshape.safetensors",
                                 image(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", "abcd")),
                     {"tensor 'w'", "shape"});
    require_rejected(
        write_image(dir, "objshape.safetensors",
                    image(R"({"w":{"dtype":"F32","shape":{},"data_offsets":[0,4]}})", "abcd")),
        {"tensor 'w'", "shape"});
  }
  SECTION("missing or malformed data_offsets") {
    require_rejected(write_image(dir, "nooff.safetensors",
                                 image(R"({"w":{"dtype":"F32","shape":[1]}})", "abcd")),
                     {"tensor 'w'", "data_offsets"});
    require_rejected(
        write_image(dir, "threeoff.safetensors",
                    image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", "abcd")),
        {"tensor 'w'", "data_offsets"});
    require_rejected(
        write_image(dir, "stroff.safetensors",
                    image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":["0",4]}})", "abcd")),
        {"tensor 'w'", "data offset"});
    require_rejected(
        write_image(dir, "negoff.safetensors",
                    image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", "abcd")),
        {"tensor 'w'", "data offset", "-4"});
  }
  SECTION("unknown dtype") {
    require_rejected(
        write_image(dir, "f8.safetensors",
                    image(R"({"w":{"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]}})", "a")),
        {"tensor 'w'", "unknown dtype 'F8_E9'"});
  }
  SECTION("a tensor named twice") {
    // JSON keeps the last; the first tensor would vanish.
    require_rejected(
        write_image(dir, "twice.safetensors",
                    image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                          "abcdefgh")),
        {"names 'w' twice"});
    // The same key at another depth is not a repeat.
    const auto path = write_image(
        dir, "nested.safetensors",
        image(R"({"__metadata__":{"w":"x"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "abcd"));
    CHECK(io::SafetensorsFile(path).tensors().size() == 1);
  }
  SECTION("__metadata__ not a string map") {
    require_rejected(write_image(dir, "metaarr.safetensors", image(R"({"__metadata__":[1]})")),
                     {"__metadata__", "not an object"});
    require_rejected(
        write_image(dir, "metaint.safetensors", image(R"({"__metadata__":{"ok":"x","count":3}})")),
        {"__metadata__", "'count'", "not a string"});
  }
}

TEST_CASE("safetensors: bad shapes are rejected without overflow", "[safetensors][io][bad-input]") {
  TempDir dir;
  auto file_with_shape = [&](const std::string& name, const std::string& dtype,
                             const std::string& shape, const std::string& offsets,
                             const std::string& data) {
    return write_image(dir, name,
                       image(R"({"w":{"dtype":")" + dtype + R"(","shape":)" + shape +
                                 R"(,"data_offsets":)" + offsets + "}}",
                             data));
  };
  SECTION("negative extent") {
    require_rejected(
        file_with_shape("neg.safetensors", "F32", "[-1,4]", "[0,16]", std::string(16, 'x')),
        {"tensor 'w'", "shape", "-1"});
  }
  SECTION("non-integer extents") {
    require_rejected(
        file_with_shape("frac.safetensors", "F32", "[2.5]", "[0,8]", std::string(8, 'x')),
        {"tensor 'w'", "shape", "2.5"});
    require_rejected(
        file_with_shape("str.safetensors", "F32", R"(["2"])", "[0,8]", std::string(8, 'x')),
        {"tensor 'w'", "shape"});
    require_rejected(
        file_with_shape("bool.safetensors", "F32", "[true]", "[0,4]", std::string(4, 'x')),
        {"tensor 'w'", "shape"});
  }
  SECTION("2^60 extents do not wrap the element count") {
    // 2^60 * 16 = 2^64 wraps to 0 in 64-bit arithmetic; offsets [0,0] would then "fit".
    require_rejected(
        file_with_shape("wrap.safetensors", "F32", "[1152921504606846976,16]", "[0,0]", ""),
        {"tensor 'w'", "too large"});
    require_rejected(file_with_shape("wrap2.safetensors", "U8",
                                     "[1152921504606846976,1152921504606846976]", "[0,0]", ""),
                     {"tensor 'w'", "too large"});
    // 2^60 F32 elements need 2^62 bytes: more than the file holds.
    require_rejected(
        file_with_shape("big.safetensors", "F32", "[1152921504606846976]", "[0,4]", "abcd"),
        {"tensor 'w'", "1152921504606846976"});
    // Extents beyond int64 are rejected as too large, not as negative.
    require_rejected(
        file_with_shape("u64.safetensors", "U8", "[18446744073709551615]", "[0,1]", "a"),
        {"tensor 'w'", "too large"});
    // An element count that only a trailing 0 brings back into range still
    // overflows index_t on the way (numel(), TensorView::size()).
    require_rejected(
        file_with_shape("zero.safetensors", "U8", "[4611686018427387904,3,0]", "[0,0]", ""),
        {"tensor 'w'", "too large"});
  }
  SECTION("zero-sized tensors are fine") {
    const fs::path p =
        file_with_shape("ok0.safetensors", "F32", "[0,1152921504606846976]", "[0,0]", "");
    const io::SafetensorsFile f(p);
    CHECK(f.info("w").numel() == 0);
    CHECK(f.read<float>("w").empty());
  }
}

TEST_CASE("safetensors: bad data offsets are rejected", "[safetensors][io][bad-input]") {
  TempDir dir;
  SECTION("reversed offsets") {
    require_rejected(write_image(dir, "rev.safetensors",
                                 image(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[8,4]}})",
                                       std::string(8, 'x'))),
                     {"tensor 'w'", "[8, 4]", "reversed"});
  }
  SECTION("offsets past the end of a truncated file") {
    const std::vector<float> a{1, 2, 3, 4}, b{5, 6, 7, 8};
    const std::vector<io::TensorRecord> recs{io::TensorRecord::of<float>("a", {4}, a),
                                             io::TensorRecord::of<float>("b", {4}, b)};
    const fs::path p = dir / "trunc.safetensors";
    io::write_safetensors(p, recs);
    REQUIRE_NOTHROW(io::SafetensorsFile(p));
    fs::resize_file(p, fs::file_size(p) - 3);
    require_rejected(p, {"tensor 'b'", "[16, 32]", "29 bytes", "truncated"});
  }
  SECTION("byte size disagrees with dtype and shape") {
    require_rejected(
        write_image(dir, "size.safetensors",
                    image(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})",
                          std::string(16, 'x'))),
        {"tensor 'w'", "12 bytes", "F32", "[2,2]", "need 16"});
    require_rejected(write_image(dir, "size2.safetensors",
                                 image(R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})",
                                       std::string(8, 'x'))),
                     {"tensor 'w'", "8 bytes", "BF16", "need 6"});
  }
  SECTION("overlapping tensors") {
    require_rejected(write_image(dir, "overlap.safetensors",
                                 image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                       R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                                       std::string(24, 'x'))),
                     {"'a'", "'b'", "overlap"});
    require_rejected(write_image(dir, "same.safetensors",
                                 image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})",
                                       std::string(8, 'x'))),
                     {"'a'", "'b'", "overlap"});
  }
  SECTION("an overlap hidden behind an empty tensor or a nested one") {
    // c lies inside a; the empty tensor z sorts between them.
    require_rejected(write_image(dir, "hidden.safetensors",
                                 image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                       R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                                       R"("c":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                       std::string(16, 'x'))),
                     {"'a'", "'c'", "overlap"});
    // d lies inside a, after the small b that is also inside a.
    require_rejected(write_image(dir, "nested.safetensors",
                                 image(R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
                                       R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
                                       R"("d":{"dtype":"U8","shape":[2],"data_offsets":[8,10]}})",
                                       std::string(16, 'x'))),
                     {"'a'", "overlap"});
  }
  SECTION("empty tensors and holes are accepted") {
    const fs::path p = write_image(dir, "holes.safetensors",
                                   image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                         R"("z":{"dtype":"F32","shape":[0],"data_offsets":[2,2]},)"
                                         R"("c":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})",
                                         "abcdefgh"));
    const io::SafetensorsFile f(p);
    CHECK(f.read<std::uint8_t>("c") == std::vector<std::uint8_t>{'g', 'h'});
  }
}

TEST_CASE("safetensors: the writer refuses inconsistent records", "[safetensors][io][bad-input]") {
  TempDir dir;
  const std::vector<float> four{1, 2, 3, 4};
  const fs::path p = dir / "w.safetensors";
  SECTION("byte size disagrees with dtype and shape") {
    const std::vector<io::TensorRecord> recs{io::TensorRecord::of<float>("w", {5}, four)};
    REQUIRE_THROWS_MATCHES(io::write_safetensors(p, recs), ShapeError,
                           mentions({"'w'", "16 bytes", "F32", "(5)", "need 20"}));
  }
  SECTION("negative or overflowing extents") {
    // (-2) * (-2) = 4 elements = 16 bytes: the sizes agree, the shape is still invalid.
    const std::vector<io::TensorRecord> neg{io::TensorRecord::of<float>("w", {-2, -2}, four)};
    REQUIRE_THROWS_MATCHES(io::write_safetensors(p, neg), ShapeError,
                           mentions({"'w'", "(-2, -2)"}));
    // 2^62 * 4 wraps to 0 elements in 64-bit arithmetic.
    const std::vector<float> none;
    const std::vector<io::TensorRecord> wrap{
        io::TensorRecord::of<float>("w", {index_t{1} << 62, 4}, none)};
    REQUIRE_THROWS_MATCHES(io::write_safetensors(p, wrap), ShapeError,
                           mentions({"'w'", "(4611686018427387904, 4)"}));
    CHECK_FALSE(fs::exists(p));
  }
  SECTION("a duplicate name would leave a hole and lose a tensor") {
    const std::vector<io::TensorRecord> recs{io::TensorRecord::of<float>("w", {4}, four),
                                             io::TensorRecord::of<float>("w", {2, 2}, four)};
    REQUIRE_THROWS_MATCHES(io::write_safetensors(p, recs), FormatError,
                           mentions({"'w'", "duplicate"}));
  }
  SECTION("a tensor may not be called __metadata__") {
    const std::vector<io::TensorRecord> recs{
        io::TensorRecord::of<float>("__metadata__", {4}, four)};
    REQUIRE_THROWS_MATCHES(io::write_safetensors(p, recs), FormatError,
                           mentions({"'__metadata__'", "reserved"}));
  }
  SECTION("an unwritable path is an Error naming it") {
    const std::vector<io::TensorRecord> recs{io::TensorRecord::of<float>("w", {4}, four)};
    const fs::path bad = dir / "no_such_dir" / "w.safetensors";
    REQUIRE_THROWS_MATCHES(io::write_safetensors(bad, recs), Error, mentions({bad.string()}));
  }
}

TEST_CASE("safetensors: every single-byte corruption and truncation is a FormatError or valid",
          "[safetensors][io][bad-input]") {
  // Robustness sweep (run under ASan/UBSan it shows the reader has no UB on
  // corrupt input): each outcome must be success or FormatError, never another
  // exception or a crash.
  TempDir dir;
  const std::vector<float> a{1, 2};
  const std::vector<std::uint8_t> b{7, 8, 9};
  const std::vector<io::TensorRecord> recs{io::TensorRecord::of<float>("a", {2}, a),
                                           io::TensorRecord::of<std::uint8_t>("b", {3}, b)};
  const fs::path good = dir / "good.safetensors";
  io::write_safetensors(good, recs, {{"k", "v"}});
  const std::string bytes = read_bytes(good);
  const fs::path p = dir / "mutant.safetensors";

  int rejected = 0, accepted = 0;
  auto attempt = [&](const std::string& image_bytes, const std::string& what) {
    fs::remove(p);  // a new file, not a truncated one: ext4 flushes truncated files on close
    write_bytes(p, image_bytes);
    try {
      const io::SafetensorsFile f(p);
      // Accepted: every tensor lies inside the data section, and its bytes
      // are the file's bytes at 8 + header length + offset.
      std::uint64_t header_len = 0;
      for (int i = 7; i >= 0; --i) {
        header_len = (header_len << 8) | static_cast<unsigned char>(image_bytes[i]);
      }
      const std::uint64_t data_size = image_bytes.size() - 8 - header_len;
      for (const auto& t : f.tensors()) {
        if (t.offset + t.nbytes > data_size) {
          FAIL_CHECK(what << ": tensor '" << t.name << "' out of bounds");
          continue;
        }
        const auto expected =
            std::as_bytes(std::span(image_bytes)).subspan(8 + header_len + t.offset, t.nbytes);
        if (!same_bytes(f.bytes(t.name), expected)) {
          FAIL_CHECK(what << ": tensor '" << t.name << "' has the wrong bytes");
        }
      }
      ++accepted;
    } catch (const FormatError& e) {
      ++rejected;
      if (std::string(e.what()).find(p.string()) == std::string::npos) {
        FAIL_CHECK(what << ": message does not name the file: " << e.what());
      }
    } catch (const std::exception& e) {
      FAIL_CHECK(what << ": unexpected exception: " << e.what());
    }
  };
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    attempt(bytes.substr(0, len), "truncated to " + std::to_string(len));
  }
  const std::uint64_t header_end = 8 + (bytes.size() - 8 - 11);  // 11 data bytes
  for (std::size_t i = 0; i < header_end; ++i) {
    for (unsigned char c : std::array<unsigned char, 6>{'\0', '"', '9', '-', '}', 0xff}) {
      std::string m = bytes;
      if (static_cast<unsigned char>(m[i]) == c) continue;
      m[i] = static_cast<char>(c);
      attempt(m, "byte " + std::to_string(i) + " set to " + std::to_string(c));
    }
  }
  CHECK(rejected > 0);
  CHECK(accepted > 0);
}
