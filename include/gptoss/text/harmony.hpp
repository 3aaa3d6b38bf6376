// The harmony chat format of gpt-oss: conversations rendered to prompt text
// and tokens exactly as OpenAI's reference renderer (openai-harmony) does,
// and generated token streams parsed back into messages.
//
//   <|start|>{role}[ to={recipient}][<|channel|>{channel}][ {content type}]<|message|>{content}<|end|>
//
// An assistant message to a recipient (a tool call) ends with <|call|>; the
// model ends its final answer with <|return|>.
//
//   using namespace gptoss::text::harmony;
//   std::vector<Message> chat = {Message::system(SystemContent{}.with_reasoning(ReasoningEffort::low)),
//                                Message::user("What is 2 + 2?")};
//   std::vector<int32_t> prompt = render_for_completion(chat).tokens(tokenizer);
//
// RenderOptions::style = TemplateStyle::hf_chat_template renders instead as
// the HF chat template (chat_template.jinja) does; it differs from harmony in
// five ways (see TemplateStyle). from_chat_template_kwargs() turns
// apply_chat_template's arguments (OpenAI-style messages, tools, ...) into
// harmony messages.
//
// StreamParser reads tokens as they are generated; it never throws on
// malformed output (a missing <|end|>, stray or unknown tokens, a truncated
// stream) but records what it repaired in problems().
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <ctime>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "gptoss/core/error.hpp"
#include "gptoss/text/tokenizer.hpp"
#include "gptoss/text/tool_schema.hpp"
#include "gptoss/text/utf8.hpp"

namespace gptoss::text::harmony {

/// The formatting tokens of harmony, by text.
inline constexpr std::string_view kStart = "<|start|>";
inline constexpr std::string_view kMessage = "<|message|>";
inline constexpr std::string_view kEnd = "<|end|>";
inline constexpr std::string_view kReturn = "<|return|>";
inline constexpr std::string_view kCall = "<|call|>";
inline constexpr std::string_view kChannel = "<|channel|>";
inline constexpr std::string_view kConstrain = "<|constrain|>";

/// The formatting token ids of a tokenizer (gpt-oss: start 200006, message
/// 200008, end 200007, return 200002, call 200012, channel 200005,
/// constrain 200003).
struct FormatTokens {
  std::int32_t start, message, end, return_, call, channel, constrain;

  static FormatTokens of(const Tokenizer& tokenizer) {
    return {tokenizer.special_token_id(kStart),   tokenizer.special_token_id(kMessage),
            tokenizer.special_token_id(kEnd),     tokenizer.special_token_id(kReturn),
            tokenizer.special_token_id(kCall),    tokenizer.special_token_id(kChannel),
            tokenizer.special_token_id(kConstrain)};
  }
  /// Tokens that end a message's content.
  bool ends_message(std::int32_t id) const { return id == end || id == return_ || id == call; }
};

enum class Role { user, assistant, system, developer, tool };

inline std::string_view role_name(Role role) {
  switch (role) {
    case Role::user: return "user";
    case Role::assistant: return "assistant";
    case Role::system: return "system";
    case Role::developer: return "developer";
    case Role::tool: return "tool";
  }
  return "user";
}

inline std::optional<Role> role_from_name(std::string_view name) {
  for (const Role r : {Role::user, Role::assistant, Role::system, Role::developer, Role::tool}) {
    if (role_name(r) == name) return r;
  }
  return std::nullopt;
}

enum class ReasoningEffort { low, medium, high };

inline std::string_view effort_name(ReasoningEffort effort) {
  switch (effort) {
    case ReasoningEffort::low: return "low";
    case ReasoningEffort::medium: return "medium";
    case ReasoningEffort::high: return "high";
  }
  return "medium";
}

/// "low" | "medium" | "high"; anything else is a RangeError.
inline ReasoningEffort effort_from_name(std::string_view name) {
  for (const auto e : {ReasoningEffort::low, ReasoningEffort::medium, ReasoningEffort::high}) {
    if (effort_name(e) == name) return e;
  }
  throw RangeError("reasoning effort '" + std::string(name) + "' is not low, medium or high");
}

/// One tool: its parameters are a JSON Schema (absent: no parameters).
struct ToolDescription {
  std::string name;
  std::string description;
  std::optional<ordered_json> parameters;
};

/// A namespace of tools ("functions", "browser", "python"). A namespace
/// with a description but no tools (python) is described in prose.
struct ToolNamespace {
  std::string name;
  std::optional<std::string> description;
  std::vector<ToolDescription> tools;

