// The gptoss command-line tool. Each group of subcommands lives in its own
// header and registers itself on the app; errors print one line to stderr
// and exit with status 1.
//
//   gptoss forward --model DIR (--tokens 1,2,3 | --tokens-file F.safetensors)
//                  [--out FILE.safetensors] [--prefill N] [--reference F]
//                  [--dump DIR [--dump-what residual,router,attention]
//                   [--dump-layers 0,3] [--dump-heads 1,5]]
//   gptoss info    --model DIR
//   gptoss compare A.safetensors B.safetensors [--tensor NAME] [--tolerance R]
//   gptoss quantize --model DIR --out DIR2 --format mxfp4|nvfp4 [--modules experts|all]
//                   [--scale ocp|search] [--reference-tokens T] [--report FILE.json]
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <string>

#include "bench_command.hpp"
#include "model_commands.hpp"
#include "quantize_command.hpp"
#include "text_commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"gptoss: run and inspect gpt-oss models"};
  app.require_subcommand(1);
  std::function<int()> action;
  gptoss::cli::add_model_commands(app, action);
  gptoss::cli::add_text_commands(app, action);
  gptoss::cli::add_bench_command(app, action);
  gptoss::cli::add_quantize_command(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    // The kernels read GPTOSS_MATMUL_PRECISION once and fall back to fp32
    // on a name they do not know: say so instead of measuring fp32.
    if (const char* p = std::getenv("GPTOSS_MATMUL_PRECISION");
        p != nullptr && !gptoss::matmul_precision_from_name(p)) {
      throw gptoss::RangeError(std::string("GPTOSS_MATMUL_PRECISION must be fp32, bf16x2, bf16 or int8, got '") + p +
                               "'");
    }
    // Likewise GPTOSS_HUGE_PAGES, which the allocator reads as a hint.
    if (const char* h = std::getenv("GPTOSS_HUGE_PAGES"); !gptoss::huge_pages_setting_from_name(h)) {
      throw gptoss::RangeError(std::string("GPTOSS_HUGE_PAGES must be 1, on, 0 or off, got '") + h + "'");
    }
    return action ? action() : 0;
  } catch (const std::exception& e) {
    std::cerr << "gptoss: error: " << e.what() << "\n";
    return 1;
  }
}
