"""ANSI colours to HTML: SGR codes become ``<span class="...">``, everything else is
escaped; other escape sequences and control characters are dropped.

Classes: ``fN``/``bN`` for the 16 foreground/background colours (0-7 normal, 8-15
bright; ``38;5;N`` and ``48;5;N`` with N < 16 map to them), ``b`` bold, ``d`` dim,
``i`` italic, ``u`` underline, ``x`` strike-through, ``r`` reverse. 256-colour and
true-colour codes are consumed and ignored. A carriage return keeps what a terminal
would show: the text after the last one.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

TOKEN = re.compile(
    r"\x1b\[([0-9;:]*)m"  # SGR
    r"|\x1b\[[0-9;?<=>]*[ -/]*[@-~]"  # other CSI (cursor moves, erase line, ...)
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC (titles, hyperlinks)
    r"|\x1b[@-_]?"  # two-character escapes, or a lone ESC
    r"|[\x00-\x08\x0b-\x1f\x7f]"  # other control characters (tab is kept)
)


@dataclass
class AnsiState:
    """The SGR attributes in effect; carried from one line to the next."""

    fg: int | None = None
    bg: int | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False
    strike: bool = False
    reverse: bool = False

    def classes(self) -> str:
        out = []
        if self.fg is not None:
            out.append(f"f{self.fg}")
        if self.bg is not None:
            out.append(f"b{self.bg}")
        for flag, name in (
            (self.bold, "b"),
            (self.dim, "d"),
            (self.italic, "i"),
            (self.underline, "u"),
            (self.strike, "x"),
            (self.reverse, "r"),
        ):
            if flag:
                out.append(name)
        return " ".join(out)

    def apply(self, params: str) -> None:
        codes = [
            int(p) if p.isascii() and p.isdigit() else 0 for p in re.split(r"[;:]", params)
        ] or [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            i += 1
            if c == 0:
                self.__init__()  # type: ignore[misc]
            elif c == 1:
                self.bold = True
            elif c == 2:
                self.dim = True
            elif c == 3:
                self.italic = True
            elif c == 4:
                self.underline = True
            elif c == 7:
                self.reverse = True
            elif c == 9:
                self.strike = True
            elif c == 22:
                self.bold = self.dim = False
            elif c == 23:
                self.italic = False
            elif c == 24:
                self.underline = False
            elif c == 27:
                self.reverse = False
            elif c == 29:
                self.strike = False
            elif 30 <= c <= 37:
                self.fg = c - 30
            elif 90 <= c <= 97:
                self.fg = c - 90 + 8
            elif 40 <= c <= 47:
                self.bg = c - 40
            elif 100 <= c <= 107:
                self.bg = c - 100 + 8
            elif c == 39:
                self.fg = None
            elif c == 49:
                self.bg = None
            elif c in (38, 48) and i < len(codes):
                mode = codes[i]
                if mode == 5 and i + 1 < len(codes):
                    n = codes[i + 1]
                    colour = n if n < 16 else None
                    if c == 38:
                        self.fg = colour
                    else:
                        self.bg = colour
                    i += 2
                elif mode == 2:
                    i += 4  # r, g, b: ignored
                else:
                    i += 1


def render_line(text: str, state: AnsiState) -> str:
    """One line (without its newline) as HTML; updates ``state``."""
    text = text.rstrip("\r")
    if "\r" in text:  # a progress bar redrawn in place: show its last state
        overwritten, _, text = text.rpartition("\r")
        for m in TOKEN.finditer(overwritten):
            if m.group(1) is not None:
                state.apply(m.group(1))
    out: list[str] = []
    pos = 0

    def emit(segment: str) -> None:
        if not segment:
            return
        classes = state.classes()
        escaped = html.escape(segment, quote=False)
        out.append(f'<span class="{classes}">{escaped}</span>' if classes else escaped)

    for m in TOKEN.finditer(text):
        emit(text[pos : m.start()])
        if m.group(1) is not None:
            state.apply(m.group(1))
        pos = m.end()
    emit(text[pos:])
    return "".join(out)


def plain(text: str) -> str:
    """The text a person sees: escape sequences and control characters removed."""
    text = text.rstrip("\r").rpartition("\r")[2]
    return TOKEN.sub("", text)


# The 16 colours, light theme (dark enough on white), and the attributes.
CSS = """
.f0{color:#3b3b3b}.f1{color:#c4261d}.f2{color:#2a7d2e}.f3{color:#9a6a00}
.f4{color:#2353b8}.f5{color:#9b2fae}.f6{color:#16808a}.f7{color:#6e6e6e}
.f8{color:#767676}.f9{color:#e0443a}.f10{color:#3c9a40}.f11{color:#b58400}
.f12{color:#3f74e0}.f13{color:#c04bd4}.f14{color:#1ea3ae}.f15{color:#9a9a9a}
.b0{background:#3b3b3b;color:#fff}.b1{background:#fbd5d3}.b2{background:#d4f0d5}
.b3{background:#fbeec2}.b4{background:#d5e1fb}.b5{background:#f1d6f6}
.b6{background:#cdeff1}.b7{background:#e8e8e8}.b8{background:#8a8a8a;color:#fff}
.b9{background:#ffb3ad}.b10{background:#b4e6b6}.b11{background:#ffe59a}
.b12{background:#b6ccfa}.b13{background:#ecbcf5}.b14{background:#aee8ec}.b15{background:#fff}
.b{font-weight:600}.d{opacity:.7}.i{font-style:italic}.u{text-decoration:underline}
.x{text-decoration:line-through}.r{filter:invert(1)}
"""
