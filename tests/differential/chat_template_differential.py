#!/usr/bin/env python3
"""Differential test of `render_chat_template` against chat_template.jinja run by Jinja2.

The oracle is the gpt-oss HF chat template itself (tests/data/tokenizer/
chat_template.jinja), rendered by Python's Jinja2 in the environment that
transformers' apply_chat_template builds: sandboxed, trim_blocks and
lstrip_blocks, the loopcontrols extension, a `tojson` filter that is
json.dumps without ASCII escaping, `raise_exception`, and `strftime_now`
(frozen to the date given). Before it is trusted, the oracle must reproduce
every `hf_template_*` row of harmony_cases.jsonl (rendered by another Jinja
implementation) exactly.

Generated arguments cover system and developer messages (first, and later,
where the template skips them), user turns,
assistant answers with and without thinking, tool calls (with thinking or
content, `function` wrapped or not, a content_type), tool results, function
tools with random JSON schemas (nested objects, arrays, enums, nullables,
oneOf, type lists, defaults of every JSON type and floats of every notation,
descriptions), builtin tools, reasoning effort,
model identity and both add_generation_prompt values, plus malformed
messages the template refuses. For each, both renders must give the same
text, or both must refuse. One fixed seed and one fresh seed per run.

One deliberate difference is not generated: a tool result whose content is
not a string. The template writes it as JSON; the library refuses it (a
Message's content is text, which the template's `tojson` would quote).

Usage: chat_template_differential.py RENDER_DRIVER TEMPLATE HARMONY_CASES [--cases N] [--seed S]
Exit 0: all agree; 1: a difference; 77: Jinja2 is missing (skip).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
from differential_report import Differences, seeds_or_default  # noqa: E402 (this directory)

try:
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("chat_template_differential: Python module `jinja2` not installed (Debian: python3-jinja2); skipped")
    sys.exit(77)

DATE = "2025-08-05"


def template_renderer(path, date):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: date
    with open(path, encoding="utf-8") as f:
        template = env.from_string(f.read())

    def render(kwargs):
        try:
            return {"text": template.render(**kwargs)}
        except Exception as e:  # the template's own errors and Jinja2's (undefined, type)
            return {"error": f"{type(e).__name__}: {e}"}
    return render


TEXTS = ["Hi", "What is 2 + 2?", "R\u00e9ponds en fran\u00e7ais.", "\u65e5\u672c\u8a9e", "line1\nline2",
         "  spaced  ", "tab\there", "quote \" and \\ backslash", "emoji \U0001f642", "<|end|> inside",
         "{\"a\": 1}", "", "ends with newline\n", "'single'"]
NAMES = ["get_weather", "search", "f", "lookup_user", "calc2"]


class Generator:
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def text(self):
        rng = self.rng
        return rng.choice(TEXTS) + (rng.choice(TEXTS) if rng.random() < 0.3 else "")

    def schema(self, depth=0):
        rng = self.rng
        kinds = ["string", "number", "integer", "boolean", "array", "object", "enum", "oneOf", "type list",
                 "untyped", "nullable string", "array of a union"]
        kind = rng.choice(kinds[:4] if depth > 2 else kinds)
        if kind == "array of a union":
            # The template writes any[] when the items' type is longer than 50
            # characters: multi-byte descriptions put it on either side.
            description = "".join(rng.choice("ab \u00e9\u65e5\U0001f642") for _ in range(rng.randint(5, 40)))
            spec = {"type": "array", "items": {"oneOf": [{"type": "number", "description": description},
                                                         {"type": "boolean"}]}}
        elif kind == "enum":
            spec = {"type": "string", "enum": rng.sample(["a", "b", "c d", "\u00e9"], rng.randint(1, 3))}
        elif kind == "nullable string":
            spec = {"type": "string", "nullable": True}
        elif kind == "array":
            spec = {"type": "array"}
            if rng.random() < 0.7:
                spec["items"] = self.schema(depth + 1)
            if rng.random() < 0.3:
                spec["nullable"] = True
        elif kind == "object":
            spec = {"type": "object"}
            if rng.random() < 0.7:
                properties = {f"p{i}": self.schema(depth + 1) for i in range(rng.randint(1, 3))}
                spec["properties"] = properties
                if rng.random() < 0.6:
                    spec["required"] = rng.sample(list(properties), rng.randint(0, len(properties)))
        elif kind == "oneOf":
            spec = {"oneOf": [self.schema(depth + 1) for _ in range(rng.randint(1, 3))]}
        elif kind == "type list":
            spec = {"type": rng.sample(["string", "number", "object", "null"], rng.randint(1, 3))}
        elif kind == "untyped":
            spec = {}
        else:
            spec = {"type": kind}
        if rng.random() < 0.4:
            spec["description"] = self.text() or "d"
        if rng.random() < 0.25:
            if "enum" in spec or "oneOf" in spec:  # the template concatenates these defaults as strings
                spec["default"] = rng.choice(spec.get("enum", ["x"]))
            else:
                spec["default"] = rng.choice([1, 2.5, "x", True, None, [1, 2], {"k": "v"}, 1e-6, 0.0001, 1e15,
                                              1.5e16, -0.0, {"k": [1, 2e-7]}])
        return spec

    def tool(self):
        rng = self.rng
        function = {"name": rng.choice(NAMES), "description": self.text() or "desc"}
        if rng.random() < 0.8:
            properties = {f"arg{i}": self.schema() for i in range(rng.randint(0, 4))}
            function["parameters"] = {"type": "object", "properties": properties}
            if rng.random() < 0.7:
                function["parameters"]["required"] = rng.sample(list(properties), rng.randint(0, len(properties)))
        return {"type": "function", "function": function}

    def malformed_message(self):
        """A message the template refuses."""
        return self.rng.choice([
            {"role": "assistant", "content": "x<|channel|>final<|message|>y"},
            {"role": "assistant", "content": "ok", "thinking": "a<|channel|>analysis<|message|>b"},
            {"role": "assistant", "tool_calls": []},
            {"role": "assistant", "tool_calls": None},
            {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
            {"role": "assistant", "content": "a", "thinking": "b", "tool_calls": [{"function": {"name": "f"}}]},
            {"role": "assistant", "content": "fine", "thinking": None},
            {"role": "assistant"},
            {"role": "user"},
            {"role": "user", "content": None},
            {"role": "user", "content": ["part"]},
        ])

    def arguments(self):
        rng = self.rng
        messages = []
        if rng.random() < 0.5:
            messages.append({"role": rng.choice(["system", "developer"]), "content": self.text()})
        call_open = False  # a tool result is valid only after a tool call, until the next answer
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if 0.78 <= r < 0.97 and not call_open:
                r = 0.0
            if r < 0.33:
                messages.append({"role": "user", "content": self.text()})
            elif r < 0.58:
                message = {"role": "assistant", "content": self.text()}
                if rng.random() < 0.5:
                    message["thinking"] = self.text()
                messages.append(message)
                call_open = False
            elif r < 0.78:
                call = {"name": rng.choice(NAMES),
                        "arguments": rng.choice([{"x": 1}, {"loc": "SF", "n": [1, 2]}, {}, {"s": "\u00e9 \"q\""},
                                                 "{\"raw\": true}", {"t": 1e-7, "big": 1e16, "p": 0.1}])}
                if rng.random() < 0.2:
                    call["content_type"] = "json"
                message = {"role": "assistant",
                           "tool_calls": [{"type": "function", "function": call} if rng.random() < 0.8 else call]}
                w = rng.random()
                if w < 0.3:
                    message["thinking"] = self.text() or "t"
                elif w < 0.5:
                    message["content"] = self.text() or "c"
                messages.append(message)
                call_open = True
            elif r < 0.97:
                messages.append({"role": "tool", "content": self.text()})
            else:
                messages.append(self.malformed_message())
            if rng.random() < 0.04:  # a role the template skips past the first message
                messages.append({"role": rng.choice(["system", "developer", "critic"]), "content": self.text()})
        if all(m["role"] in ("system", "developer") for m in messages):
            messages.append({"role": "user", "content": "hi"})
        kwargs = {"messages": messages, "add_generation_prompt": rng.random() < 0.6}
        if rng.random() < 0.4:
            kwargs["tools"] = [self.tool() for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.3:
            kwargs["builtin_tools"] = rng.sample(["browser", "python"], rng.randint(1, 2))
        if rng.random() < 0.3:
            kwargs["reasoning_effort"] = rng.choice(["low", "medium", "high"])
        if rng.random() < 0.2:
            kwargs["model_identity"] = self.text() or "You are X."
        return kwargs


def run_driver(driver, kwargs_list, work, name):
    path = os.path.join(work, name)
    with open(path, "w", encoding="utf-8") as f:
        for kwargs in kwargs_list:
            f.write(json.dumps(kwargs) + "\n")
    done = subprocess.run([driver, path, DATE], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"chat_template_differential: {driver} failed ({done.returncode}): {done.stderr.strip()}")
    results = [json.loads(line) for line in done.stdout.splitlines()]
    if len(results) != len(kwargs_list):
        sys.exit(f"chat_template_differential: {len(results)} results for {len(kwargs_list)} inputs")
    return results


def agree(expected, got):
    if "error" in expected or "error" in got:
        return "error" in expected and "error" in got
    return expected["text"] == got["text"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("driver")
    parser.add_argument("template")
    parser.add_argument("harmony_cases")
    parser.add_argument("--cases", type=int, default=1500, help="argument sets per seed")
    parser.add_argument("--seed", type=int, action="append", help="seeds (default: 1 and a fresh one)")
    options = parser.parse_args()
    seeds = seeds_or_default(options.seed)
    render = template_renderer(options.template, DATE)

    # The oracle first reproduces the recorded template renders.
    recorded = []
    with open(options.harmony_cases, encoding="utf-8") as f:
        for line in f:
            case = json.loads(line)
            if "template_kwargs" in case:
                recorded.append(case)
    for case in recorded:
        if render(case["template_kwargs"]) != {"text": case["text"]}:
            sys.exit(f"chat_template_differential: the Jinja2 oracle does not reproduce {case['name']}")
    print(f"oracle reproduces the {len(recorded)} recorded template renders")

    differences = Differences("chat_template_differential", "differences", shown=5)
    with tempfile.TemporaryDirectory() as work:
        for seed in seeds:
            generator = Generator(seed)
            kwargs_list = [generator.arguments() for _ in range(options.cases)]
            got = run_driver(options.driver, kwargs_list, work, f"seed{seed}.jsonl")
            refused = 0
            for index, (kwargs, result) in enumerate(zip(kwargs_list, got)):
                expected = render(kwargs)
                refused += "error" in expected
                differences.compare(agree(expected, result), lambda: f"DIFFERENCE seed {seed} case {index}: "
                                    f"{json.dumps(kwargs)}\n  template {json.dumps(expected)}\n"
                                    f"  gptoss   {json.dumps(result)}")
            print(f"seed {seed}: {len(kwargs_list)} argument sets, {refused} refused by the template")
    return differences.exit_code()


if __name__ == "__main__":
    sys.exit(main())
