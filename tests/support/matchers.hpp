// Catch2 matcher for exception messages: MessageHas({"tensor 'x'", "shape"})
// passes when what() contains every fragment.
#pragma once

#include <exception>
#include <initializer_list>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace gptoss::test {

class MessageHas : public Catch::MatcherBase<std::exception> {
 public:
  MessageHas(std::initializer_list<std::string> fragments) : fragments_(fragments) {}
  explicit MessageHas(std::vector<std::string> fragments) : fragments_(std::move(fragments)) {}
  bool match(const std::exception& e) const override {
    const std::string what = e.what();
    for (const auto& f : fragments_) {
      if (what.find(f) == std::string::npos) return false;
    }
    return true;
  }
  std::string describe() const override {
    std::string s = "message contains";
    for (const auto& f : fragments_) s += " \"" + f + "\"";
    return s;
  }

 private:
  std::vector<std::string> fragments_;
};

}  // namespace gptoss::test
