// The harmony format: every conversation of tests/data/tokenizer/harmony_cases.jsonl
// rendered to the reference text and ids (openai-harmony's renderer and the
// HF chat template), the official completion token streams parsed into
// messages, parse(render(x)) == x on fixed and random conversations, and
// malformed token streams repaired without throwing.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "gptoss/text/harmony.hpp"
#include "support/matchers.hpp"
#include "support/test_data.hpp"

using namespace gptoss;
using namespace gptoss::text::harmony;
using gptoss::test::MessageHas;
using gptoss::text::ordered_json;
using gptoss::text::SpecialTokens;
using gptoss::text::Tokenizer;

namespace {

std::filesystem::path tokenizer_dir() { return test::data_dir() / "tokenizer"; }

const Tokenizer& gpt_oss_tokenizer() {
  static const Tokenizer tokenizer = Tokenizer::from_file(tokenizer_dir() / "tokenizer.json");
  return tokenizer;
}

std::vector<ordered_json> harmony_cases() {
  std::ifstream in(tokenizer_dir() / "harmony_cases.jsonl");
  REQUIRE(in);
  std::vector<ordered_json> rows;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(ordered_json::parse(line));
  }
  return rows;
}

/// The function tools of openai/harmony's test_render_functions_with_parameters.
std::vector<ToolDescription> reference_function_tools() {
  return {
      {"get_location", "Gets the location of the user.", std::nullopt},
      {"get_current_weather", "Gets the current weather in the provided location.", ordered_json::parse(R"({
        "type": "object",
        "properties": {
          "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
          "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}
        },
        "required": ["location"]})")},
      {"get_multiple_weathers", "Gets the current weather in the provided list of locations.", ordered_json::parse(R"({
        "type": "object",
        "properties": {
          "locations": {"type": "array", "items": {"type": "string"},
                        "description": "List of city and state, e.g. [\"San Francisco, CA\", \"New York, NY\"]"},
          "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}
        },
        "required": ["locations"]})")},
      {"kitchensink", "A function with various complex schemas.", ordered_json::parse(R"({
        "description": "params object",
        "type": "object",
        "properties": {
          "string": {"type": "string", "title": "STRING", "description": "A string", "examples": ["hello", "world"]},
          "string_nullable": {"type": "string", "nullable": true, "description": "A nullable string", "default": "the default"},
          "string_enum": {"type": "string", "enum": ["a", "b", "c"]},
          "oneof_string_or_number": {
            "oneOf": [{"type": "string", "default": "default_string_in_oneof"},
                      {"type": "number", "description": "numbers can happen too"}],
            "description": "a oneof",
            "default": 20}
        }})")},
  };
}

/// A message of harmony_cases.jsonl's transcription of openai/harmony's tests.
Message message_from_case(const ordered_json& m) {
  const std::string role = m.at("role").get<std::string>();
  if (role == "system") {
    SystemContent sys;
    const ordered_json& c = m.at("system_content");
    if (c.contains("model_identity")) sys.with_model_identity(c["model_identity"].get<std::string>());
    if (c.contains("reasoning_effort")) sys.with_reasoning(effort_from_name(c["reasoning_effort"].get<std::string>()));
    if (c.contains("conversation_start_date")) sys.with_date(c["conversation_start_date"].get<std::string>());
    if (c.contains("knowledge_cutoff")) sys.with_knowledge_cutoff(c["knowledge_cutoff"].get<std::string>());
    if (c.contains("required_channels")) sys.with_channels(c["required_channels"].get<std::vector<std::string>>());
    if (c.value("browser_tool", false)) sys.with_browser_tool();
    if (c.value("python_tool", false)) sys.with_python_tool();
    return Message::system(sys);
  }
  if (role == "developer") {
    DeveloperContent dev;
    const ordered_json& c = m.at("developer_content");
    if (c.contains("instructions")) dev.with_instructions(c["instructions"].get<std::string>());
    if (c.contains("function_tools")) {
      const auto names = c["function_tools"].get<std::vector<std::string>>();
      std::vector<ToolDescription> tools;
      for (const auto& t : reference_function_tools()) {
        if (std::find(names.begin(), names.end(), t.name) != names.end()) tools.push_back(t);
      }
      REQUIRE(tools.size() == names.size());
      dev.with_function_tools(tools);
    }
    return Message::developer(dev);
  }
  Message message;
  message.role = *role_from_name(role);
  message.content = m.at("content").get<std::string>();
  if (m.contains("name")) message.name = m["name"].get<std::string>();
  if (m.contains("channel")) message.channel = m["channel"].get<std::string>();
  if (m.contains("recipient")) message.recipient = m["recipient"].get<std::string>();
  if (m.contains("content_type")) message.content_type = m["content_type"].get<std::string>();
  return message;
}

