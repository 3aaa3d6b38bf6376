// A read-only memory map of a whole file (POSIX mmap). Checkpoint tensors are
// viewed in place through it, so loading costs page faults, not copies.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <utility>

#include "gptoss/core/error.hpp"
#include "gptoss/core/huge_pages.hpp"

namespace gptoss::io {

/// Move-only owner of a read-only mapping of one file.
class MappedFile {
 public:
  MappedFile() = default;

  /// Maps `path`; throws FormatError naming the file when it cannot be opened.
  explicit MappedFile(std::filesystem::path path) : path_(std::move(path)) {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open");
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      fail("cannot stat");
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw FormatError(path_.string() + ": not a regular file");
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        fail("cannot map");
      }
      data_ = static_cast<const std::byte*>(p);
      // A hint: kernels with read-only file THP may back the weights with
      // huge pages, which decode streams faster (core/huge_pages.hpp).
      advise_huge_pages(p, size_);
    }
    ::close(fd);
  }

  /// A non-owning stand-in over bytes already in memory (e.g. for parsers
  /// under test or fuzzing); `name` appears in error messages as the path.
  static MappedFile borrow(std::span<const std::byte> bytes, std::filesystem::path name) {
    MappedFile f;
    f.path_ = std::move(name);
    f.data_ = bytes.data();
    f.size_ = bytes.size();
    f.owned_ = false;
    return f;
  }

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept { swap(other); }
  MappedFile& operator=(MappedFile&& other) noexcept {
    MappedFile tmp(std::move(other));
    swap(tmp);
    return *this;
  }
  ~MappedFile() {
    if (data_ != nullptr && owned_) ::munmap(const_cast<std::byte*>(data_), size_);
  }

  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  [[noreturn]] void fail(const char* what) const {
    throw FormatError(path_.string() + ": " + what + ": " + std::strerror(errno));
  }
  void swap(MappedFile& other) noexcept {
    std::swap(path_, other.path_);
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(owned_, other.owned_);
  }

  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool owned_ = true;
};

}  // namespace gptoss::io
