"""TOML text for messages: where each key stands (file:line), and values quoted back.

tomllib gives values but no positions; `KeyLines` recovers them. A message about a
profile quotes the profile's own text (`toml_text`, `key_text`) and says where.
"""

from __future__ import annotations

import bisect
import json
import re
import tomllib
from collections.abc import Callable
from typing import Any

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

Key = tuple[str | int, ...]

_SCALAR = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:\d{2})?)?"
    r"|[^\s,\]\}#]+"
)


class _Lost(Exception):
    """The scanner met text it does not expect; it resumes at the next line."""


class KeyLines:
    """The line of every key, table header and array element of a TOML text.

    tomllib gives values but no positions, so this scanner walks the (already valid)
    text once: headers, dotted tables, arrays of tables (each element gets its index in
    the key path), quoted and dotted keys, inline tables, and arrays and strings that
    span lines, so a key inside a multi-line string is never mistaken for one.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._starts = [0, *(m.end() for m in re.finditer("\n", text))]
        self._found: dict[Key, int] = {}
        self._arrays: dict[Key, int] = {}
        self._scan()

    def line_of(self, key: Key) -> int:
        """The key's line; for an implicit table, its first key; else its parent's line."""
        if key in self._found:
            return self._found[key]
        if not key:
            return 1
        below = [line for found, line in self._found.items() if found[: len(key)] == key]
        return min(below) if below else self.line_of(key[:-1])

    def _line(self, pos: int) -> int:
        return bisect.bisect_right(self._starts, pos)

    def _note(self, key: Key, pos: int) -> None:
        self._found.setdefault(key, self._line(pos))

    def _char(self) -> str:
        return self._text[self._pos : self._pos + 1]

    def _skip(self, newlines: bool) -> bool:
        text = self._text
        while self._pos < len(text):
            c = text[self._pos]
            if c in " \t" or (newlines and c in "\r\n"):
                self._pos += 1
            elif c == "#":
                end = text.find("\n", self._pos)
                self._pos = len(text) if end < 0 else end
            else:
                break
        return self._pos < len(text)

    def _expect(self, token: str) -> None:
        self._skip(newlines=False)
        if not self._text.startswith(token, self._pos):
            raise _Lost
        self._pos += len(token)

    def _scan(self) -> None:
        table: Key = ()
        while self._skip(newlines=True):
            start = self._pos
            try:
                if self._text.startswith("[[", start):
                    self._pos += 2
                    table = self._header(start, array=True)
                    self._expect("]]")
                elif self._text.startswith("[", start):
                    self._pos += 1
                    table = self._header(start, array=False)
                    self._expect("]")
                else:
                    self._pair(table)
            except (_Lost, IndexError):
                end = self._text.find("\n", max(self._pos, start + 1))
                self._pos = len(self._text) if end < 0 else end + 1

    def _header(self, start: int, array: bool) -> Key:
        raw = self._keys()
        path: list[str | int] = []
        for i, key in enumerate(raw):
            path.append(key)
            prefix = tuple(path)
            if array and i == len(raw) - 1:
                index = self._arrays.get(prefix, -1) + 1
                self._arrays[prefix] = index
                self._note(prefix, start)
                path.append(index)
            elif prefix in self._arrays:
                path.append(self._arrays[prefix])
        self._note(tuple(path), start)
        return tuple(path)

    def _keys(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self._skip(newlines=False)
            c = self._char()
            if c in ('"', "'"):
                begin = self._pos
                self._string()
                parts.append(str(tomllib.loads("k = " + self._text[begin : self._pos])["k"]))
            else:
                m = BARE_KEY.match(self._text, self._pos)
                if not m:
                    raise _Lost
                parts.append(m.group())
                self._pos = m.end()
            self._skip(newlines=False)
            if self._char() != ".":
                return tuple(parts)
            self._pos += 1

    def _string(self) -> None:
        text, pos = self._text, self._pos
        quote = text[pos]
        if text.startswith(quote * 3, pos):
            i = pos + 3
            while True:
                if quote == '"' and text[i] == "\\":
                    i += 2
                elif text.startswith(quote * 3, i):
                    extra = 0
                    while extra < 2 and text.startswith(quote, i + 3 + extra):
                        extra += 1
                    i += 3 + extra
                    break
                else:
                    i += 1
        else:
            i = pos + 1
            while text[i] != quote:
                i += 2 if quote == '"' and text[i] == "\\" else 1
            i += 1
        self._pos = i

    def _pair(self, table: Key) -> None:
        """`key = value` at the current position, its key path under `table`."""
        start = self._pos
        keys = self._keys()
        for i in range(1, len(keys) + 1):
            self._note(table + keys[:i], start)
        self._expect("=")
        self._value(table + keys)

    def _items(self, close: str, item: Callable[[int], None]) -> None:
        """The comma-separated items of an array or inline table, up to `close`."""
        self._pos += 1
        index = 0
        while True:
            if not self._skip(newlines=True):
                raise _Lost
            if self._char() == close:
                self._pos += 1
                return
            item(index)
            index += 1
            self._skip(newlines=True)
            if self._char() == ",":
                self._pos += 1

    def _value(self, key: Key) -> None:
        self._skip(newlines=False)
        c = self._char()
        if c in ('"', "'"):
            self._string()
        elif c == "[":

            def element(index: int) -> None:
                self._note((*key, index), self._pos)
                self._value((*key, index))

            self._items("]", element)
        elif c == "{":
            self._items("}", lambda _: self._pair(key))
        else:
            m = _SCALAR.match(self._text, self._pos)
            if not m:
                raise _Lost
            self._pos = m.end()


def key_text(key: str) -> str:
    """A key as a profile writes it: bare if it can be, else quoted."""
    return key if BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def toml_text(value: Any) -> str:
    """A value written back as TOML, to quote the profile's own text in a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key_text(k)} = {toml_text(v)}" for k, v in value.items()) + " }"
    return str(value)


_KINDS = (
    (bool, "true/false"),  # before int: a bool is an int
    (int, "an integer"),
    (float, "a decimal number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a table"),
)


def kind_words(value: Any) -> str:
    """A TOML value's type in words (tomllib gives only these, or a date or time)."""
    return next((words for kind, words in _KINDS if isinstance(value, kind)), "a date or time")


def syntax_error(exc: tomllib.TOMLDecodeError, text: str) -> tuple[int, str]:
    """The line of a TOML syntax error and its message, the position said as a column."""
    message = str(exc)
    m = re.search(r" \(at line (\d+), column (\d+)\)$", message)
    if m:
        return int(m.group(1)), f"{message[: m.start()]} (column {m.group(2)})"
    if message.endswith(" (at end of document)"):
        return max(1, len(text.splitlines())), message.removesuffix(" (at end of document)")
    return 1, message