  /// The built-in browsing tool gpt-oss was trained with.
  static ToolNamespace browser() {
    ToolNamespace ns{"browser",
                     "Tool for browsing.\n"
                     "The `cursor` appears in brackets before each browsing display: `[{cursor}]`.\n"
                     "Cite information from the tool using the following format:\n"
                     "`\u3010{cursor}\u2020L{line_start}(-L{line_end})?\u3011`, for example: `\u30106\u2020L9-L11\u3011` or "
                     "`\u30108\u2020L3\u3011`.\n"
                     "Do not quote more than 10 words directly from the tool output.\n"
                     "sources=web (default: web)",
                     {}};
    ns.tools.push_back({"search", "Searches for information related to `query` and displays `topn` results.",
                        ordered_json::parse(R"({"type": "object", "properties": {"query": {"type": "string"},
                          "topn": {"type": "number", "default": 10}, "source": {"type": "string"}},
                          "required": ["query"]})")});
    ns.tools.push_back(
        {"open",
         "Opens the link `id` from the page indicated by `cursor` starting at line number `loc`, showing `num_lines` lines.\n"
         "Valid link ids are displayed with the formatting: `\u3010{id}\u2020.*\u3011`.\n"
         "If `cursor` is not provided, the most recent page is implied.\n"
         "If `id` is a string, it is treated as a fully qualified URL associated with `source`.\n"
         "If `loc` is not provided, the viewport will be positioned at the beginning of the document or centered on "
         "the most relevant passage, if available.\n"
         "Use this function without `id` to scroll to a new location of an opened page.",
         ordered_json::parse(R"({"type": "object", "properties": {
           "id": {"type": ["number", "string"], "default": -1}, "cursor": {"type": "number", "default": -1},
           "loc": {"type": "number", "default": -1}, "num_lines": {"type": "number", "default": -1},
           "view_source": {"type": "boolean", "default": false}, "source": {"type": "string"}}})")});
    ns.tools.push_back({"find", "Finds exact matches of `pattern` in the current page, or the page given by `cursor`.",
                        ordered_json::parse(R"({"type": "object", "properties": {"pattern": {"type": "string"},
                          "cursor": {"type": "number", "default": -1}}, "required": ["pattern"]})")});
    return ns;
  }

  /// The built-in Python tool gpt-oss was trained with.
  static ToolNamespace python() {
    return {"python",
            "Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. "
            "This tool should be used for internal reasoning, but not for code that is intended to be visible to "
            "the user (e.g. when creating plots, tables, or files).\n\n"
            "When you send a message containing Python code to python, it will be executed in a stateful Jupyter "
            "notebook environment. python will respond with the output of the execution or time out after 120.0 "
            "seconds. The drive at '/mnt/data' can be used to save and persist user files. Internet access for "
            "this session is UNKNOWN. Depends on the cluster.",
            {}};
  }
};

/// Tool namespaces by name (rendered in name order, as harmony does).
using ToolNamespaces = std::map<std::string, ToolNamespace>;

/// The system message: model identity, dates, reasoning effort, channels
/// and built-in tools. Defaults are harmony's SystemContent::new().
struct SystemContent {
  std::optional<std::string> model_identity = "You are ChatGPT, a large language model trained by OpenAI.";
  std::optional<ReasoningEffort> reasoning_effort = ReasoningEffort::medium;
  std::optional<std::string> knowledge_cutoff = "2024-06";
  std::optional<std::string> conversation_start_date;  // "YYYY-MM-DD"
  std::vector<std::string> valid_channels = {"analysis", "commentary", "final"};
  bool channel_required = true;
  ToolNamespaces tools;

  SystemContent& with_model_identity(std::string identity) { model_identity = std::move(identity); return *this; }
  SystemContent& with_reasoning(ReasoningEffort effort) { reasoning_effort = effort; return *this; }
  SystemContent& with_knowledge_cutoff(std::string cutoff) { knowledge_cutoff = std::move(cutoff); return *this; }
  SystemContent& with_date(std::string date) { conversation_start_date = std::move(date); return *this; }
  SystemContent& with_channels(std::vector<std::string> channels) { valid_channels = std::move(channels); return *this; }
  SystemContent& with_tools(ToolNamespace ns) { tools[ns.name] = std::move(ns); return *this; }
  SystemContent& with_browser_tool() { return with_tools(ToolNamespace::browser()); }
  SystemContent& with_python_tool() { return with_tools(ToolNamespace::python()); }
};

/// The developer message: instructions and function tools.
struct DeveloperContent {
  std::optional<std::string> instructions;
  ToolNamespaces tools;

  DeveloperContent& with_instructions(std::string text) { instructions = std::move(text); return *this; }
  DeveloperContent& with_function_tools(std::vector<ToolDescription> functions) {
    tools["functions"] = ToolNamespace{"functions", std::nullopt, std::move(functions)};
    return *this;
  }
  DeveloperContent& with_tools(ToolNamespace ns) { tools[ns.name] = std::move(ns); return *this; }
};

/// One message. `name` is the author's name (a tool message's author is
/// the tool: "functions.get_weather"); content is text, or the structured
/// content of a system or developer message.
struct Message {
  Role role = Role::user;
  std::optional<std::string> name;
  std::optional<std::string> recipient;     // "functions.get_weather"; "all" is not written
  std::optional<std::string> channel;       // "analysis", "commentary", "final"
  std::optional<std::string> content_type;  // "<|constrain|>json", "code", ...
  std::variant<std::string, SystemContent, DeveloperContent> content = std::string();

  static Message system(SystemContent c) { Message m; m.role = Role::system; m.content = std::move(c); return m; }
  static Message developer(DeveloperContent c) { Message m; m.role = Role::developer; m.content = std::move(c); return m; }
  static Message user(std::string text) { Message m; m.role = Role::user; m.content = std::move(text); return m; }
  static Message assistant(std::string text, std::string channel = "final") {
    Message m;
    m.role = Role::assistant;
    m.channel = std::move(channel);
    m.content = std::move(text);
    return m;
  }
  /// A tool's answer; `tool` names it ("functions.get_weather").
  static Message tool(std::string tool, std::string text) {
    Message m;
    m.role = Role::tool;
    m.name = std::move(tool);
    m.content = std::move(text);
    return m;
  }
  Message& with_channel(std::string c) { channel = std::move(c); return *this; }
  Message& with_recipient(std::string r) { recipient = std::move(r); return *this; }
  Message& with_content_type(std::string t) { content_type = std::move(t); return *this; }

