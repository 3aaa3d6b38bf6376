// Byte-pair encoding of one pre-token: the vocabulary (token bytes <-> id),
// the ranked merges, and the merge loop. Words are merged like HF
// `tokenizers`: always the pair of lowest merge rank, leftmost first; with
// `ignore_merges` a word that is itself a vocabulary entry is emitted as is.
//
// Short words use a rank array scanned for its minimum (cache friendly);
// long ones (runs of spaces, long identifiers) a heap over a linked list, so
// a word of n bytes costs O(n log n), never O(n^2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <limits>
#include <queue>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gptoss::text {

namespace detail {

/// splitmix64's finalizer: a cheap, well-mixed 64-bit hash step.
inline std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

/// Hash of a byte string, eight bytes at a time.
inline std::uint64_t hash_bytes(std::string_view s) {
  std::uint64_t h = 0x9e3779b97f4a7c15ull ^ s.size();
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, s.data() + i, 8);
    h = mix64(h ^ word);
  }
  if (i < s.size()) {
    std::uint64_t tail = 0;
    std::memcpy(&tail, s.data() + i, s.size() - i);
    h = mix64(h ^ tail ^ (static_cast<std::uint64_t>(s.size() - i) << 59));
  }
  return h;
}

inline std::size_t table_capacity_for(std::size_t count) {
  std::size_t capacity = 16;
  while (capacity < count * 2) capacity *= 2;  // load factor <= 1/2
  return capacity;
}

}  // namespace detail

/// Open-addressing map from token bytes to id. Keys of up to 20 bytes (all
/// but a few tokens) are stored in the slot itself, so a lookup touches one
/// cache line; longer keys are compared against the vocabulary strings,
/// found through their vector's element buffer (which stays put when that
/// vector is moved).
class TokenIndex {
 public:
  /// Indexes every non-empty entry of `tokens` (id = position).
  void build(const std::vector<std::string>& tokens) {
    tokens_ = tokens.data();
    slots_.assign(detail::table_capacity_for(tokens.size()), Slot{});
    mask_ = slots_.size() - 1;
    for (std::size_t id = 0; id < tokens.size(); ++id) {
      if (!tokens[id].empty()) insert(static_cast<std::int32_t>(id));
    }
  }

  /// The id whose bytes equal `bytes`, or -1.
  std::int32_t find(std::string_view bytes) const {
    if (slots_.empty()) return -1;
    const std::uint64_t h = detail::hash_bytes(bytes);
    const auto tag = static_cast<std::uint32_t>(h >> 32);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id < 0) return -1;
      if (slot.tag == tag && slot.length == bytes.size() && same_key(slot, bytes)) return slot.id;
    }
  }

 private:
  static constexpr std::size_t kInline = 20;
  struct Slot {
    std::uint32_t tag = 0;
    std::int32_t id = -1;
    std::uint32_t length = 0;
    char bytes[kInline] = {};
  };
  static_assert(sizeof(Slot) == 32);

  bool same_key(const Slot& slot, std::string_view bytes) const {
    if (bytes.size() <= kInline) return std::memcmp(slot.bytes, bytes.data(), bytes.size()) == 0;
    return tokens_[slot.id] == bytes;
  }

  void insert(std::int32_t id) {
    const std::string& key = tokens_[id];
    const std::uint64_t h = detail::hash_bytes(key);
    const auto tag = static_cast<std::uint32_t>(h >> 32);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.id < 0) {
        slot.tag = tag;
        slot.id = id;
        slot.length = static_cast<std::uint32_t>(key.size());
        std::memcpy(slot.bytes, key.data(), std::min(key.size(), kInline));
        return;
      }
      // A duplicate key keeps its first (lowest) id.
      if (slot.tag == tag && slot.length == key.size() && same_key(slot, key)) return;
    }
  }

  const std::string* tokens_ = nullptr;
  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
};

/// A merge rule: the pair (left, right) becomes `merged`, with priority
/// `rank` (lower merges first).
struct MergeRule {
  std::int32_t rank = -1;
  std::int32_t merged = -1;
};

/// Open-addressing map from an id pair to its merge rule.
class MergeTable {
 public:
  void reserve(std::size_t count) {
    slots_.assign(detail::table_capacity_for(count), Slot{});
    mask_ = slots_.size() - 1;
    size_ = 0;
  }

  /// Adds a rule; a pair already present keeps its first (lowest) rank, as
  /// HF does. Returns false for such a duplicate.
  bool add(std::int32_t left, std::int32_t right, MergeRule rule) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    const std::uint64_t key = pack(left, right);
    for (std::size_t i = detail::mix64(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].rule.rank < 0) {
        slots_[i] = {key, rule};
        ++size_;
        return true;
      }
      if (slots_[i].key == key) return false;
    }
  }

  /// The rule for (left, right); rank -1 when there is none.
  MergeRule find(std::int32_t left, std::int32_t right) const {
    const std::uint64_t key = pack(left, right);
    for (std::size_t i = detail::mix64(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.rule.rank < 0) return {};
      if (slot.key == key) return slot.rule;
    }
  }

  std::size_t size() const noexcept { return size_; }

 private:
  struct Slot {
    std::uint64_t key = 0;
    MergeRule rule;
  };
  static std::uint64_t pack(std::int32_t left, std::int32_t right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 16 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    size_ = 0;
    for (const Slot& s : old) {
      if (s.rule.rank >= 0) add(static_cast<std::int32_t>(s.key >> 32), static_cast<std::int32_t>(s.key & 0xffffffffu), s.rule);
    }
  }

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