std::string describe(const Message& m) {
  std::string s = std::string(role_name(m.role));
  if (m.name) s += " name=" + *m.name;
  if (m.recipient) s += " to=" + *m.recipient;
  if (m.channel) s += " channel=" + *m.channel;
  if (m.content_type) s += " type=" + *m.content_type;
  return s + ": " + nlohmann::json(m.text()).dump();
}

std::string describe(const std::vector<Message>& messages) {
  std::string s;
  for (const auto& m : messages) s += describe(m) + "\n";
  return s;
}

std::vector<std::int32_t> ids_of(const ordered_json& row) { return row.at("ids").get<std::vector<std::int32_t>>(); }

}  // namespace

TEST_CASE("Harmony conversations render to openai-harmony's text and ids", "[harmony]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  int rendered = 0;
  for (const auto& row : harmony_cases()) {
    const std::string name = row.at("name").get<std::string>();
    if (!name.starts_with("harmony_") || name.starts_with("harmony_completion_")) continue;
    INFO(name);
    std::vector<Message> messages;
    for (const auto& m : row.at("messages")) messages.push_back(message_from_case(m));
    const std::string mode = row.at("mode").get<std::string>();
    RenderOptions options;
    options.auto_drop_analysis = mode.find("auto_drop_analysis=false") == std::string::npos;
    const Rendered r = mode.starts_with("render_conversation_for_completion")
                           ? render_for_completion(messages, Role::assistant, options)
                           : render_conversation(messages, options);
    CHECK(r.text() == row.at("text").get<std::string>());
    CHECK(r.tokens(tok) == ids_of(row));
    ++rendered;
  }
  CHECK(rendered == 9);
}

TEST_CASE("The HF chat template's conversations render to its text and ids", "[harmony][hf]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  int rendered = 0;
  for (const auto& row : harmony_cases()) {
    const std::string name = row.at("name").get<std::string>();
    if (!name.starts_with("hf_template_")) continue;
    INFO(name);
    const Rendered r = render_chat_template(row.at("template_kwargs"), "2025-08-05");
    CHECK(r.text() == row.at("text").get<std::string>());
    CHECK(r.tokens(tok) == ids_of(row));
    ++rendered;
  }
  CHECK(rendered == 6);
}

TEST_CASE("Official completion streams parse into the reference messages", "[harmony][parse]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  for (const auto& row : harmony_cases()) {
    const std::string name = row.at("name").get<std::string>();
    if (!name.starts_with("harmony_completion_")) continue;
    INFO(name);
    const auto ids = ids_of(row);
    CHECK(tok.decode(ids) == row.at("text").get<std::string>());
    CHECK(tok.encode(row.at("text").get<std::string>()) == ids);
    const auto messages = parse_messages(tok, ids, Role::assistant);
    std::vector<Message> expected;
    if (name == "harmony_completion_simple_reasoning_response") {
      expected = {Message::assistant("User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer.", "analysis"),
                  Message::assistant("2 + 2 = 4.", "final")};
    } else {
      expected = {Message::assistant("User asks: \"What is the weather in Tokyo?\" We need to use lookup_weather tool.",
                                     "analysis"),
                  Message::assistant("{\"location\": \"Tokyo\"}", "analysis").with_recipient("lookup_weather").with_content_type("code")};
    }
    INFO("parsed:\n" << describe(messages));
    CHECK(messages == expected);
  }
}

TEST_CASE("Constrained tool calls parse and render back to the same tokens", "[harmony][parse]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  const Message expected = Message::assistant("{\"location\": \"Tokyo\"}", "commentary")
                               .with_recipient("functions.get_weather")
                               .with_content_type("<|constrain|>json");
  // openai/harmony's tests: the marker with and without a space, the channel before the recipient.
  for (const std::string text :
       {"<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{\"location\": \"Tokyo\"}<|call|>",
        "<|start|>assistant to=functions.get_weather<|channel|>commentary<|constrain|>json<|message|>{\"location\": \"Tokyo\"}<|call|>",
        "<|start|>assistant<|channel|>commentary to=functions.get_weather<|constrain|>json<|message|>{\"location\": \"Tokyo\"}<|call|>"}) {
    INFO(text);
    const auto tokens = tok.encode(text);
    const auto messages = parse_messages(tok, tokens);
    INFO("parsed:\n" << describe(messages));
    REQUIRE(messages.size() == 1);
    CHECK(messages[0] == expected);
  }
  const std::string canonical =
      "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{\"location\": \"Tokyo\"}<|call|>";
  const std::vector<Message> one{expected};
  CHECK(render_conversation(one).text() == canonical);
  CHECK(render_conversation(one).tokens(tok) == tok.encode(canonical));
  CHECK(render_message(expected).tokens(tok) == tok.encode(canonical));
}