  /// The text content ("" for system / developer content).
  const std::string& text() const {
    static const std::string empty;
    const auto* s = std::get_if<std::string>(&content);
    return s != nullptr ? *s : empty;
  }
  bool operator==(const Message& o) const {
    return role == o.role && name == o.name && recipient == o.recipient && channel == o.channel &&
           content_type == o.content_type && content.index() == o.content.index() && text() == o.text();
  }
};

/// How a conversation is written.
enum class TemplateStyle {
  /// openai-harmony's renderer (the reference).
  harmony,
  /// The HF chat template of openai/gpt-oss-20b. It differs from harmony in:
  ///  1. the system message always has "Current date:" (today's date unless
  ///     the system content sets one);
  ///  2. developer instructions without tools end with "\n\n" before <|end|>;
  ///  3. a tool call's content type is text ("commentary json"), without
  ///     the <|constrain|> token;
  ///  4. a tool result's header is "functions.NAME to=assistant<|channel|>commentary"
  ///     and its content is JSON-quoted again (tojson);
  ///  5. analysis messages are dropped when a later final message exists,
  ///     except the analysis directly before the last (final) message of a
  ///     training render, its own thinking; function schemas use the
  ///     template's own TypeScript macro.
  hf_chat_template,
};

struct RenderOptions {
  /// harmony: drop analysis messages before the first final message when
  /// the last assistant message is final (openai-harmony's
  /// auto_drop_analysis; its Python API enables it by default).
  bool auto_drop_analysis = true;
  TemplateStyle style = TemplateStyle::harmony;
  /// hf_chat_template: the date written when the system content has none
  /// ("YYYY-MM-DD"; empty: today's local date).
  std::string today;
};

/// Today's local date, "YYYY-MM-DD".
inline std::string local_date() {
  const std::time_t now = std::time(nullptr);
  std::tm parts{};
  localtime_r(&now, &parts);
  char buffer[16];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%d", &parts);
  return buffer;
}

/// Rendered prompt: text pieces and formatting tokens, in order. text()
/// joins them; tokens() encodes the text pieces as ordinary text (so that
/// special-token text inside a message can never become a special token)
/// and the formatting tokens by id.
class Rendered {
 public:
  struct Segment {
    bool special;
    std::string text;
  };

  void add_text(std::string_view text) {
    if (text.empty()) return;
    if (!segments_.empty() && !segments_.back().special) {
      segments_.back().text += text;
    } else {
      segments_.push_back({false, std::string(text)});
    }
  }
  void add_special(std::string_view token) { segments_.push_back({true, std::string(token)}); }
  void append(const Rendered& other) {
    for (const Segment& s : other.segments_) s.special ? add_special(s.text) : add_text(s.text);
  }

  const std::vector<Segment>& segments() const noexcept { return segments_; }

  std::string text() const {
    std::string out;
    for (const Segment& s : segments_) out += s.text;
    return out;
  }

  std::vector<std::int32_t> tokens(const Tokenizer& tokenizer) const {
    std::vector<std::int32_t> ids;
    for (const Segment& s : segments_) {
      if (s.special) {
        ids.push_back(tokenizer.special_token_id(s.text));
      } else {
        tokenizer.encode_into(s.text, ids, SpecialTokens::plain);
      }
    }
    return ids;
  }

 private:
  std::vector<Segment> segments_;
};

namespace detail {

/// Rust's str::lines(): split at '\n' and "\r\n" (a lone '\r', even at the
/// end, stays in its line), without a final empty line.
inline std::vector<std::string> lines(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (end < text.size() && !line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.emplace_back(line);
    start = end + 1;
  }
  return out;
}

inline std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i) out += separator;
    out += parts[i];
  }
  return out;
}

/// harmony's template_tools_section: "# Tools" and one section per namespace.
inline std::string tools_section(const ToolNamespaces& tools, TemplateStyle style) {
  std::vector<std::string> sections{"# Tools"};
  for (const auto& [key, ns] : tools) {
    if (style == TemplateStyle::hf_chat_template && ns.name == "functions") {
      ordered_json list = ordered_json::array();
      for (const ToolDescription& t : ns.tools) {
        ordered_json function = {{"name", t.name}, {"description", t.description}};
        if (t.parameters) function["parameters"] = *t.parameters;
        list.push_back({{"type", "function"}, {"function", function}});
      }
      sections.push_back(hf_template_tool_namespace(ns.name, list));
      continue;
    }
    std::vector<std::string> content{"## " + ns.name + "\n"};
    if (ns.description) {
      for (const std::string& line : lines(*ns.description)) content.push_back(ns.tools.empty() ? line : "// " + line);
    }
    if (!ns.tools.empty()) {
      content.push_back("namespace " + ns.name + " {\n");
      for (const ToolDescription& tool : ns.tools) {
        for (const std::string& line : lines(tool.description)) content.push_back("// " + line);
        // JSON null parameters are none, as serde reads them from Python.
        if (tool.parameters && !tool.parameters->is_null()) {
          content.push_back("type " + tool.name + " = (_: " + harmony_typescript(*tool.parameters) + ") => any;\n");
        } else {
          content.push_back("type " + tool.name + " = () => any;\n");
        }
      }
      content.push_back("} // namespace " + ns.name);
    }
    sections.push_back(join(content, "\n"));
  }
  return join(sections, "\n\n");
}

