#!/usr/bin/env python3
"""Differential test of `gptoss tokenize` against an independent encoder.

The encoder here reads the same tokenizer.json with Python's `regex` module
(which has \\p{..} classes, scoped (?i:..) and lookahead natively) and applies
Hugging Face BPE semantics: added tokens split first, then the pre-tokenizer
pattern, byte-level mapping, `ignore_merges` (a whole piece in the vocabulary
is one token), then merges by rank. It shares no code with the C++ tokenizer
(PCRE2, its own pattern rewrite and merge loop).

It generates strings from pools of hard characters (every Unicode space,
contractions in any case, marks, titlecase and modifier letters, digits of
other scripts, astral characters, controls, special-token text), random code
points and pieces of 100-400 bytes (the long-word merge path), runs the CLI once per mode (`--jsonl`, with and without
`--ordinary`) and compares every string's ids. One fixed seed and one fresh
seed per run; a mismatch prints the seed and the string.

Usage: tokenizer_differential.py GPTOSS_CLI TOKENIZER_JSON [--strings N] [--seed S]
Exit 0: all equal; 1: a mismatch; 77: Python's `regex` module is missing (skip).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
from differential_report import Differences, seeds_or_default  # noqa: E402 (this directory)

try:
    import regex
except ImportError:
    print("tokenizer_differential: Python module `regex` not installed (Debian: python3-regex); skipped")
    sys.exit(77)


def byte_to_unicode_table():
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
                 + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


class ReferenceEncoder:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        steps = spec["pre_tokenizer"]["pretokenizers"]
        split = next(s for s in steps if s["type"] == "Split")
        self.pattern = regex.compile(split["pattern"]["Regex"])
        self.vocab = spec["model"]["vocab"]
        self.merge_rank = {}
        for rank, merge in enumerate(spec["model"]["merges"]):
            left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
            self.merge_rank[(left, right)] = rank
        added = sorted(spec["added_tokens"], key=lambda t: -len(t["content"]))
        self.added_ids = {t["content"]: t["id"] for t in added}
        self.added_pattern = regex.compile("|".join(regex.escape(t["content"]) for t in added))
        self.byte_char = byte_to_unicode_table()
        self.cache = {}

    def bpe(self, piece):
        if piece in self.vocab:
            return [self.vocab[piece]]
        if piece in self.cache:
            return self.cache[piece]
        parts = list(piece)
        while len(parts) > 1:
            ranked = [(self.merge_rank.get((parts[i], parts[i + 1])), i) for i in range(len(parts) - 1)]
            ranked = [r for r in ranked if r[0] is not None]
            if not ranked:
                break
            _, first = min(ranked)
            left, right = parts[first], parts[first + 1]
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == left and parts[i + 1] == right:
                    merged.append(left + right)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.vocab[p] for p in parts]
        self.cache[piece] = ids
        return ids

    def encode_ordinary(self, text):
        ids = []
        for match in self.pattern.finditer(text):
            ids += self.bpe("".join(self.byte_char[b] for b in match.group(0).encode("utf-8")))
        return ids

    def encode(self, text, specials):
        if not specials:
            return self.encode_ordinary(text)
        ids, start = [], 0
        for match in self.added_pattern.finditer(text):
            ids += self.encode_ordinary(text[start:match.start()])
            ids.append(self.added_ids[match.group(0)])
            start = match.end()
        return ids + self.encode_ordinary(text[start:])


POOLS = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  \t\n\r",
    # every White_Space character, and look-alikes that are not (U+180E, U+200B, U+FEFF, U+001C..1F)
    "\u000b\u000c\u0085\u00a0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000"
    "\u180e\u200b\ufeff\u001c\u001d\u001e\u001f",
    "'\"`!?.,;:-_/\\()[]{}<>|@#$%^&*+=~", "'s'S't're'RE've'm'll'LL'd'D'X",
    "\u0301\u0308\u0327\u20dd\u093f\u0e31",  # combining marks (Mn, Me, Mc)
    "\u00e9\u00fc\u00df\u00c7\u00d1\u00f8\u00e5\u00c6\u0152", "\u01c5\u01c8\u01cb\u01f2\u1f88\u1fbc",  # Lt
    "\u02b0\u02b2\u02c6\u3005\u30fc", "\u4e2d\u6587\u5b57\u65e5\u672c\u8a9e\ud55c\uad6d\uc5b4\u0e44\u0e17\u0e22",
    "\U00020000\U00020001\U0001d400\U0001d41a\U0001d7d8",
    "\u0660\u0661\u06f5\u06f6\uff10\uff11\u216b\u217b\u00b2\u00b3\u00bc\u2460",  # Nd, Nl, No
    "\U0001f600\U0001f44d\U0001f3fd\U0001f468\u200d\U0001f469\u200d\U0001f467\U0001f1fa\U0001f1f8",
    "\u0000\u0001\u001b\u007f\u0080\u009f", "\ue000\uf8ff", "\u0391\u0392\u03b1\u03b2\u03a3\u03c3\u03c2",
    "\u0410\u0411\u0430\u0431", "\u05d0\u05d1\u05d2", "\u0639\u0631\u0628\u064a", "\ufb01\ufb02",
    "\u0130\u0131\u017f\u212a",
    "<|end|>", "<|start|>", "<|reserved_200100|>", "<|endoftext|>", "<|", "|>",
]
WORDS = ["don't", "I'LL", "we've", "HELLO", "Hello", "hello", "x", "123456789", "3.14",
         "http://a.b/c", "foo\n\nbar", "   \n", "\r\n", "a  b", "tab\there", " \n \n", "  x"]


def pooled_string(rng):
    parts = []
    for _ in range(rng.randint(1, 12)):
        if rng.random() < 0.2:
            parts.append(rng.choice(WORDS))
        else:
            pool = rng.choice(POOLS)
            parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
    return "".join(parts)


# Random code points are drawn only when this Python's Unicode tables are not
# newer than those of the PCRE2 the tokenizer runs on (Debian 12: Unicode 14):
# characters assigned later are unassigned there, and split differently.
PCRE2_UNICODE = (14, 0, 0)
RANDOM_CODE_POINTS = tuple(int(x) for x in unicodedata.unidata_version.split(".")) <= PCRE2_UNICODE


def same_category_in_both_tables(c):
    """True when the `regex` module's tables (which may be of another Unicode
    version) give c the general category that unicodedata gives it."""
    return regex.match(r"\p{gc=" + unicodedata.category(c) + "}", c) is not None


def code_point_string(rng):
    if not RANDOM_CODE_POINTS:
        return pooled_string(rng)
    chars = []
    for _ in range(rng.randint(1, 30)):
        r = rng.random()
        high = 0x7F if r < 0.3 else 0x3000 if r < 0.6 else 0xFFFF if r < 0.9 else 0x10FFFF
        low = 0 if r < 0.3 else 0x80 if r < 0.6 else 0x3000 if r < 0.9 else 0x10000
        c = rng.randint(low, high)
        # No lone surrogates (not UTF-8), and only characters assigned in this
        # Python's Unicode version, with the same category in both of its
        # tables: what an unassigned character matches is not defined.
        while (0xD800 <= c <= 0xDFFF or unicodedata.category(chr(c)) == "Cn"
               or not same_category_in_both_tables(chr(c))):
            c = rng.randint(low, high)
        chars.append(chr(c))
    return "".join(chars)


LONG_POOLS = ["abcdefghijklmnopqrstuvwxyz", "aaaaab", "\u00e9\u00e8a\u0301", "\u4e2d\u6587\u5b57",
              "!!??..--==", " ", "\n \t", "0123456789", "\u0410\u0430\u0431"]


def long_piece_string(rng):
    """Pieces of 100-400 bytes, which take the long-word merge path."""
    pool = rng.choice(LONG_POOLS)
    prefix = rng.choice(["", " ", "x", "'"])
    return prefix + "".join(rng.choice(pool) for _ in range(rng.randint(60, 200)))


def run_cli(cli, tokenizer, jsonl, ordinary):
    args = [cli, "tokenize", "--tokenizer", tokenizer, "--jsonl", jsonl] + (["--ordinary"] if ordinary else [])
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"tokenizer_differential: {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return [[int(x) for x in line.split(",") if x] for line in done.stdout.splitlines()]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("cli")
    parser.add_argument("tokenizer")
    parser.add_argument("--strings", type=int, default=5000, help="strings per seed")
    parser.add_argument("--seed", type=int, action="append", help="seeds (default: 1 and a fresh one)")
    options = parser.parse_args()
    seeds = seeds_or_default(options.seed)

    reference = ReferenceEncoder(options.tokenizer)
    mismatches = Differences("tokenizer_differential", "mismatches", shown=10)
    with tempfile.TemporaryDirectory() as work:
        for seed in seeds:
            rng = random.Random(seed)
            makers = [code_point_string, pooled_string, pooled_string, pooled_string, long_piece_string]
            texts = [makers[i % len(makers)](rng) for i in range(options.strings)]
            jsonl = os.path.join(work, f"seed{seed}.jsonl")
            with open(jsonl, "w", encoding="utf-8") as f:
                for text in texts:
                    f.write(json.dumps({"text": text}) + "\n")
            for ordinary in (False, True):
                got = run_cli(options.cli, options.tokenizer, jsonl, ordinary)
                if len(got) != len(texts):
                    sys.exit(f"tokenizer_differential: {len(got)} lines of ids for {len(texts)} strings")
                mode = "--ordinary" if ordinary else "specials"
                for index, (text, ids) in enumerate(zip(texts, got)):
                    expected = reference.encode(text, specials=not ordinary)
                    mismatches.compare(ids == expected, lambda: f"MISMATCH seed {seed} string {index} ({mode}): "
                                       f"{text!r}\n  reference {expected}\n  gptoss    {ids}")
            print(f"seed {seed}: {len(texts)} strings, both modes compared")
    return mismatches.exit_code()


if __name__ == "__main__":
    sys.exit(main())