TEST_CASE("Rendering for training ends a final answer with <|return|>", "[harmony]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  const std::vector<Message> answered{Message::user("hi"), Message::assistant("hello")};
  const auto training = render_for_training(answered).tokens(tok);
  const auto regular = render_conversation(answered).tokens(tok);
  REQUIRE(training.size() == regular.size());
  CHECK(std::equal(training.begin(), training.end() - 1, regular.begin()));
  CHECK(regular.back() == 200007);
  CHECK(training.back() == 200002);
  const std::vector<Message> asked{Message::user("hi")};
  CHECK(render_for_training(asked).tokens(tok) == render_conversation(asked).tokens(tok));
  // The completion prompt extends the conversation.
  const auto completion = render_for_completion(asked).tokens(tok);
  const auto conversation = render_conversation(asked).tokens(tok);
  CHECK(std::equal(conversation.begin(), conversation.end(), completion.begin()));
  CHECK(completion.back() == 173781);  // "assistant"
}

TEST_CASE("parse(render(messages)) returns the messages", "[harmony][parse]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  const std::vector<Message> conversation{
      Message::user("What is the weather in SF?"),
      Message::assistant("Need the weather tool.", "analysis"),
      Message::assistant("{\"location\": \"San Francisco\"}", "commentary")
          .with_recipient("functions.lookup_weather")
          .with_content_type("<|constrain|>json"),
      Message::tool("functions.lookup_weather", "{\"temperature\": 20}").with_channel("commentary").with_recipient("assistant"),
      Message::tool("browser.search", "no recipient, no channel"),
      Message::assistant("It is 20 degrees: sunny <|end|> and \"warm\".\n\n\u00e9\u4e2d\U0001F600"),
      Message::user(""),
  };
  RenderOptions keep_all;
  keep_all.auto_drop_analysis = false;
  const auto tokens = render_conversation(conversation, keep_all).tokens(tok);
  StreamParser parser(tok);
  for (const auto t : tokens) parser.process(t);
  parser.finish();
  INFO("parsed:\n" << describe(parser.messages()));
  CHECK(parser.messages() == conversation);
  CHECK(parser.problems().empty());
  // The special-token text inside the content stayed text.
  CHECK(std::count(tokens.begin(), tokens.end(), 200007) == static_cast<long>(conversation.size()) - 1);

  // System and developer messages come back as their rendered text.
  const std::vector<Message> with_system{Message::system(SystemContent{}.with_date("2025-01-01")),
                                         Message::developer(DeveloperContent{}.with_instructions("Be brief."))};
  const auto parsed = parse_messages(tok, render_conversation(with_system).tokens(tok));
  REQUIRE(parsed.size() == 2);
  CHECK(parsed[0].role == Role::system);
  CHECK(parsed[0].text().starts_with("You are ChatGPT"));
  CHECK(parsed[1].role == Role::developer);
  CHECK(parsed[1].text() == "# Instructions\n\nBe brief.");
}

TEST_CASE("parse(render(x)) == x for random conversations", "[harmony][parse][property]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  std::mt19937 rng(42);
  const std::vector<std::string> words = {"hello", " world", "<|end|>", "<|start|>", "<|call|>", "\n", "  ", "{\"a\": 1}",
                                          "\u00e9t\u00e9", "\u4e2d\u6587", "\U0001F600", "to=x", "<|channel|>", "'s"};
  const auto random_text = [&] {
    std::string s;
    for (int i = static_cast<int>(rng() % 8); i > 0; --i) s += words[rng() % words.size()];
    return s;
  };
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<Message> conversation;
    for (int i = static_cast<int>(1 + rng() % 6); i > 0; --i) {
      switch (rng() % 4) {
        case 0: conversation.push_back(Message::user(random_text())); break;
        case 1: conversation.push_back(Message::assistant(random_text(), rng() % 2 ? "final" : "analysis")); break;
        case 2:
          conversation.push_back(Message::assistant(random_text(), "commentary")
                                     .with_recipient("functions.f" + std::to_string(rng() % 10))
                                     .with_content_type(rng() % 2 ? "<|constrain|>json" : "code"));
          break;
        default: conversation.push_back(Message::tool("functions.f" + std::to_string(rng() % 10), random_text())); break;
      }
    }
    RenderOptions keep_all;
    keep_all.auto_drop_analysis = false;
    const auto parsed = parse_messages(tok, render_conversation(conversation, keep_all).tokens(tok));
    INFO("trial " << trial << "\nexpected:\n" << describe(conversation) << "parsed:\n" << describe(parsed));
    CHECK(parsed == conversation);
  }
}

TEST_CASE("Streaming gives each message's text once, in whole characters", "[harmony][parse]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  const std::string answer = "Snowman \u2603, face \U0001F600, CJK \u4e2d\u6587 and accents \u00e9\u00e8.";
  const std::vector<Message> reply{Message::assistant("thinking...", "analysis"), Message::assistant(answer)};
  RenderOptions keep_all;
  keep_all.auto_drop_analysis = false;
  auto tokens = render_conversation(reply, keep_all).tokens(tok);
  tokens.erase(tokens.begin(), tokens.begin() + 2);  // generation starts after "<|start|>assistant"
  StreamParser parser(tok, Role::assistant);
  std::string final_text, analysis_text;
  for (const auto t : tokens) {
    parser.process(t);
    const std::string& delta = parser.last_content_delta();
    if (delta.empty()) continue;
    CHECK(text::utf8::is_valid(delta));
    (parser.current().channel == "final" ? final_text : analysis_text) += delta;
  }
  CHECK(final_text == answer);
  CHECK(analysis_text == "thinking...");
  REQUIRE(parser.messages().size() == 2);
  CHECK(parser.end_tokens() == std::vector<std::int32_t>{200007, 200007});
}