inline std::string system_text(const SystemContent& sys, bool has_function_tools, const RenderOptions& options) {
  std::vector<std::string> sections;
  std::vector<std::string> top;
  if (sys.model_identity) top.push_back(*sys.model_identity);
  if (sys.knowledge_cutoff) top.push_back("Knowledge cutoff: " + *sys.knowledge_cutoff);
  if (sys.conversation_start_date) {
    top.push_back("Current date: " + *sys.conversation_start_date);
  } else if (options.style == TemplateStyle::hf_chat_template) {
    top.push_back("Current date: " + (options.today.empty() ? local_date() : options.today));
  }
  if (!top.empty()) sections.push_back(join(top, "\n"));
  if (sys.reasoning_effort) sections.push_back("Reasoning: " + std::string(effort_name(*sys.reasoning_effort)));
  if (!sys.tools.empty()) sections.push_back(tools_section(sys.tools, TemplateStyle::harmony));
  if (!sys.valid_channels.empty()) {
    std::string channels = "# Valid channels: " + join(sys.valid_channels, ", ") + ".";
    if (sys.channel_required) channels += " Channel must be included for every message.";
    if (has_function_tools) channels += "\nCalls to these tools must go to the commentary channel: 'functions'.";
    sections.push_back(std::move(channels));
  }
  return join(sections, "\n\n");
}

inline std::string developer_text(const DeveloperContent& dev, const RenderOptions& options) {
  std::vector<std::string> sections;
  if (dev.instructions) {
    sections.push_back("# Instructions");
    sections.push_back(*dev.instructions);
  }
  if (!dev.tools.empty()) sections.push_back(tools_section(dev.tools, options.style));
  std::string text = join(sections, "\n\n");
  if (options.style == TemplateStyle::hf_chat_template && dev.instructions && dev.tools.empty()) text += "\n\n";
  return text;
}

inline bool has_function_tools(std::span<const Message> messages) {
  return std::any_of(messages.begin(), messages.end(), [](const Message& m) {
    const auto* dev = std::get_if<DeveloperContent>(&m.content);
    if (dev == nullptr) return false;
    const auto it = dev->tools.find("functions");
    return it != dev->tools.end() && !it->second.tools.empty();
  });
}

enum class RenderMode { conversation, training };

/// Which messages a render keeps (analysis dropping, both styles).
inline std::vector<bool> kept_messages(std::span<const Message> messages, const RenderOptions& options, RenderMode mode) {
  std::vector<bool> keep(messages.size(), true);
  const auto is_final = [](const Message& m) { return m.role == Role::assistant && m.channel == "final"; };
  if (options.style == TemplateStyle::harmony) {
    bool last_assistant_is_final = false;
    for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
      if (it->role == Role::assistant) {
        last_assistant_is_final = it->channel == "final";
        break;
      }
    }
    if (!options.auto_drop_analysis || !last_assistant_is_final) return keep;
    // openai-harmony looks for the first message on the final channel.
    std::size_t first_final = messages.size();
    for (std::size_t i = 0; i < messages.size(); ++i) {
      if (messages[i].channel == "final") {
        first_final = i;
        break;
      }
    }
    for (std::size_t i = 0; i < first_final; ++i) keep[i] = messages[i].channel != "analysis";
    return keep;
  }
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].channel != "analysis") continue;
    std::size_t next_final = messages.size();
    for (std::size_t j = i + 1; j < messages.size(); ++j) {
      if (is_final(messages[j])) {
        next_final = j;
        break;
      }
    }
    if (next_final == messages.size()) continue;  // an analysis still in progress (tool calls)
    // Only the trained answer's own thinking stays: the analysis directly
    // before the last message, a final one. The analysis before a tool call
    // is dropped once any final message follows, even the trained one.
    const bool is_trained_answers_thinking =
        mode == RenderMode::training && next_final == i + 1 && next_final + 1 == messages.size();
    keep[i] = is_trained_answers_thinking;
  }
  return keep;
}

/// Throws RangeError if a header field holds whitespace or a control
/// character: the header is split on whitespace, so "f to=python" as a tool
/// name would address the call to python, and would not parse back.
inline void check_header_field(const std::optional<std::string>& value, const char* field) {
  if (!value) return;
  for (const char c : *value) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte == 0x7f) {
      throw RangeError(std::string("harmony: the message's ") + field + " '" + *value +
                       "' holds whitespace or a control character, which would change its header");
    }
  }
}

}  // namespace detail

