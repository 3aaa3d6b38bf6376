// gptoss CLI: the resident and peak resident memory of this process, read
// from /proc/self/status (Linux; zeros elsewhere), for `gptoss info --touch`
// and `gptoss bench`.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace gptoss::cli {

/// Resident and peak resident memory of this process, bytes (Linux).
struct ProcessMemory {
  std::int64_t rss = 0, peak = 0;
};

inline ProcessMemory process_memory() {
  ProcessMemory m;
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    std::int64_t kb = 0;
    if (key == "VmRSS:" && status >> kb) m.rss = kb * 1024;
    else if (key == "VmHWM:" && status >> kb) m.peak = kb * 1024;
    status.ignore(1 << 20, '\n');
  }
  return m;
}

}  // namespace gptoss::cli
