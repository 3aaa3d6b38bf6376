// Tool parameter schemas (JSON Schema) written as the TypeScript-like types
// gpt-oss was trained to read, in the two dialects that exist:
//  * harmony_typescript: openai-harmony's renderer (the reference), used for
//    harmony-style prompts;
//  * hf_template_typescript: the `render_typescript_type` macro of the HF
//    chat template (chat_template.jinja of openai/gpt-oss-20b), used for
//    prompts rendered the way HF's apply_chat_template does.
// Non-string defaults are written by json_text.hpp's writers, as each
// reference writes them (serde_json for harmony, json.dumps for the template).
//
// Schemas are nlohmann::ordered_json so properties keep their order.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "gptoss/core/error.hpp"
#include "gptoss/text/json_text.hpp"
#include "gptoss/text/utf8.hpp"

namespace gptoss::text {

namespace detail {

inline const ordered_json* member(const ordered_json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}
inline const std::string* string_member(const ordered_json& object, const char* key) {
  const ordered_json* m = member(object, key);
  return m != nullptr && m->is_string() ? &m->get_ref<const std::string&>() : nullptr;
}
inline bool true_member(const ordered_json& object, const char* key) {
  const ordered_json* m = member(object, key);
  return m != nullptr && m->is_boolean() && m->get<bool>();
}
inline bool is_enum(const ordered_json& schema) {
  const ordered_json* e = member(schema, "enum");
  return e != nullptr && e->is_array() && !e->empty();
}
/// harmony's rendering of a default value in a comment.
inline std::string harmony_default(const ordered_json& schema, const ordered_json& value) {
  if (value.is_string()) {
    return is_enum(schema) ? value.get<std::string>() : "\"" + value.get<std::string>() + "\"";
  }
  return rust_json_nested(value);
}

/// harmony_typescript without the depth check.
inline std::string harmony_typescript_nested(const ordered_json& schema, const std::string& indent) {
  using detail::member;
  using detail::string_member;
  const auto with_null = [](const ordered_json& variant, std::string type) {
    if (detail::true_member(variant, "nullable") && type.find("null") == std::string::npos) type += " | null";
    return type;
  };
  if (const ordered_json* one_of = member(schema, "oneOf"); one_of != nullptr && one_of->is_array()) {
    std::string out;
    for (const ordered_json& variant : *one_of) {
      out += "\n" + indent + " | ";
      out += with_null(variant, harmony_typescript_nested(variant, indent + "   "));
      std::string comments;
      if (const std::string* d = string_member(variant, "description")) comments = *d;
      if (const ordered_json* def = member(variant, "default")) {
        if (!comments.empty()) comments += ' ';
        comments += "default: ";
        comments += def->is_string() && !detail::is_enum(variant) ? "\"" + def->get<std::string>() + "\"" : rust_json_nested(*def);
      }
      if (!comments.empty()) out += " // " + comments;
    }
    return out;
  }
  const ordered_json* type = member(schema, "type");
  if (type != nullptr && type->is_array()) {
    std::string out;
    for (const ordered_json& t : *type) {
      if (!t.is_string()) continue;
      const std::string name = t.get<std::string>() == "integer" ? "number" : t.get<std::string>();
      if (!out.empty()) out += " | ";
      out += name;
    }
    if (!out.empty()) return out;
  }
  if (type == nullptr || !type->is_string()) return "any";
  const std::string& kind = type->get_ref<const std::string&>();
  if (kind == "object") {
    std::string out;
    if (const std::string* d = string_member(schema, "description")) out += indent + "// " + *d + "\n";
    out += "{\n";
    const ordered_json* properties = member(schema, "properties");
    if (properties != nullptr && properties->is_object()) {
      std::set<std::string> required;
      if (const ordered_json* r = member(schema, "required"); r != nullptr && r->is_array()) {
        for (const ordered_json& name : *r) {
          if (name.is_string()) required.insert(name.get<std::string>());
        }
      }
      for (const auto& [key, value] : properties->items()) {
        const std::string optional = required.count(key) ? "" : "?";
        if (const std::string* title = string_member(value, "title")) out += indent + "// " + *title + "\n" + indent + "//\n";
        const ordered_json* one_of = member(value, "oneOf");
        if (one_of == nullptr) {
          if (const std::string* d = string_member(value, "description")) out += indent + "// " + *d + "\n";
        }
        if (const ordered_json* examples = member(value, "examples"); examples != nullptr && examples->is_array() && !examples->empty()) {
          out += indent + "// Examples:\n";
          for (const ordered_json& example : *examples) {
            if (example.is_string()) out += indent + "// - \"" + example.get<std::string>() + "\"\n";
          }
        }
        if (one_of != nullptr && one_of->is_array()) {
          const std::string* property_description = string_member(value, "description");
          bool skip_description = false;
          if (property_description != nullptr && !one_of->empty()) {
            const std::string* first = string_member((*one_of)[0], "description");
            skip_description = first != nullptr && *first == *property_description;
          }
          bool description_above = false;
          if (!skip_description && property_description != nullptr) {
            out += indent + "// " + *property_description + "\n";
            description_above = true;
          }
          if (const ordered_json* def = member(value, "default")) {
            out += indent + "// default: " + detail::harmony_default(value, *def) + "\n";
          }
          out += indent + key + optional + ":\n";
          for (std::size_t i = 0; i < one_of->size(); ++i) {
            const ordered_json& variant = (*one_of)[i];
            out += indent + " | " + with_null(variant, harmony_typescript_nested(variant, indent + "   "));
            std::string comments;
            if (!(i == 0 && description_above)) {
              const std::string* d = string_member(variant, "description");
              if (d != nullptr && (property_description == nullptr || *d != *property_description)) comments = *d;
            }
            if (const ordered_json* def = member(variant, "default")) {
              if (!comments.empty()) comments += ' ';
              comments += "default: " + detail::harmony_default(variant, *def);
            }
            if (!comments.empty()) out += " // " + comments;
            out += "\n";
          }
          out += indent + ",\n";
          continue;
        }
        out += indent + key + optional + ": " + with_null(value, harmony_typescript_nested(value, indent + "    ")) + ",";
        if (one_of == nullptr) {
          if (const ordered_json* def = member(value, "default")) out += " // default: " + detail::harmony_default(value, *def);
        }
        out += "\n";
      }
    }
    out += indent + "}";
    return out;
  }
  if (kind == "string") {
    if (detail::is_enum(schema)) {
      std::string out;
      for (const ordered_json& v : schema["enum"]) {
        if (!v.is_string()) continue;
        out += out.empty() ? "\"" : " | \"";
        out += v.get<std::string>();
        out += '"';
      }
      if (!out.empty()) return out;
    }
    return "string";
  }
  if (kind == "number" || kind == "integer") return "number";
  if (kind == "boolean") return "boolean";
  if (kind == "array") {
    const ordered_json* items = member(schema, "items");
    return items != nullptr ? harmony_typescript_nested(*items, indent) + "[]" : "Array<any>";
  }
  return "any";
}

}  // namespace detail

/// openai-harmony's json_schema_to_typescript; a schema nested deeper than
/// kMaxJsonDepth is a FormatError.
inline std::string harmony_typescript(const ordered_json& schema, const std::string& indent = "") {
  check_json_depth(schema, "tool parameter schema");
  return detail::harmony_typescript_nested(schema, indent);
}

namespace detail {

/// A chat-template value converted to text with `+`: strings as they are,
/// anything else as JSON.
inline std::string template_string(const ordered_json& value) {
  return value.is_string() ? value.get<std::string>() : python_json(value);
}

inline bool truthy(const ordered_json* value) {
  if (value == nullptr || value->is_null()) return false;
  if (value->is_boolean()) return value->get<bool>();
  if (value->is_string() || value->is_array() || value->is_object()) return !value->empty();
  if (value->is_number()) return value->get<double>() != 0.0;
  return true;
}

inline bool contains_name(const ordered_json* list, const std::string& name) {
  if (list == nullptr || !list->is_array()) return false;
  for (const ordered_json& item : *list) {
    if (item.is_string() && item.get<std::string>() == name) return true;
  }
  return false;
}

/// hf_template_typescript without the depth check.
inline std::string hf_template_typescript_nested(const ordered_json& spec) {
  using detail::member;
  const ordered_json* type = member(spec, "type");
  const std::string kind = type != nullptr && type->is_string() ? type->get<std::string>() : "";
  const bool nullable = detail::truthy(member(spec, "nullable"));
  if (kind == "array") {
    std::string out;
    const ordered_json* items = member(spec, "items");
    if (detail::truthy(items)) {
      const ordered_json* item_type = member(*items, "type");
      const std::string item_kind = item_type != nullptr && item_type->is_string() ? item_type->get<std::string>() : "";
      if (item_kind == "string" || item_kind == "number" || item_kind == "boolean") {
        out = item_kind + "[]";
      } else if (item_kind == "integer") {
        out = "number[]";
      } else {
        const std::string inner = hf_template_typescript_nested(*items);
        // The template compares inner_type|length: characters, not bytes.
        out = inner == "object | object" || utf8::code_points(inner) > 50 ? "any[]" : inner + "[]";
      }
    } else {
      out = "any[]";
    }
    return nullable ? out + " | null" : out;
  }
  if (type != nullptr && type->is_array() && !type->empty()) {
    if (type->size() == 1) return detail::template_string((*type)[0]);
    std::string out;
    for (std::size_t i = 0; i < type->size(); ++i) {
      if (i) out += " | ";
      out += detail::template_string((*type)[i]);
    }
    return out;
  }
  if (const ordered_json* one_of = member(spec, "oneOf"); detail::truthy(one_of) && one_of->is_array()) {
    // The template's object-variant check sets a variable inside a loop,
    // which Jinja scoping discards: every oneOf is written out.
    std::string out;
    for (std::size_t i = 0; i < one_of->size(); ++i) {
      const ordered_json& variant = (*one_of)[i];
      out += hf_template_typescript_nested(variant);
      if (const ordered_json* d = member(variant, "description"); detail::truthy(d)) out += "// " + detail::template_string(*d);
      if (const ordered_json* def = member(variant, "default")) out += std::string(20, ' ') + "// default: " + python_json(*def);
      if (i + 1 < one_of->size()) out += " | \n";
    }
    return out;
  }
  if (kind == "string") {
    if (const ordered_json* e = member(spec, "enum"); detail::truthy(e) && e->is_array()) {
      std::string out = "\"";
      for (std::size_t i = 0; i < e->size(); ++i) {
        if (i) out += "\" | \"";
        out += detail::template_string((*e)[i]);
      }
      return out + "\"";
    }
    return nullable ? "string | null" : "string";
  }
  if (kind == "number" || kind == "integer") return "number";
  if (kind == "boolean") return "boolean";
  if (kind == "object") {
    const ordered_json* properties = member(spec, "properties");
    if (!detail::truthy(properties) || !properties->is_object()) return "object";
    const ordered_json* required = member(spec, "required");
    std::string out = "{\n";
    bool first = true;
    for (const auto& [name, property] : properties->items()) {
      if (!first) out += ", ";
      first = false;
      out += name + (detail::contains_name(required, name) ? "" : "?") + ": \n" + std::string(16, ' ') +
             hf_template_typescript_nested(property);
    }
    return out + "}";
  }
  return "any";
}

}  // namespace detail

/// The HF chat template's render_typescript_type macro (Python Jinja with
/// trim_blocks and lstrip_blocks, as transformers renders it; the odd
/// whitespace of nested objects and oneOf defaults is the template's). A
/// schema nested deeper than kMaxJsonDepth is a FormatError.
inline std::string hf_template_typescript(const ordered_json& spec) {
  check_json_depth(spec, "tool parameter schema");
  return detail::hf_template_typescript_nested(spec);
}

/// The HF chat template's render_tool_namespace macro: `tools` is a list of
/// {"type": "function", "function": {"name", "description", "parameters"}}.
inline std::string hf_template_tool_namespace(const std::string& namespace_name, const ordered_json& tools) {
  using detail::member;
  std::string out = "## " + namespace_name + "\n\nnamespace " + namespace_name + " {\n\n";
  for (const ordered_json& entry : tools) {
    const ordered_json* function = member(entry, "function");
    const ordered_json& tool = function != nullptr ? *function : entry;
    const ordered_json* description = member(tool, "description");
    const ordered_json* name = member(tool, "name");
    out += "// " + (description ? detail::template_string(*description) : "") + "\n";
    out += "type " + (name ? detail::template_string(*name) : "") + " = ";
    const ordered_json* parameters = member(tool, "parameters");
    const ordered_json* properties = parameters ? member(*parameters, "properties") : nullptr;
    if (detail::truthy(parameters) && detail::truthy(properties) && properties->is_object()) {
      const ordered_json* required = member(*parameters, "required");
      out += "(_: {\n";
      for (const auto& [param_name, param] : properties->items()) {
        if (const ordered_json* d = member(param, "description"); detail::truthy(d)) out += "// " + detail::template_string(*d) + "\n";
        out += param_name + (detail::contains_name(required, param_name) ? "" : "?") + ": " + hf_template_typescript(param);
        if (const ordered_json* def = member(param, "default")) {
          if (detail::truthy(member(param, "enum"))) {
            out += ", // default: " + detail::template_string(*def);
          } else if (detail::truthy(member(param, "oneOf"))) {
            out += "// default: " + detail::template_string(*def);
          } else {
            out += ", // default: " + python_json(*def);
          }
        }
        out += ",\n";
      }
      out += "}) => any;\n\n";
    } else {
      out += "() => any;\n\n";
    }
  }
  return out + "} // namespace " + namespace_name;
}

}  // namespace gptoss::text