/// One message, header to end token. Its name, recipient, channel and
/// content type must not hold whitespace or control characters (RangeError).
inline Rendered render_message(const Message& message, const RenderOptions& options = {},
                               bool conversation_has_function_tools = false) {
  const bool hf = options.style == TemplateStyle::hf_chat_template;
  detail::check_header_field(message.name, "name");
  detail::check_header_field(message.recipient, "recipient");
  detail::check_header_field(message.channel, "channel");
  detail::check_header_field(message.content_type, "content type");
  Rendered out;
  out.add_special(kStart);
  if (message.role == Role::tool) {
    if (!message.name) throw RangeError("a tool message needs the tool's name as its author name");
    out.add_text(*message.name);
  } else {
    out.add_text(role_name(message.role));
    if (message.name) out.add_text(":" + *message.name);
  }
  std::optional<std::string> recipient = message.recipient, channel = message.channel, content_type = message.content_type;
  if (hf && message.role == Role::tool) {
    recipient = "assistant";
    channel = "commentary";
  }
  if (recipient && *recipient != "all") out.add_text(" to=" + *recipient);
  if (channel) {
    out.add_special(kChannel);
    out.add_text(*channel);
  }
  if (content_type) {
    if (content_type->starts_with(kConstrain)) {
      out.add_text(" ");
      if (!hf) out.add_special(kConstrain);
      out.add_text(content_type->substr(kConstrain.size()));
    } else {
      out.add_text(" " + *content_type);
    }
  }
  out.add_special(kMessage);
  if (const auto* sys = std::get_if<SystemContent>(&message.content)) {
    if (message.role != Role::system) throw RangeError("system content may only appear in a system message");
    out.add_text(detail::system_text(*sys, conversation_has_function_tools, options));
  } else if (const auto* dev = std::get_if<DeveloperContent>(&message.content)) {
    if (message.role != Role::developer) throw RangeError("developer content may only appear in a developer message");
    out.add_text(detail::developer_text(*dev, options));
  } else if (hf && message.role == Role::tool) {
    out.add_text(python_json(ordered_json(message.text())));
  } else {
    out.add_text(message.text());
  }
  out.add_special(message.role == Role::assistant && message.recipient ? kCall : kEnd);
  return out;
}

namespace detail {

inline Rendered render_messages(std::span<const Message> messages, const RenderOptions& options, RenderMode mode) {
  const bool function_tools = has_function_tools(messages);
  const std::vector<bool> keep = kept_messages(messages, options, mode);
  Rendered out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (keep[i]) out.append(render_message(messages[i], options, function_tools));
  }
  return out;
}

}  // namespace detail

/// The conversation, every message ended.
inline Rendered render_conversation(std::span<const Message> messages, const RenderOptions& options = {}) {
  return detail::render_messages(messages, options, detail::RenderMode::conversation);
}

/// The conversation followed by "<|start|>{next}": the prompt for the
/// model's next message.
inline Rendered render_for_completion(std::span<const Message> messages, Role next = Role::assistant,
                                      const RenderOptions& options = {}) {
  Rendered out = detail::render_messages(messages, options, detail::RenderMode::conversation);
  out.add_special(kStart);
  out.add_text(role_name(next));
  return out;
}

/// For training: a conversation ending in an assistant final message ends
/// with <|return|> instead of <|end|>.
inline Rendered render_for_training(std::span<const Message> messages, const RenderOptions& options = {}) {
  Rendered out = detail::render_messages(messages, options, detail::RenderMode::training);
  if (!messages.empty() && messages.back().role == Role::assistant && messages.back().channel == "final") {
    Rendered fixed;
    const auto& segments = out.segments();
    for (std::size_t i = 0; i < segments.size(); ++i) {
      const bool last = i + 1 == segments.size();
      segments[i].special ? fixed.add_special(last ? kReturn : segments[i].text) : fixed.add_text(segments[i].text);
    }
    return fixed;
  }
  return out;
}

/// The arguments of HF apply_chat_template, as harmony messages.
struct ChatTemplateRequest {
  std::vector<Message> messages;
  bool add_generation_prompt = false;
  /// The last of "messages" has a role the template skips (not user,
  /// assistant or tool): the answer before it is not the trained one, so it
  /// ends with <|end|> and its thinking is dropped.
  bool ends_with_skipped_role = false;
};