TEST_CASE("Malformed token streams are repaired, never rejected", "[harmony][parse][errors]") {
  const Tokenizer& tok = gpt_oss_tokenizer();
  const auto parse = [&](const std::string& text, std::optional<Role> role = std::nullopt) {
    StreamParser parser(tok, role);
    for (const auto t : tok.encode(text)) parser.process(t);
    parser.finish();
    return parser;
  };
  SECTION("missing <|end|> before the next <|start|>") {
    const auto p = parse("<|start|>user<|message|>hi<|start|>assistant<|channel|>final<|message|>hello<|end|>");
    REQUIRE(p.messages().size() == 2);
    CHECK(p.messages()[0] == Message::user("hi"));
    CHECK(p.messages()[1] == Message::assistant("hello"));
    CHECK_FALSE(p.problems().empty());
  }
  SECTION("text outside messages is skipped") {
    const auto p = parse("junk before<|end|><|start|>user<|message|>hi<|end|>trailing");
    REQUIRE(p.messages().size() == 1);
    CHECK(p.messages()[0] == Message::user("hi"));
    CHECK(p.problems().size() >= 2);
  }
  SECTION("a stream cut off inside content keeps the message") {
    const auto p = parse("<|channel|>final<|message|>The answer is", Role::assistant);
    REQUIRE(p.messages().size() == 1);
    CHECK(p.messages()[0] == Message::assistant("The answer is"));
    CHECK(p.end_tokens() == std::vector<std::int32_t>{-1});
  }
  SECTION("a stream cut off inside a header or after a lone <|start|>") {
    CHECK(parse("<|start|>assistant<|channel|>fin").messages().empty());
    CHECK(parse("<|start|>").messages().empty());
    CHECK(parse("", Role::assistant).messages().empty());
  }
  SECTION("a header ended by a stop token keeps its words as content") {
    const auto p = parse("<|channel|>final hello there<|end|>", Role::assistant);
    REQUIRE(p.messages().size() == 1);
    CHECK(p.messages()[0].channel == "final");
    CHECK(p.messages()[0].text() == "hello there");
  }
  SECTION("unknown roles, missing channel names and extra header words") {
    const auto p = parse("<|start|>robot<|message|>beep<|end|><|start|>assistant<|channel|><|message|>x<|end|>"
                         "<|start|>assistant a b c<|message|>y<|end|>");
    REQUIRE(p.messages().size() == 3);
    CHECK(p.messages()[0].role == Role::tool);
    CHECK(p.messages()[0].name == "robot");
    CHECK_FALSE(p.messages()[1].channel.has_value());
    CHECK(p.messages()[2].text() == "y");
    CHECK(p.problems().size() >= 2);
  }
  SECTION("a second <|channel|> is a problem, and the role stays the role") {
    const auto p = parse("<|start|>assistant<|channel|>analysis<|channel|>final<|message|>x<|end|>");
    REQUIRE(p.messages().size() == 1);
    CHECK(p.messages()[0].role == Role::assistant);
    CHECK(p.messages()[0].channel == "analysis");
    CHECK_FALSE(p.messages()[0].name.has_value());
    REQUIRE(p.problems().size() == 1);
    CHECK(p.problems()[0].find("second <|channel|>") != std::string::npos);
  }
  SECTION("a preset role belongs to the first header only, even when that header is dropped") {
    const auto p = parse("<|start|>user<|message|>hi<|end|>", Role::assistant);
    REQUIRE(p.messages().size() == 1);
    CHECK(p.messages()[0] == Message::user("hi"));
    const auto q = parse("<|channel|>analysis<|start|>user<|message|>hi<|end|>", Role::assistant);
    REQUIRE(q.messages().size() == 1);
    CHECK(q.messages()[0] == Message::user("hi"));
  }
  SECTION("unknown and invalid token ids read as U+FFFD") {
    StreamParser parser(tok, Role::assistant);
    for (const std::int32_t t : {200005, 17196, 200008, 13225, 250000, -3, 201000, 200007}) parser.process(t);
    parser.finish();
    REQUIRE(parser.messages().size() == 1);
    CHECK(parser.messages()[0].text() == "Hello\uFFFD\uFFFD\uFFFD");
    CHECK(parser.problems().size() == 3);
  }
  SECTION("a space between <|constrain|> and its type keeps the recipient") {
    const auto p = parse("<|start|>assistant<|channel|>commentary to=functions.get_weather<|constrain|> json<|message|>{}<|call|>");
    REQUIRE(p.messages().size() == 1);
    CHECK(p.messages()[0].recipient == "functions.get_weather");
    CHECK(p.messages()[0].content_type == "<|constrain|>json");
    CHECK(p.problems().empty());
  }
  SECTION("a cut character is one U+FFFD, as in the reference parser's own test") {
    // Token 9552 is " \xF0\x9F", the first half of an emoji; 38207 is "\xE2\x82".
    for (const std::int32_t cut : {9552, 38207}) {
      StreamParser parser(tok, Role::assistant);
      for (const std::int32_t t : {200005, 17196, 200008}) parser.process(t);  // <|channel|>final<|message|>
      parser.process(cut);
      for (const std::int32_t t : tok.encode("Hi")) parser.process(t);
      parser.finish();  // no end token: kept as it is
      REQUIRE(parser.messages().size() == 1);
      CHECK(parser.messages()[0].text() == (cut == 9552 ? " \uFFFDHi" : "\uFFFDHi"));
    }
    // Each maximal malformed part is one U+FFFD, as Python's errors="replace" has it.
    CHECK(text::utf8::lossy("\xF0\x9F\x98") == "\uFFFD");
    CHECK(text::utf8::lossy("\xE0\x80x") == "\uFFFD\uFFFDx");            // E0 needs A0..BF next
    CHECK(text::utf8::lossy("\xED\xA0\x80") == "\uFFFD\uFFFD\uFFFD");   // a surrogate
    CHECK(text::utf8::lossy("\xF4\x90\x80\x80") == "\uFFFD\uFFFD\uFFFD\uFFFD");  // above U+10FFFF
    CHECK(text::utf8::lossy("\xC0\xAF\x80\xFF") == "\uFFFD\uFFFD\uFFFD\uFFFD");
    CHECK(text::utf8::lossy("a\xF1\x80\x80z\xC3\xA9") == "a\uFFFDz\xC3\xA9");
  }
  SECTION("random token soup") {
    std::mt19937 rng(3);
    const std::vector<std::int32_t> specials{200002, 200003, 200005, 200006, 200007, 200008, 200012};
    for (int trial = 0; trial < 200; ++trial) {
      StreamParser parser(tok, trial % 2 ? std::optional<Role>(Role::assistant) : std::nullopt);
      for (int i = 0; i < 60; ++i) {
        const auto r = rng() % 10;
        parser.process(r < 4 ? specials[rng() % specials.size()] : r < 9 ? static_cast<std::int32_t>(rng() % 200019)
                                                                         : static_cast<std::int32_t>(rng()) - 5);
      }
      CHECK_NOTHROW(parser.finish());
      for (const auto& m : parser.messages()) CHECK(text::utf8::is_valid(m.text()));
    }
  }
}

