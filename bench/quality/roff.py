"""A small, dependency-free roff (man(7) macro package) to plain-text converter.

It does not try to typeset: it keeps the words a reader sees in `man PAGE`, split into the
page's sections, and drops everything else (macro definitions, registers, font and size
changes, motions, comments, conditionals for the typesetter). It understands what the
Linux man-pages project, help2man (GNU coreutils) and DocBook (git) emit:

    .TH .SH .SS .PP/.P/.LP .TP .IP .HP .B/.I/.SM/.SB .BR/.BI/.IB/.IR/.RB/.RI .nf/.fi .EX/.EE
    .UR/.UE .MT/.ME .MR .OP .SY/.YS .TS/.TE (tbl) .EQ/.EN .de/.am/.ig .ds/.as .if/.ie/.el

and the escapes \\f \\s \\( \\[ \\* \\e \\- \\& \\| \\^ \\~ \\0 \\c \\h \\v \\w \\n \\k \\z \\" ...
Unknown requests are ignored, unknown escapes keep their character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

GLYPHS: dict[str, str] = {
    "em": "\u2014",
    "en": "\u2013",
    "hy": "-",
    "mi": "-",
    "aq": "'",
    "dq": '"',
    "lq": "\u201c",
    "rq": "\u201d",
    "oq": "\u2018",
    "cq": "\u2019",
    "bu": "\u2022",
    "co": "\u00a9",
    "rg": "\u00ae",
    "tm": "\u2122",
    "ga": "`",
    "ha": "^",
    "ti": "~",
    "rs": "\\",
    "sl": "/",
    "pl": "+",
    "eq": "=",
    "mu": "\u00d7",
    "di": "\u00f7",
    "+-": "\u00b1",
    "<=": "\u2264",
    ">=": "\u2265",
    "!=": "\u2260",
    "->": "\u2192",
    "<-": "\u2190",
    "ua": "\u2191",
    "da": "\u2193",
    "de": "\u00b0",
    "ct": "\u00a2",
    "ps": "\u00b6",
    "sc": "\u00a7",
    "br": "|",
    "ba": "|",
    "or": "|",
    "Fo": "\u00ab",
    "Fc": "\u00bb",
    "fo": "\u2039",
    "fc": "\u203a",
    "at": "@",
    "sh": "#",
    "Do": "$",
    "Eu": "\u20ac",
    "lB": "[",
    "rB": "]",
    "lC": "{",
    "rC": "}",
    "la": "\u27e8",
    "ra": "\u27e9",
    "ul": "_",
    "ru": "_",
    "dg": "\u2020",
    "dd": "\u2021",
    "aa": "\u00b4",
    "bq": "\u201e",
    "Bq": "\u201e",
    "pi": "\u03c0",
    "*m": "\u03bc",
    "mc": "\u00b5",
    "12": "\u00bd",
    "14": "\u00bc",
    "34": "\u00be",
    "if": "\u221e",
    "no": "\u00ac",
    "ss": "\u00df",
    "Sd": "\u00f0",
    ":a": "\u00e4",
    ":o": "\u00f6",
    ":u": "\u00fc",
    ":A": "\u00c4",
    ":O": "\u00d6",
    ":U": "\u00dc",
    "'e": "\u00e9",
    "'a": "\u00e1",
    "`e": "\u00e8",
    "`a": "\u00e0",
    "^e": "\u00ea",
    ",c": "\u00e7",
    "~n": "\u00f1",
    "'o": "\u00f3",
    "'i": "\u00ed",
    "'u": "\u00fa",
    "oa": "\u00e5",
    "/o": "\u00f8",
    "ae": "\u00e6",
    "r!": "\u00a1",
    "r?": "\u00bf",
    "OK": "\u2713",
    "tno": "\u00ac",
    "sp": " ",
    "fm": "\u2032",
    "sd": "\u2033",
}

# Strings every man page can use (predefined by the man macros, or by groff).
DEFAULT_STRINGS: dict[str, str] = {
    "lq": "\u201c",
    "rq": "\u201d",
    "R": "\u00ae",
    "Tm": "\u2122",
    "S": "",
    "HF": "",
    "aq": "'",
    "Aq": "'",
    "dq": '"',
}

_NO_FILL_ON = {"nf", "EX"}
_NO_FILL_OFF = {"fi", "EE"}
_BREAKS = {"PP", "P", "LP", "sp", "HP", "PD", "RS", "RE", "in", "ne", "bp", "ti", "YS"}
_ALTERNATING = {"BR", "BI", "IB", "IR", "RB", "RI"}
_FONT = {"B", "I", "SM", "SB", "R", "CW"}
_SKIP_TO_DOTDOT = {"de", "de1", "am", "am1", "ig", "dei", "ami"}
_ARG_ESCAPES = set("hvwlLDoxXZHSRbNCY")  # \X'...' forms whose argument is dropped


@dataclass
class Page:
    """A man page as plain text: header fields and (heading, text) sections in order."""

    title: str = ""
    section: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)

    def get(self, heading: str) -> str | None:
        for name, text in self.sections:
            if name.upper() == heading.upper():
                return text
        return None


def split_args(text: str) -> list[str]:
    """Split a request's arguments the way roff does: spaces, or "double quoted"."""
    args: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        if text[i] == '"':
            i += 1
            buf: list[str] = []
            while i < n:
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                if text[i] == "\\" and i + 1 < n:
                    buf.append(text[i : i + 2])
                    i += 2
                    continue
                buf.append(text[i])
                i += 1
            args.append("".join(buf))
        else:
            start = i
            while i < n and text[i] not in " \t":
                i += 2 if text[i] == "\\" and i + 1 < n else 1
            args.append(text[start:i])
    return args