/// Converts apply_chat_template's keyword arguments ({"messages": [...],
/// "tools": [...], "builtin_tools": [...], "model_identity": "...",
/// "reasoning_effort": "...", "add_generation_prompt": bool}) into harmony
/// messages, as chat_template.jinja interprets them: a leading system or
/// developer message becomes the developer instructions, "thinking" becomes
/// an analysis message, "content" a final one, "tool_calls" a commentary
/// call to functions.NAME, and a "tool" message the answer of the last call.
/// Malformed input is a FormatError saying what is wrong.
inline ChatTemplateRequest from_chat_template_kwargs(const ordered_json& kwargs, std::string today = "") {
  const auto fail = [](const std::string& what) -> void { throw FormatError("chat template arguments: " + what); };
  if (!kwargs.is_object()) fail("not a JSON object");
  check_json_depth(kwargs, "chat template arguments");
  // A string member of `object` (`where` names it), `fallback` when absent or null.
  const auto string_field = [&](const ordered_json& object, const char* key, const std::string& fallback,
                                const std::string& where) -> std::string {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return fallback;
    if (!it->is_string()) fail(where + "\"" + key + "\" is a " + it->type_name() + ", not a string");
    return it->get<std::string>();
  };
  const auto object_at = [&](const ordered_json& value, const std::string& where) -> const ordered_json& {
    if (!value.is_object()) fail(where + " is a " + std::string(value.type_name()) + ", not an object");
    return value;
  };
  // The template concatenates "content" and "thinking" as strings: a value
  // of another type (or null) is an error there, and one here.
  const auto text_of = [&](const ordered_json& m, const char* key, const std::string& where) -> std::string {
    const auto it = m.find(key);
    if (it == m.end()) return "";
    if (!it->is_string()) {
      const std::string article = it->is_object() || it->is_array() ? "an " : "a ";
      fail(where + ": \"" + key + "\" is " + (it->is_null() ? std::string("null") : article + it->type_name()) +
           ", not a string");
    }
    return it->get<std::string>();
  };
  const auto require_text = [&](const ordered_json& m, const char* key, const std::string& where) -> std::string {
    if (!m.contains(key)) fail(where + " has no \"" + std::string(key) + "\"");
    return text_of(m, key, where);
  };
  ChatTemplateRequest request;
  if (const auto it = kwargs.find("add_generation_prompt"); it != kwargs.end() && !it->is_null()) {
    if (!it->is_boolean()) fail(std::string("\"add_generation_prompt\" is a ") + it->type_name() + ", not a bool");
    request.add_generation_prompt = it->get<bool>();
  }

  SystemContent sys;
  sys.model_identity =
      string_field(kwargs, "model_identity", "You are ChatGPT, a large language model trained by OpenAI.", "");
  sys.reasoning_effort = effort_from_name(string_field(kwargs, "reasoning_effort", "medium", ""));
  sys.conversation_start_date = today.empty() ? local_date() : today;
  if (const auto builtin = kwargs.find("builtin_tools"); builtin != kwargs.end() && builtin->is_array()) {
    for (const auto& name : *builtin) {
      if (name == "browser") sys.with_browser_tool();
      if (name == "python") sys.with_python_tool();
    }
  }
  request.messages.push_back(Message::system(sys));

  const auto messages_it = kwargs.find("messages");
  if (messages_it == kwargs.end() || !messages_it->is_array()) fail("\"messages\" is missing or not a list");
  const ordered_json& messages = *messages_it;
  std::size_t first = 0;
  DeveloperContent dev;
  bool has_developer = false;
  if (!messages.empty() && messages[0].is_object()) {
    const std::string role = string_field(messages[0], "role", "", "messages[0]: ");
    if (role == "system" || role == "developer") {
      first = 1;
      // The template skips a null or empty system message's content.
      const auto content = messages[0].find("content");
      const bool absent = content == messages[0].end() || content->is_null();
      if (const std::string instructions = absent ? "" : text_of(messages[0], "content", "messages[0]");
          !instructions.empty()) {
        dev.instructions = instructions;
        has_developer = true;
      }
    }
  }
  if (const auto tools = kwargs.find("tools"); tools != kwargs.end() && tools->is_array() && !tools->empty()) {
    std::vector<ToolDescription> functions;
    for (std::size_t t = 0; t < tools->size(); ++t) {
      const std::string where = "tools[" + std::to_string(t) + "]";
      const ordered_json& entry = object_at((*tools)[t], where);
      const ordered_json& f = entry.contains("function") ? object_at(entry["function"], where + ".function") : entry;
      ToolDescription d{string_field(f, "name", "", where + ": "), string_field(f, "description", "", where + ": "),
                        std::nullopt};
      if (f.contains("parameters") && !f["parameters"].is_null()) d.parameters = f["parameters"];
      functions.push_back(std::move(d));
    }
    dev.with_function_tools(std::move(functions));
    has_developer = true;
  }
  if (has_developer) request.messages.push_back(Message::developer(dev));

  std::optional<std::string> last_tool_call;
  for (std::size_t i = first; i < messages.size(); ++i) {
    const ordered_json& m = messages[i];
    if (!m.is_object()) fail("messages[" + std::to_string(i) + "] is not an object");
    const std::string where = "messages[" + std::to_string(i) + "]";
    const std::string role = string_field(m, "role", "", where + ": ");
    if (role == "assistant") {
      const std::string content = text_of(m, "content", where), thinking = text_of(m, "thinking", where);
      for (const std::string* text : {&content, &thinking}) {
        for (const char* tag : {"<|channel|>analysis<|message|>", "<|channel|>final<|message|>"}) {
          if (text->find(tag) != std::string::npos) {
            fail(where + ": \"" + (text == &content ? "content" : "thinking") + "\" holds " + tag +
                 "; pass the analysis as \"thinking\" and the final answer as \"content\", without channel tags");
          }
        }
      }
      if (const auto calls = m.find("tool_calls"); calls != m.end()) {
        if (!calls->is_array() || calls->empty()) fail(where + ": \"tool_calls\" is not a non-empty list");
        if (!content.empty() && !thinking.empty()) {
          fail("messages[" + std::to_string(i) + "]: an assistant tool call has both content and thinking");
        }
        if (!content.empty() || !thinking.empty()) {
          request.messages.push_back(Message::assistant(content.empty() ? thinking : content, "analysis"));
        }
        const std::string call_where = where + ".tool_calls[0]";
        const ordered_json& first_call = object_at(m["tool_calls"][0], call_where);
        const ordered_json& call =
            first_call.contains("function") ? object_at(first_call["function"], call_where + ".function") : first_call;
        const std::string name = string_field(call, "name", "", call_where + ": ");
        const auto arguments = call.find("arguments");
        Message message = Message::assistant(
            arguments != call.end() ? python_json(*arguments) : std::string("{}"), "commentary");
        message.recipient = "functions." + name;
        message.content_type = string_field(call, "content_type", std::string(kConstrain) + "json", call_where + ": ");
        request.messages.push_back(std::move(message));
        last_tool_call = name;
      } else {
        // The template writes a trained answer's "thinking" whenever the key
        // is there, even empty (the render drops it everywhere else).
        if (m.contains("thinking")) request.messages.push_back(Message::assistant(thinking, "analysis"));
        request.messages.push_back(Message::assistant(require_text(m, "content", where), "final"));
        last_tool_call.reset();
      }
    } else if (role == "tool") {
      if (!last_tool_call) fail("messages[" + std::to_string(i) + "] has role tool, but no assistant tool call precedes it");
      // The template writes content|tojson; only a string is written so here.
      request.messages.push_back(Message::tool("functions." + *last_tool_call, require_text(m, "content", where)));
    } else if (role == "user") {
      request.messages.push_back(Message::user(require_text(m, "content", where)));
    } else if (i + 1 == messages.size()) {
      request.ends_with_skipped_role = true;  // other roles past the first message are skipped
    }
  }
  return request;
}