TEST_CASE("Invalid conversations and arguments are rejected naming the fault", "[harmony][errors]") {
  Message nameless_tool;
  nameless_tool.role = Role::tool;
  CHECK_THROWS_MATCHES(render_message(nameless_tool), RangeError, MessageHas({"tool message", "name"}));
  Message misplaced = Message::user("");
  misplaced.content = SystemContent{};
  CHECK_THROWS_MATCHES(render_message(misplaced), RangeError, MessageHas({"system content"}));
  CHECK_THROWS_MATCHES(effort_from_name("extreme"), RangeError, MessageHas({"'extreme'"}));
  const auto kwargs = ordered_json::parse(R"({"messages": [{"role": "tool", "content": "20 degrees"}]})");
  CHECK_THROWS_MATCHES(from_chat_template_kwargs(kwargs, "2025-08-05"), FormatError,
                       MessageHas({"messages[0]", "no assistant tool call"}));
  CHECK_THROWS_MATCHES(from_chat_template_kwargs(ordered_json::parse("{}")), FormatError, MessageHas({"\"messages\""}));
}

TEST_CASE("Header fields holding whitespace are refused: they would readdress the message", "[harmony][errors]") {
  Message call = Message::assistant("{}", "commentary");
  call.recipient = "functions.f to=python";
  CHECK_THROWS_MATCHES(render_message(call), RangeError, MessageHas({"recipient", "'functions.f to=python'"}));
  call.recipient = "functions.f";
  CHECK_NOTHROW(render_message(call));
  call.channel = "final answer";
  CHECK_THROWS_MATCHES(render_message(call), RangeError, MessageHas({"channel", "'final answer'"}));
  Message tool = Message::tool("functions.get weather", "20 degrees");
  CHECK_THROWS_MATCHES(render_message(tool), RangeError, MessageHas({"name", "'functions.get weather'"}));
  Message typed = Message::assistant("{}", "commentary");
  typed.content_type = "json\nx";
  CHECK_THROWS_MATCHES(render_message(typed), RangeError, MessageHas({"content type"}));
  // Through the chat template arguments, as a tool name.
  const auto kwargs = ordered_json::parse(
      R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [{"function": {"name": "f to=python", "arguments": {}}}]}]})");
  CHECK_THROWS_MATCHES(render_chat_template(kwargs, "2025-08-05"), RangeError, MessageHas({"'functions.f to=python'"}));
}