def _read_name(s: str, i: int) -> tuple[str, int]:
    """Read an escape's name argument at s[i]: `x`, `(xx` or `[long name]`."""
    if i >= len(s):
        return "", i
    if s[i] == "(":
        return s[i + 1 : i + 3], i + 3
    if s[i] == "[":
        end = s.find("]", i + 1)
        if end < 0:
            return s[i + 1 :], len(s)
        return s[i + 1 : end], end + 1
    return s[i], i + 1


def _glyph(name: str) -> str:
    if name in GLYPHS:
        return GLYPHS[name]
    m = re.fullmatch(r"u([0-9A-Fa-f]{4,6})(?:_.*)?", name)
    if m:
        try:
            return chr(int(m.group(1), 16))
        except ValueError:
            return ""
    if name.startswith("char") and name[4:].isdigit():
        return chr(int(name[4:]))
    return ""


class Roff:
    """Convert one man page source to a Page."""

    def __init__(self, source: str) -> None:
        self.lines = self._logical_lines(source)
        self.strings: dict[str, str] = dict(DEFAULT_STRINGS)
        self.page = Page()
        self.heading = ""
        self.paragraphs: list[str] = []
        self.current: list[str] = []  # pieces of the paragraph being built
        self.nofill = False
        self.join_next = False  # the previous text ended in \c
        self.tag_pending = False  # after .TP: the next line is a tag on a line of its own
        self.last_ie = True
        self.table_tab = "\t"

    # -- input ---------------------------------------------------------------------------
    @staticmethod
    def _logical_lines(source: str) -> list[str]:
        out: list[str] = []
        pending = ""
        for raw in source.replace("\r\n", "\n").split("\n"):
            line = pending + raw
            pending = ""
            stripped = line.rstrip(" ")
            trailing = len(stripped) - len(stripped.rstrip("\\"))
            if trailing % 2 == 1 and not re.match(r"^[.']\s*\\\"", line):
                pending = stripped[:-1]
                continue
            out.append(line)
        if pending:
            out.append(pending)
        return out

    # -- escapes -------------------------------------------------------------------------
    def text(self, s: str) -> tuple[str, bool]:
        """Interpret escapes in s; returns (text, ends_with_\\c)."""
        out: list[str] = []
        cont = False
        i, n = 0, len(s)
        while i < n:
            ch = s[i]
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            if i + 1 >= n:
                break
            e = s[i + 1]
            i += 2
            if e in '"#':
                break
            if e == "c":
                cont = i >= n or not s[i:].strip()
                continue
            if e in "eE\\":
                out.append("\\")
            elif e == "-":
                out.append("-")
            elif e in " ~0":
                out.append(" ")
            elif e in "&|^):%,/{}apdurtz!?":
                if e == "t":
                    out.append(" ")
            elif e == ".":
                out.append(".")
            elif e == "'":
                out.append("'")
            elif e == "`":
                out.append("`")
            elif e in "fFmMgVYk":
                _, i = _read_name(s, i)
            elif e == "n":
                if i < n and s[i] in "+-":
                    i += 1
                _, i = _read_name(s, i)
            elif e == "$":
                _, i = _read_name(s, i)
            elif e == "s":
                if i < n and s[i] in "+-":
                    i += 1
                if i < n and s[i] in "([":
                    _, i = _read_name(s, i)
                elif i < n and s[i] == "'":
                    end = s.find("'", i + 1)
                    i = n if end < 0 else end + 1
                else:
                    j = i
                    while j < n and j < i + 2 and s[j].isdigit():
                        j += 1
                    i = j
            elif e == "(":
                out.append(_glyph(s[i : i + 2]))
                i += 2
            elif e == "[":
                end = s.find("]", i)
                name = s[i:end] if end >= 0 else s[i:]
                i = n if end < 0 else end + 1
                out.append(_glyph(name.split()[0] if name.split() else ""))
            elif e == "*":
                name, i = _read_name(s, i)
                out.append(self.text(self.strings.get(name.split(" ")[0], ""))[0])
            elif e in _ARG_ESCAPES:
                if i < n:
                    delim = s[i]
                    end = s.find(delim, i + 1)
                    arg = s[i + 1 : end] if end >= 0 else ""
                    i = n if end < 0 else end + 1
                    if e == "h" and arg.strip() and not arg.strip().startswith("-"):
                        out.append(" ")  # a rightward motion separates words
            else:
                out.append(e)
        return "".join(out), cont

    # -- output --------------------------------------------------------------------------
    def emit(self, words: str, cont: bool = False) -> None:
        if self.join_next and self.current:
            self.current[-1] += words.lstrip() if not self.nofill else words
        elif self.current:
            sep = "\n" if (self.nofill or self.tag_pending) else " "
            if self.tag_pending:
                self.tag_pending = False
            self.current.append(sep)
            self.current.append(words)
        else:
            self.current.append(words)
        self.join_next = cont
        if self.tag_pending and not cont and len(self.current) >= 1:
            # the tag line itself was just emitted; the body starts on its own line
            self.current.append("\n")
            self.current.append("")
            self.tag_pending = False

    def brk(self) -> None:
        text = "".join(self.current)
        if self.nofill:
            text = "\n".join(x.rstrip() for x in text.split("\n")).strip("\n")
        else:
            text = "\n".join(re.sub(r"[ \t]+", " ", x).strip() for x in text.split("\n"))
            text = text.strip()
        if text.strip():
            self.paragraphs.append(text)
        self.current = []
        self.join_next = False

    def new_section(self, heading: str) -> None:
        self.brk()
        if self.heading or self.paragraphs:
            self.page.sections.append((self.heading, "\n\n".join(self.paragraphs)))
        self.heading = heading
        self.paragraphs = []

    # -- conditionals --------------------------------------------------------------------
    def _cond(self, rest: str) -> tuple[bool, str]:
        """Evaluate an .if/.ie condition (nroff, groff); returns (value, body)."""
        rest = rest.lstrip()
        neg = False
        while rest.startswith("!"):
            neg = not neg
            rest = rest[1:]
        value = False
        if rest[:1] in ("n", "t", "o", "e", "v"):
            value = rest[0] in ("n", "o")
            body = rest[1:]
        elif rest[:1] in ("d", "r", "c", "F", "m", "S"):
            m = re.match(r"\S+\s+\S+", rest)
            body = rest[m.end() :] if m else ""
            value = rest[0] == "d" and rest[1:].split()[0].lstrip() in self.strings if m else False
        elif rest[:1] in ("'", '"', "|", "?"):
            delim = rest[0]
            a_end = rest.find(delim, 1)
            b_end = rest.find(delim, a_end + 1) if a_end >= 0 else -1
            if b_end < 0:
                return False, ""
            a = self.text(rest[1:a_end])[0]
            b = self.text(rest[a_end + 1 : b_end])[0]
            value = a == b
            body = rest[b_end + 1 :]
        else:
            m = re.match(r"(\\n[(\[]?\.?g\]?|\\n\(\.g)", rest)
            if m:
                value = True  # groff
                body = rest[m.end() :]
            else:
                m = re.match(r"\S+", rest)
                body = rest[m.end() :] if m else ""
                value = False
        return (not value if neg else value), body

    def _block(self, body: str, idx: int) -> tuple[list[str], int]:
        """Collect a conditional body starting at lines[idx]; returns (lines, next index)."""
        body = body.lstrip()
        if not body.startswith("\\{"):
            return ([body] if body.strip() else []), idx
        depth = 0
        collected: list[str] = []
        line = body
        while True:
            depth += line.count("\\{") - line.count("\\}")
            cleaned = line.replace("\\{", "").replace("\\}", "")
            if cleaned.strip() and cleaned.strip() not in (".", "'"):
                collected.append(cleaned.lstrip() if cleaned.lstrip()[:1] in ".'" else cleaned)
            if depth <= 0 or idx >= len(self.lines):
                break
            line = self.lines[idx]
            idx += 1
        return collected, idx

    # -- tbl -----------------------------------------------------------------------------
    def table(self, idx: int) -> int:
        lines: list[str] = []
        while idx < len(self.lines) and not re.match(r"^[.']\s*TE\b", self.lines[idx]):
            lines.append(self.lines[idx])
            idx += 1
        idx += 1
        tab = "\t"
        j = 0
        if lines and lines[0].rstrip().endswith(";"):
            m = re.search(r"tab\s*\((.)\)", lines[0])
            if m:
                tab = m.group(1)
            j = 1
        while j < len(lines) and not lines[j].rstrip().endswith("."):
            j += 1
        j += 1
        self.brk()
        saved = self.nofill
        self.nofill = True
        in_format = False  # after .T&: new format lines, up to one ending in "."
        for line in lines[j:]:
            stripped = line.strip()
            if re.match(r"^[.']\s*T&", line):
                in_format = True
                continue
            if in_format:
                in_format = not stripped.endswith(".")
                continue
            if stripped in ("_", "=", "T}", ""):
                continue
            if re.match(r"^[.']", line):
                self.request(line)
                continue
            cells = line.split(tab)
            words = "  ".join(self.text(c.replace("T{", "").replace("T}", ""))[0] for c in cells)
            if words.strip():
                self.emit(words.strip())
        self.brk()
        self.nofill = saved
        return idx

    # -- requests ------------------------------------------------------------------------
    def request(self, line: str) -> None:
        m = re.match(r"^[.']\s*(\S*)\s*(.*)$", line)
        if not m:
            return
        name, rest = m.group(1), m.group(2)
        if name.startswith('\\"') or not name:
            return
        args = split_args(rest)
        if name == "TH":
            self.page.title = self.text(args[0])[0] if args else ""
            self.page.section = self.text(args[1])[0] if len(args) > 1 else ""
        elif name == "SH":
            self.new_section(self.text(" ".join(args))[0].strip())
        elif name == "SS":
            self.brk()
            heading = self.text(" ".join(args))[0].strip()
            if heading:
                self.paragraphs.append(heading)
        elif name in _NO_FILL_ON:
            self.brk()
            self.nofill = True
        elif name in _NO_FILL_OFF:
            self.brk()
            self.nofill = False
        elif name == "br":
            if self.current and not self.join_next:
                self.current.append("\n")
                self.current.append("")
        elif name in _BREAKS:
            self.brk()
        elif name == "TP":
            self.brk()
            self.tag_pending = True
        elif name == "IP":
            self.brk()
            tag = self.text(args[0])[0].strip() if args else ""
            if tag:
                self.emit(tag)
                self.current.append("\n")
                self.current.append("")
        elif name in _FONT:
            if args:
                words, cont = self.text(" ".join(args))
                self.emit(words, cont)
        elif name in _ALTERNATING:
            if args:
                words, cont = self.text("".join(args))
                self.emit(words, cont)
        elif name == "MR":
            if args:
                words = f"{args[0]}({args[1] if len(args) > 1 else ''}){''.join(args[2:])}"
                self.emit(self.text(words)[0])
        elif name == "OP":
            if args:
                self.emit(self.text("[" + " ".join(args) + "]")[0])
        elif name == "SY":
            self.brk()
            if args:
                self.emit(self.text(args[0])[0])
        elif name in ("UE", "ME"):
            if args:
                self.join_next = True
                self.emit(self.text("".join(args))[0])
        elif name in ("ds", "ds1", "as", "as1"):
            parts = rest.split(None, 1)
            if parts:
                value = parts[1] if len(parts) > 1 else ""
                if value.startswith('"'):
                    value = value[1:]
                key = parts[0]
                if name.startswith("as"):
                    self.strings[key] = self.strings.get(key, "") + value
                else:
                    self.strings[key] = value
        # everything else (.RS/.RE handled above, .ft, .ad, .na, .nh, .hy, .IX, .UR, .MT,
        # .PD, .so, .nr, .rm, .ta, .ll, .lf, .tr, user macros, ...) prints nothing.

    # -- main loop -----------------------------------------------------------------------
    def run(self) -> Page:
        idx = 0
        queue: list[str] = []
        while queue or idx < len(self.lines):
            if queue:
                line = queue.pop(0)
            else:
                line = self.lines[idx]
                idx += 1
            if re.match(r"^[.']\s*\\\"", line) or re.match(r"^[.']\s*\\#", line):
                continue
            m = re.match(r"^[.']\s*(\S+)\s*(.*)$", line)
            if line[:1] in (".", "'") and m:
                req, rest = m.group(1), m.group(2)
                if req in _SKIP_TO_DOTDOT:
                    end = ".."
                    if req == "ig" and rest.strip():
                        end = "." + rest.split()[0]
                    while idx < len(self.lines) and self.lines[idx].strip() != end:
                        idx += 1
                    idx += 1
                    continue
                if req in ("if", "ie", "el"):
                    if req == "el":
                        value, body = not self.last_ie, rest
                    else:
                        value, body = self._cond(rest)
                        if req == "ie":
                            self.last_ie = value
                    if queue:
                        # a body spanning lines cannot start inside a queued line; treat flat
                        block = [body.replace("\\{", "").replace("\\}", "")]
                    else:
                        block, idx = self._block(body, idx)
                    if value:
                        queue = block + queue
                    continue
                if req in ("TS",):
                    idx = self.table(idx)
                    continue
                if req == "EQ":
                    while idx < len(self.lines) and not re.match(r"^[.']\s*EN", self.lines[idx]):
                        idx += 1
                    idx += 1
                    continue
                if req.startswith("\\}") or req == "\\}":
                    continue
                self.request(line)
                continue
            if line[:1] in (".", "'"):
                continue
            words, cont = self.text(line)
            if not line.strip():
                if not self.nofill:
                    self.brk()
                else:
                    self.emit("")
                continue
            if not self.nofill and line[:1] in (" ", "\t") and self.current:
                self.current.append("\n")
                self.current.append("")
                self.join_next = True
            if not self.nofill:
                words = words.lstrip() if cont else words.strip()
            self.emit(words, cont)
        self.new_section("")
        self.page.sections = [(h, t) for h, t in self.page.sections if h or t]
        return self.page


def to_page(source: str) -> Page:
    """Parse one man page's roff source."""
    return Roff(source).run()