/// Renders apply_chat_template's arguments as the HF chat template does.
inline Rendered render_chat_template(const ordered_json& kwargs, std::string today = "") {
  const ChatTemplateRequest request = from_chat_template_kwargs(kwargs, today);
  RenderOptions options;
  options.style = TemplateStyle::hf_chat_template;
  options.today = std::move(today);
  if (request.add_generation_prompt) return render_for_completion(request.messages, Role::assistant, options);
  // The template trains on the last of "messages" only: after a skipped role
  // no answer ends with <|return|>.
  return request.ends_with_skipped_role ? render_conversation(request.messages, options)
                                        : render_for_training(request.messages, options);
}

/// Parses generated (or rendered) tokens into messages as they arrive.
///
/// Start it with the role of a header already in the prompt (after
/// "<|start|>assistant" pass Role::assistant), or with none to expect
/// "<|start|>" first. Malformed streams are repaired, never rejected: a
/// <|start|> inside content ends the message (its <|end|> was missing),
/// tokens between messages are skipped, unknown ids read as U+FFFD, an
/// unknown role is read as the name of a tool, and finish() keeps a message
/// cut off by the end of the stream. problems() lists every repair. The
/// tokenizer must outlive the parser.
class StreamParser {
 public:
  explicit StreamParser(const Tokenizer& tokenizer, std::optional<Role> role = std::nullopt)
      : tokenizer_(&tokenizer), format_(FormatTokens::of(tokenizer)), next_role_(role),
        state_(role ? State::header : State::expect_start) {}

  void process(std::int32_t token) {
    delta_.clear();
    ++position_;
    switch (state_) {
      case State::expect_start:
        if (token == format_.start) {
          begin_header();
        } else {
          problem("token " + std::to_string(token) + " outside a message (expected <|start|>) was skipped");
        }
        return;
      case State::header:
        if (token == format_.message) {
          finish_header();
        } else if (token == format_.start) {
          problem("a header was interrupted by <|start|> and dropped");
          next_role_.reset();  // the role preset for the dropped header, not for the next one
          begin_header();
        } else if (format_.ends_message(token)) {
          end_in_header();
        } else {
          header_bytes_ += bytes_of(token);
        }
        return;
      case State::content:
        if (format_.ends_message(token)) {
          end_message(token);
        } else if (token == format_.start) {
          problem("a message ended without <|end|> (a <|start|> followed its content)");
          end_message(-1);
          begin_header();
        } else {
          content_bytes_ += bytes_of(token);
          const std::size_t complete = utf8::complete_prefix(content_bytes_);
          if (complete > streamed_) {
            delta_ = utf8::lossy(std::string_view(content_bytes_).substr(streamed_, complete - streamed_));
            streamed_ = complete;
          }
        }
        return;
    }
  }

  /// The end of the stream: a message in progress is kept as it is.
  void finish() {
    delta_.clear();
    if (state_ == State::content) {
      problem("the stream ended inside a message (no <|end|>, <|return|> or <|call|>); kept as it is");
      end_message(-1);
    } else if (state_ == State::header && !header_bytes_.empty()) {
      problem("the stream ended inside a message header");
      state_ = State::expect_start;
    }
  }

  const std::vector<Message>& messages() const noexcept { return messages_; }
  std::vector<Message> take_messages() { return std::move(messages_); }
  const std::vector<std::string>& problems() const noexcept { return problems_; }

  /// True while inside a message's content.
  bool in_content() const noexcept { return state_ == State::content; }
  /// True while inside a message (its header or its content).
  bool in_message() const noexcept { return state_ != State::expect_start; }
  /// The header of the message being read (valid while in_content()).
  const Message& current() const noexcept { return current_; }
  /// Content read so far of the current message.
  std::string current_content() const { return utf8::lossy(content_bytes_); }
  /// Text the last process() added to the current message: complete UTF-8
  /// characters only (a character split over tokens arrives whole).
  const std::string& last_content_delta() const noexcept { return delta_; }
  /// The token that ended each message: <|end|>, <|return|>, <|call|>, or
  /// -1 when it was cut off (parallel to messages()).
  const std::vector<std::int32_t>& end_tokens() const noexcept { return end_tokens_; }

 private:
  enum class State { expect_start, header, content };

  void problem(std::string what) { problems_.push_back("token " + std::to_string(position_ - 1) + ": " + std::move(what)); }

  std::string bytes_of(std::int32_t token) {
    if (token < 0 || token >= tokenizer_->vocab_size()) {
      problem("unknown token id " + std::to_string(token) + " read as U+FFFD");
      return "\xEF\xBF\xBD";
    }
    try {
      return std::string(tokenizer_->token_bytes(token));
    } catch (const RangeError&) {
      problem("token id " + std::to_string(token) + " has no text; read as U+FFFD");
      return "\xEF\xBF\xBD";
    }
  }