TEST_CASE("Chat template arguments of the wrong JSON type are FormatErrors naming the field", "[harmony][errors]") {
  const auto rejects = [](const char* text, std::initializer_list<std::string> fragments) {
    CHECK_THROWS_MATCHES(from_chat_template_kwargs(ordered_json::parse(text), "2025-08-05"), FormatError,
                         MessageHas(fragments));
  };
  const char* user = R"("messages": [{"role": "user", "content": "hi"}])";
  rejects((std::string("{") + user + R"(, "add_generation_prompt": "yes"})").c_str(),
          {"add_generation_prompt", "string", "not a bool"});
  rejects((std::string("{") + user + R"(, "model_identity": 7})").c_str(), {"model_identity", "number", "not a string"});
  rejects((std::string("{") + user + R"(, "reasoning_effort": ["low"]})").c_str(), {"reasoning_effort", "array"});
  rejects(R"({"messages": [{"role": 5}]})", {"messages[0]", "\"role\"", "number"});
  rejects(R"({"messages": [{"role": "user", "content": "a"}, {"role": true}]})", {"messages[1]", "\"role\"", "boolean"});
  rejects((std::string("{") + user + R"(, "tools": [5]})").c_str(), {"tools[0]", "number", "not an object"});
  rejects((std::string("{") + user + R"(, "tools": [{"function": "f"}]})").c_str(), {"tools[0].function", "string"});
  rejects((std::string("{") + user + R"(, "tools": [{"name": 1}]})").c_str(), {"tools[0]", "\"name\"", "number"});
  rejects(R"({"messages": [{"role": "assistant", "tool_calls": ["x"]}]})", {"messages[0].tool_calls[0]", "not an object"});
  rejects(R"({"messages": [{"role": "assistant", "tool_calls": [{"name": "f", "content_type": 3}]}]})",
          {"messages[0].tool_calls[0]", "content_type", "number"});
  // Nesting deep enough to exhaust the stack of a recursive writer is refused up front.
  std::string deep = R"({"messages": [{"role": "assistant", "tool_calls": [{"name": "f", "arguments": )";
  deep += std::string(100000, '[') + std::string(100000, ']') + "}]}]}";
  rejects(deep.c_str(), {"chat template arguments", "nested deeper than 256"});
  CHECK_THROWS_MATCHES(text::python_json(ordered_json::parse(std::string(300, '[') + std::string(300, ']'))),
                       FormatError, MessageHas({"python_json", "nested deeper"}));
  // Within the limit, the writers still run.
  CHECK(text::python_json(ordered_json::parse(std::string(256, '[') + std::string(256, ']'))).size() == 512);
  const auto ok = from_chat_template_kwargs(
      ordered_json::parse(R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"a": [1, {"b": null}]}}}]}]})"),
      "2025-08-05");
  CHECK(ok.messages.back().text() == R"({"a": [1, {"b": null}]})");
}

TEST_CASE("The HF style differs from harmony in exactly its documented ways", "[harmony][hf]") {
  RenderOptions hf;
  hf.style = TemplateStyle::hf_chat_template;
  hf.today = "2025-08-05";
  const std::vector<Message> chat{Message::system(SystemContent{}),
                                  Message::developer(DeveloperContent{}.with_instructions("Be brief.")),
                                  Message::user("Weather?"),
                                  Message::assistant("Call the tool.", "analysis"),
                                  Message::assistant("{}", "commentary").with_recipient("functions.w").with_content_type("<|constrain|>json"),
                                  Message::tool("functions.w", "{\"t\": 1}"),
                                  Message::assistant("Look it up.", "analysis"),
                                  Message::assistant("Sunny.")};
  RenderOptions harmony_keep_all;
  harmony_keep_all.auto_drop_analysis = false;
  const std::string harmony_text = render_conversation(chat, harmony_keep_all).text();
  const std::string hf_text = render_conversation(chat, hf).text();
  CHECK(harmony_text.find("Current date") == std::string::npos);                            // 1
  CHECK(hf_text.find("Current date: 2025-08-05") != std::string::npos);
  CHECK(hf_text.find("Be brief.\n\n<|end|>") != std::string::npos);                         // 2
  CHECK(harmony_text.find("Be brief.<|end|>") != std::string::npos);
  CHECK(hf_text.find("commentary json<|message|>") != std::string::npos);                   // 3
  CHECK(harmony_text.find("commentary <|constrain|>json<|message|>") != std::string::npos);
  CHECK(hf_text.find("functions.w to=assistant<|channel|>commentary<|message|>\"{\\\"t\\\": 1}\"") != std::string::npos);  // 4
  CHECK(harmony_text.find("<|start|>functions.w<|message|>{\"t\": 1}<|end|>") != std::string::npos);
  CHECK(hf_text.find("Call the tool.") == std::string::npos);                                 // 5
  CHECK(hf_text.find("Look it up.") == std::string::npos);
  CHECK(harmony_text.find("Call the tool.") != std::string::npos);
  CHECK(harmony_text.find("Look it up.") != std::string::npos);
}

