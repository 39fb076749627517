#!/usr/bin/env python3
r"""What rustfmt's `error_on_line_overflow` would catch, on stable Rust.

rustfmt leaves an expression as written when it cannot fit it in `max_width` (100) and says
nothing; `error_on_line_overflow` (nightly-only) turns that into an error. This script reports,
for every given .rs file:

- code lines longer than 100 characters: lines holding no string literal and no comment, as
  rustfmt's own check exempts those (a long literal or comment is the author's to wrap);
- string literals with a space before a line break (`"word \n  more"`): the shape of a lost line
  continuation (`"word \` lost its backslash), which puts the newline and the next line's
  indentation into the text users see. Outside string literals rustfmt strips trailing spaces,
  so this is what is left of them. SQL and other text meant to span lines is unaffected.

Usage: check-rust-lines.py FILE.rs... Exits 1 when it reports anything.
"""

import sys

MAX_WIDTH = 100


def scan(text):
    """The kind of each character ('code', 'str', 'raw' or 'comment'), and the lines on which an
    ordinary string literal has a space or tab before a line break."""
    kinds = []  # per character
    events = []
    i, n, line = 0, len(text), 1

    def push(kind, count=1):
        nonlocal i, line
        for _ in range(count):
            if i < n:
                if text[i] == "\n":
                    line += 1
                kinds.append(kind)
                i += 1

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            while i < n and text[i] != "\n":
                push("comment")
        elif text.startswith("/*", i):
            depth = 0
            while i < n:
                if text.startswith("/*", i):
                    depth += 1
                    push("comment", 2)
                elif text.startswith("*/", i):
                    depth -= 1
                    push("comment", 2)
                    if depth == 0:
                        break
                else:
                    push("comment")
        elif c in "rbc" and raw_string_start(text, i) is not None:
            hashes, start = raw_string_start(text, i)
            push("raw", start - i)
            end = text.find('"' + "#" * hashes, i)
            end = n if end < 0 else end + 1 + hashes
            push("raw", end - i)
        elif c == '"' or (c in "bc" and text.startswith('"', i + 1) and not ident_before(text, i)):
            push("str", 2 if c != '"' else 1)
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    push("str", 2)
                elif text[i] == "\n" and i > 0 and text[i - 1] in " \t":
                    events.append(line)
                    push("str")
                else:
                    push("str")
            push("str")
        elif c == "'" and char_literal_len(text, i):
            push("str", char_literal_len(text, i))
        else:
            push("code")
    return kinds, events


def ident_before(text, i):
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")


def raw_string_start(text, i):
    """(number of #, index after the opening quote) when a raw string starts at i."""
    if ident_before(text, i):
        return None
    j = i
    if text[j] in "bc":
        j += 1
    if j >= len(text) or text[j] != "r":
        return None
    j += 1
    hashes = 0
    while j < len(text) and text[j] == "#":
        hashes += 1
        j += 1
    if j < len(text) and text[j] == '"':
        return hashes, j + 1
    return None


def char_literal_len(text, i):
    """Length of a char literal starting at i ('a', '\\n', '\\u{..}'), 0 for a lifetime."""
    if text.startswith("\\", i + 1):
        end = text.find("'", i + 3)
        return end - i + 1 if end > 0 else 0
    if i + 2 < len(text) and text[i + 2] == "'":
        return 3
    # Multi-byte characters are one Python character, so 'é' is caught above.
    return 0


def check(path):
    text = open(path, encoding="utf-8").read()
    kinds, events = scan(text)
    problems = []
    pos = 0
    for number, line in enumerate(text.split("\n"), 1):
        line_kinds = set(kinds[pos : pos + len(line)])
        pos += len(line) + 1
        if len(line) > MAX_WIDTH and line_kinds <= {"code"}:
            problems.append(
                f"{path}:{number}: {len(line)} characters (max {MAX_WIDTH}): rustfmt could not "
                "fit this code; shorten it (a local variable, a shorter name) or split it"
            )
    for number in events:
        problems.append(
            f"{path}:{number}: a space before a line break inside a string literal: a lost `\\` "
            "line continuation? (the newline and the next line's indentation become part of the "
            "text); end the line with `\\`"
        )
    return problems


def main():
    problems = [p for path in sys.argv[1:] for p in check(path)]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