  void begin_header() {
    state_ = State::header;
    header_bytes_.clear();
  }

  void finish_header() {
    std::vector<std::string> rest;
    current_ = parse_header(utf8::lossy(header_bytes_), rest);
    if (!rest.empty()) problem("extra words in a message header were ignored: " + detail::join(rest, " "));
    next_role_.reset();
    content_bytes_.clear();
    streamed_ = 0;
    state_ = State::content;
  }

  /// A stop token inside a header (no <|message|>): like openai-harmony's
  /// non-strict mode, keep it as a message whose content is the header's
  /// words after the channel, when the role is known.
  void end_in_header() {
    problem("a message ended inside its header (no <|message|>)");
    if (next_role_ && !header_bytes_.empty()) {
      std::vector<std::string> rest;
      Message m = parse_header(utf8::lossy(header_bytes_), rest, /*read_recipient=*/false);
      m.content = detail::join(rest, " ");
      messages_.push_back(std::move(m));
      end_tokens_.push_back(-1);
    }
    next_role_.reset();
    state_ = State::expect_start;
  }

  void end_message(std::int32_t token) {
    Message m = std::move(current_);
    m.content = utf8::lossy(content_bytes_);
    messages_.push_back(std::move(m));
    end_tokens_.push_back(token);
    content_bytes_.clear();
    streamed_ = 0;
    current_ = Message{};
    state_ = State::expect_start;
  }

  /// openai-harmony's parse_header_from_string, without its errors.
  Message parse_header(std::string header, std::vector<std::string>& rest, bool read_recipient = true) {
    Message m;
    // Every <|channel|> and its name is cut out of the header; the first
    // names the channel, a later one is a problem (left in, it would be read
    // as part of the role).
    for (std::size_t at = header.find(kChannel); at != std::string::npos; at = header.find(kChannel, at)) {
      const std::size_t value_start = at + kChannel.size();
      std::size_t value_end = value_start;
      while (value_end < header.size() && !std::isspace(static_cast<unsigned char>(header[value_end])) &&
             header[value_end] != '<') {
        ++value_end;
      }
      const std::string value = header.substr(value_start, value_end - value_start);
      if (m.channel) {
        problem("a header has a second <|channel|> ('" + value + "'); the first ('" + *m.channel + "') was kept");
      } else if (!value.empty()) {
        m.channel = value;
      } else {
        problem("a header has <|channel|> but no channel name");
      }
      header = header.substr(0, at) + " " + header.substr(value_end);
    }
    for (std::size_t at = header.find(kConstrain); at != std::string::npos; at = header.find(kConstrain, at + 2)) {
      header.insert(at, " ");
    }
    std::vector<std::string> parts;
    for (std::size_t i = 0; i < header.size();) {
      while (i < header.size() && std::isspace(static_cast<unsigned char>(header[i]))) ++i;
      std::size_t j = i;
      while (j < header.size() && !std::isspace(static_cast<unsigned char>(header[j]))) ++j;
      if (j > i) parts.push_back(header.substr(i, j - i));
      i = j;
    }
    // "<|constrain|> json": a space after the token still names one content type.
    for (std::size_t k = 0; k + 1 < parts.size(); ++k) {
      if (parts[k] == kConstrain) {
        parts[k] += parts[k + 1];
        parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(k + 1));
      }
    }
    Role role = Role::assistant;
    std::optional<std::string> author;
    if (next_role_) {
      role = *next_role_;
    } else if (parts.empty()) {
      problem("a message header has no role; read as assistant");
    } else if (const auto known = role_from_name(parts[0])) {
      role = *known;
    } else {
      // An unknown author is a tool ("functions.get_weather to=assistant").
      role = Role::tool;
      author = parts[0];
      parts.erase(parts.begin());
    }
    if (!parts.empty() && parts[0] == role_name(role)) parts.erase(parts.begin());
    m.role = role;
    if (role == Role::tool && author) m.name = author;
    if (read_recipient && !parts.empty()) {
      const std::size_t count = parts.size();
      std::string last = std::move(parts.back());
      parts.pop_back();
      if (last.starts_with("to=")) {
        m.recipient = last.substr(3);
      } else if (count == 1 && !last.starts_with(kConstrain)) {
        m.recipient = std::move(last);
      } else {
        m.content_type = std::move(last);
        if (!parts.empty()) {
          std::string r = std::move(parts.back());
          parts.pop_back();
          m.recipient = r.starts_with("to=") ? r.substr(3) : r;
        }
      }
    }
    rest = std::move(parts);
    return m;
  }

  const Tokenizer* tokenizer_;
  FormatTokens format_;
  std::optional<Role> next_role_;
  State state_;
  std::string header_bytes_;
  std::string content_bytes_;
  std::size_t streamed_ = 0;  // content bytes already given out as deltas
  std::string delta_;
  Message current_;
  std::vector<Message> messages_;
  std::vector<std::int32_t> end_tokens_;
  std::vector<std::string> problems_;
  std::size_t position_ = 0;
};

/// Parses a whole token stream (see StreamParser).
inline std::vector<Message> parse_messages(const Tokenizer& tokenizer, std::span<const std::int32_t> tokens,
                                           std::optional<Role> role = std::nullopt) {
  StreamParser parser(tokenizer, role);
  for (const std::int32_t t : tokens) parser.process(t);
  parser.finish();
  return parser.take_messages();
}

}  // namespace gptoss::text::harmony