TEST_CASE("Chat template arguments the template refuses are FormatErrors", "[harmony][hf][errors]") {
  const auto rejects = [](const std::string& messages, std::initializer_list<std::string> fragments) {
    CHECK_THROWS_MATCHES(render_chat_template(ordered_json::parse(R"({"messages": [)" + messages + "]}"), "2025-08-05"),
                         FormatError, MessageHas(fragments));
  };
  const std::string user = R"({"role": "user", "content": "hi"}, )";
  // Channel tags inside the text (the template's raise_exception).
  rejects(user + R"({"role": "assistant", "content": "a<|channel|>final<|message|>b"})",
          {"messages[1]", "\"content\"", "<|channel|>final<|message|>"});
  rejects(user + R"({"role": "assistant", "content": "ok", "thinking": "<|channel|>analysis<|message|>x"})",
          {"messages[1]", "\"thinking\"", "<|channel|>analysis<|message|>"});
  // Values the template cannot concatenate or index.
  rejects(user + R"({"role": "assistant", "tool_calls": []})", {"messages[1]", "tool_calls", "non-empty list"});
  rejects(user + R"({"role": "assistant", "tool_calls": null})", {"messages[1]", "tool_calls"});
  rejects(user + R"({"role": "assistant", "content": null, "tool_calls": [{"name": "f"}]})",
          {"messages[1]", "\"content\" is null"});
  rejects(user + R"({"role": "assistant", "content": "a", "thinking": null})", {"messages[1]", "\"thinking\" is null"});
  rejects(user + R"({"role": "assistant"})", {"messages[1]", "no \"content\""});
  rejects(R"({"role": "user"})", {"messages[0]", "no \"content\""});
  rejects(R"({"role": "user", "content": ["part"]})", {"messages[0]", "an array, not a string"});
  // Non-string values the library refuses although the template writes
  // them: a system message's content (as Python's repr) and a tool result's
  // (as JSON; a Message's text would be JSON-quoted again).
  rejects(R"({"role": "system", "content": {"text": "x"}}, )" + user.substr(0, user.size() - 2),
          {"messages[0]", "an object, not a string"});
  rejects(user + R"({"role": "assistant", "tool_calls": [{"name": "f"}]}, {"role": "tool", "content": {"r": 1}})",
          {"messages[2]", "an object, not a string"});
  // An empty or null system message is no developer message, as in the template.
  for (const char* system : {R"({"role": "system", "content": null})", R"({"role": "system", "content": ""})"}) {
    const std::string text =
        render_chat_template(ordered_json::parse(std::string(R"({"messages": [)") + system + ", " +
                                                 R"({"role": "user", "content": "hi"}]})"),
                             "2025-08-05")
            .text();
    CHECK(text.find("<|start|>developer") == std::string::npos);
  }
}

TEST_CASE("The HF template keeps only the trained answer's own thinking", "[harmony][hf]") {
  // A tool call's thinking is dropped once any final answer follows, even the
  // trained one; the trained answer's thinking is written even when empty.
  const auto render = [](const char* json) { return render_chat_template(ordered_json::parse(json), "2025-08-05").text(); };
  const std::string trained = render(R"({"messages": [
      {"role": "user", "content": "Weather?"},
      {"role": "assistant", "thinking": "CALL-THOUGHT", "tool_calls": [{"name": "w", "arguments": {}}]},
      {"role": "tool", "content": "sunny"},
      {"role": "assistant", "thinking": "ANSWER-THOUGHT", "content": "Sunny."}],
    "add_generation_prompt": false})");
  CHECK(trained.find("CALL-THOUGHT") == std::string::npos);
  CHECK(trained.find("<|channel|>analysis<|message|>ANSWER-THOUGHT<|end|><|start|>assistant<|channel|>final<|message|>Sunny.<|return|>") !=
        std::string::npos);
  const std::string pending = render(R"({"messages": [
      {"role": "user", "content": "Weather?"},
      {"role": "assistant", "thinking": "CALL-THOUGHT", "tool_calls": [{"name": "w", "arguments": {}}]},
      {"role": "tool", "content": "sunny"}],
    "add_generation_prompt": true})");
  CHECK(pending.find("<|channel|>analysis<|message|>CALL-THOUGHT<|end|><|start|>assistant to=functions.w") != std::string::npos);
  // A role the template skips, last, makes the answer before it an ordinary one.
  const std::string skipped_last = render(R"({"messages": [
      {"role": "user", "content": "Hi"}, {"role": "assistant", "thinking": "T", "content": "A"},
      {"role": "system", "content": "ignored"}], "add_generation_prompt": false})");
  CHECK(skipped_last.find("<|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>final<|message|>A<|end|>") !=
        std::string::npos);
  CHECK(skipped_last.find("T<|end|>") == std::string::npos);
  CHECK(skipped_last.find("<|return|>") == std::string::npos);
  const std::string empty_thinking = render(R"({"messages": [
      {"role": "user", "content": "Hi"}, {"role": "assistant", "thinking": "", "content": "Hello."}],
    "add_generation_prompt": false})");
  CHECK(empty_thinking.find("<|start|>assistant<|channel|>analysis<|message|><|end|><|start|>assistant<|channel|>final") !=
        std::string::npos);
}