/// The BPE model: vocabulary, merges and the per-word merge loop.
class BpeModel {
 public:
  /// `tokens[id]` holds the bytes of token id ("" where the id is unused).
  /// `byte_ids[b]` must be the id of the one-byte token b.
  BpeModel() = default;
  BpeModel(std::vector<std::string> tokens, bool ignore_merges)
      : tokens_(std::move(tokens)), ignore_merges_(ignore_merges) {
    index_.build(tokens_);
    for (int b = 0; b < 256; ++b) {
      const char c = static_cast<char>(b);
      byte_ids_[static_cast<std::size_t>(b)] = index_.find(std::string_view(&c, 1));
    }
  }
  // The index points into tokens_'s buffer: moving keeps it, copying would not.
  BpeModel(BpeModel&&) noexcept = default;
  BpeModel& operator=(BpeModel&&) noexcept = default;
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  MergeTable& merges() noexcept { return merges_; }
  const MergeTable& merges() const noexcept { return merges_; }
  const std::vector<std::string>& tokens() const noexcept { return tokens_; }
  std::int32_t find(std::string_view bytes) const { return index_.find(bytes); }
  /// The id of the one-byte token b, or -1.
  std::int32_t byte_id(unsigned char b) const { return byte_ids_[b]; }

  /// Appends the ids of one pre-token. Requires every byte of `word` to
  /// have a one-byte token (checked when the tokenizer is loaded).
  void encode_word(std::string_view word, std::vector<std::int32_t>& out) const {
    if (word.empty()) return;
    if (ignore_merges_ || word.size() == 1) {
      if (const std::int32_t id = index_.find(word); id >= 0) {
        out.push_back(id);
        return;
      }
    }
    if (word.size() <= kShortWord) {
      merge_short(word, out);
    } else {
      merge_long(word, out);
    }
  }

 private:
  static constexpr std::size_t kShortWord = 128;
  static constexpr std::int32_t kNoMerge = std::numeric_limits<std::int32_t>::max();

  /// Symbols in an array; ranks[i] is the rank of pair (i, i + 1).
  void merge_short(std::string_view word, std::vector<std::int32_t>& out) const {
    std::int32_t ids[kShortWord];
    std::int32_t ranks[kShortWord];
    std::int32_t merged[kShortWord];
    std::size_t n = word.size();
    for (std::size_t i = 0; i < n; ++i) ids[i] = byte_ids_[static_cast<unsigned char>(word[i])];
    const auto rate = [&](std::size_t i) {
      const MergeRule rule = merges_.find(ids[i], ids[i + 1]);
      ranks[i] = rule.rank < 0 ? kNoMerge : rule.rank;
      merged[i] = rule.merged;
    };
    for (std::size_t i = 0; i + 1 < n; ++i) rate(i);
    while (n > 1) {
      std::size_t best = 0;
      for (std::size_t i = 1; i + 1 < n; ++i) {
        if (ranks[i] < ranks[best]) best = i;
      }
      if (ranks[best] == kNoMerge) break;
      ids[best] = merged[best];
      // Remove symbol best + 1 and the pair it started.
      for (std::size_t i = best + 1; i + 1 < n; ++i) {
        ids[i] = ids[i + 1];
        ranks[i] = ranks[i + 1];
        merged[i] = merged[i + 1];
      }
      --n;
      if (best + 1 < n) rate(best);
      if (best > 0) rate(best - 1);
    }
    out.insert(out.end(), ids, ids + n);
  }

  /// Symbols in a linked list, candidate merges in a min-heap ordered by
  /// (rank, position); stale entries are skipped when popped.
  void merge_long(std::string_view word, std::vector<std::int32_t>& out) const {
    const std::size_t n = word.size();
    struct Symbol {
      std::int32_t id;
      std::int32_t prev, next;  // -1 at the ends
      bool alive;
    };
    struct Candidate {
      std::int32_t rank, pos, left_id, right_id;
      bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::vector<Symbol> symbols(n);
    for (std::size_t i = 0; i < n; ++i) {
      symbols[i] = {byte_ids_[static_cast<unsigned char>(word[i])], static_cast<std::int32_t>(i) - 1,
                    i + 1 < n ? static_cast<std::int32_t>(i + 1) : -1, true};
    }
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
    const auto push = [&](std::int32_t pos) {
      const std::int32_t next = symbols[static_cast<std::size_t>(pos)].next;
      if (next < 0) return;
      const std::int32_t a = symbols[static_cast<std::size_t>(pos)].id, b = symbols[static_cast<std::size_t>(next)].id;
      const MergeRule rule = merges_.find(a, b);
      if (rule.rank >= 0) heap.push({rule.rank, pos, a, b});
    };
    for (std::size_t i = 0; i + 1 < n; ++i) push(static_cast<std::int32_t>(i));
    while (!heap.empty()) {
      const Candidate c = heap.top();
      heap.pop();
      Symbol& left = symbols[static_cast<std::size_t>(c.pos)];
      if (!left.alive || left.id != c.left_id || left.next < 0) continue;
      Symbol& right = symbols[static_cast<std::size_t>(left.next)];
      if (right.id != c.right_id) continue;
      left.id = merges_.find(c.left_id, c.right_id).merged;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = c.pos;
      if (left.prev >= 0) push(left.prev);
      push(c.pos);
    }
    for (std::int32_t i = 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) out.push_back(symbols[static_cast<std::size_t>(i)].id);
  }

  std::vector<std::string> tokens_;
  TokenIndex index_;
  MergeTable merges_;
  std::int32_t byte_ids_[256] = {};
  bool ignore_merges_ = false;
};

}  // namespace gptoss::text
