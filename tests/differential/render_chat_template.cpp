// Test driver: renders apply_chat_template arguments with the library's
// `render_chat_template`, for tests/differential/chat_template_differential.py.
//
// Usage: gptoss_render_chat_template KWARGS.jsonl YYYY-MM-DD
// Reads one JSON object of arguments per line and writes one JSON line per
// input: {"text": "..."} or {"error": "..."} (a FormatError or RangeError).
#include <fstream>
#include <iostream>
#include <string>

#include "gptoss/text/harmony.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: gptoss_render_chat_template KWARGS.jsonl YYYY-MM-DD\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::cerr << "gptoss_render_chat_template: cannot open " << argv[1] << "\n";
    return 2;
  }
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::ordered_json out;
    try {
      const auto kwargs = nlohmann::ordered_json::parse(line);
      out["text"] = gptoss::text::harmony::render_chat_template(kwargs, argv[2]).text();
    } catch (const gptoss::Error& e) {
      out["error"] = e.what();
    }
    std::cout << out.dump() << "\n";
  }
  return 0;
}