TEST_CASE("The HF template's any[] threshold counts characters, not bytes", "[harmony][hf]") {
  // inner_type|length > 50 writes any[]. The items' type is "number// ",
  // the description, " | \n" and "boolean": 20 characters and the
  // description's. With 30 two-byte characters it is 50 characters (80
  // bytes) and still written; with 31 it is any[] (checked with Jinja2).
  const auto array_type = [](const std::string& description) {
    ordered_json kwargs = ordered_json::parse(R"({"messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {
          "type": "object", "properties": {"xs": {"type": "array", "items": {"oneOf": [
            {"type": "number"}, {"type": "boolean"}]}}}}}}]})");
    kwargs["tools"][0]["function"]["parameters"]["properties"]["xs"]["items"]["oneOf"][0]["description"] = description;
    return render_chat_template(kwargs, "2025-08-05").text();
  };
  std::string short_text, long_text;
  for (int i = 0; i < 30; ++i) short_text += "\xc3\xa9";  // é
  long_text = short_text + "\xc3\xa9";
  CHECK(array_type(short_text).find("xs?: number// " + short_text + " | \nboolean[]") != std::string::npos);
  CHECK(array_type(long_text).find("xs?: any[]") != std::string::npos);
}

TEST_CASE("Numbers in schemas and JSON are written as the reference writers write them", "[harmony][schema]") {
  // openai-harmony writes a non-string default with serde_json, whose floats
  // are ryu's: positional while the decimal point is within -5 < p <= 16,
  // otherwise an exponent without '+' or zero padding.
  const ordered_json schema = ordered_json::parse(R"({"type": "object", "properties": {
      "a": {"type": "number", "default": 1e-6}, "b": {"type": "number", "default": 0.00001},
      "c": {"type": "number", "default": 1e15}, "d": {"type": "number", "default": 1e16},
      "e": {"type": "number", "default": 100000000000000000000}, "f": {"type": "number", "default": 0.5},
      "g": {"type": "object", "default": {"k": [1, 2.0e-7]}}}})");
  const std::string ts = text::harmony_typescript(schema);
  CHECK(ts.find("a?: number, // default: 1e-6\n") != std::string::npos);
  CHECK(ts.find("b?: number, // default: 0.00001\n") != std::string::npos);
  CHECK(ts.find("c?: number, // default: 1000000000000000.0\n") != std::string::npos);
  CHECK(ts.find("d?: number, // default: 1e16\n") != std::string::npos);
  CHECK(ts.find("e?: number, // default: 1e20\n") != std::string::npos);
  CHECK(ts.find("f?: number, // default: 0.5\n") != std::string::npos);
  CHECK(ts.find(R"(// default: {"k":[1,2e-7]})") != std::string::npos);
  // The chat template's tojson is Python's json.dumps: float repr.
  CHECK(text::python_json(ordered_json::parse(R"([1e-6, 0.0001, 0.00001, 1e15, 1e16, 1.5e16, 100.0, -0.0, 7, 0.1])")) ==
        "[1e-06, 0.0001, 1e-05, 1000000000000000.0, 1e+16, 1.5e+16, 100.0, -0.0, 7, 0.1]");
  // Values JSON cannot hold, built in C++: json.dumps' words, serde_json's null.
  const ordered_json odd = {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                            -std::numeric_limits<double>::infinity()};
  CHECK(text::python_json(odd) == "[NaN, Infinity, -Infinity]");
  ordered_json with_nan = schema;
  with_nan["properties"]["f"]["default"] = std::numeric_limits<double>::quiet_NaN();
  CHECK(text::harmony_typescript(with_nan).find("f?: number, // default: null\n") != std::string::npos);
}

TEST_CASE("Tool descriptions split into lines as Rust's str::lines does", "[harmony][schema]") {
  // "\r\n" ends a line; a lone '\r', even at the end, stays in it. JSON null
  // parameters are no parameters.
  DeveloperContent dev;
  dev.with_function_tools({ToolDescription{"x", "Does X.\r\nThen Y.\r", std::nullopt},
                           ToolDescription{"h", "H.", ordered_json(nullptr)}});
  const std::string text = render_message(Message::developer(dev)).text();
  CHECK(text.find("// Does X.\n// Then Y.\r\ntype x = () => any;") != std::string::npos);
  CHECK(text.find("// H.\ntype h = () => any;") != std::string::npos);
}
