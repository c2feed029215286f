"""Masking secrets in a job's output, which arrives as a stream in arbitrary pieces.

Each secret is masked as it is and in the forms a careless step prints it: base64
(standard and URL-safe, padded or not, and the prefix that stays the same whatever
follows the value, as in ``echo $S | base64``), URL-encoded (``%XX`` and ``+`` for
spaces), hexadecimal (lower and upper case), and each line of a multi-line value. Forms
of at least ``MIN_SPLIT_LEN`` characters are also masked when line breaks (``\\n``,
``\\r``) were inserted anywhere inside them: a value wrapped by ``fold``, a base64 or
``xxd -p`` dump folded at 76 or 60 columns. They are looked for in the text with its line
breaks taken out, and a match is mapped back onto the text; the line breaks of a masked
span are kept (``***\\n***``), so the log keeps its lines.

What is not caught (deliberately transformed values, other encodings, separators other
than line breaks) is listed in README.md, "Masking". Standard library only (the agent's).
"""

from __future__ import annotations

import base64
import bisect
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MIN_SECRET_LEN = 3  # shorter values are not masked (they would mask ordinary text)
MIN_SPLIT_LEN = 8  # forms this long are also masked with line breaks inside them
MIN_DERIVED_LEN = 8  # a derived form (encoding, line of a value) shorter is left out
MASK = "***"

_TEXT_RUN = re.compile(r"[^\r\n]+")
_PROBE = 4  # characters of a form's start that select the candidates of a held tail
_Trie = dict[str, "_Trie"]  # a character -> what may follow it ("": a form ends here)


def secret_forms(values: Iterable[str]) -> list[str]:
    """The strings to mask for these secret values, longest first: each value of at
    least ``MIN_SECRET_LEN`` characters and its derived forms of at least
    ``MIN_DERIVED_LEN`` (see the module's doc)."""
    forms: set[str] = set()
    for v in values:
        if len(v) < MIN_SECRET_LEN:
            continue
        forms.add(v)
        derived: set[str] = set()
        raw = v.encode()
        for enc in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            b64 = enc.decode()
            derived.update((b64, b64.rstrip("=")))
            derived.add(b64[: (len(raw) // 3) * 4])  # unchanged by what follows
        derived.update((quote(v, safe=""), quote_plus(v, safe="")))
        derived.update((raw.hex(), raw.hex().upper()))
        # A multi-line secret (a key file) is also masked line by line.
        derived.update(line.strip() for line in v.splitlines())
        forms.update(f for f in derived if len(f) >= MIN_DERIVED_LEN)
    return sorted(forms, key=lambda f: (-len(f), f))


def _flat(text: str) -> str:
    """``text`` without its line breaks."""
    return text.replace("\r", "").replace("\n", "") if "\n" in text or "\r" in text else text


def _trie_pattern(forms: Iterable[str]) -> str:
    """One regex matching any of ``forms``, the longest where several start at one
    place: a trie (one branch per next character, single-child chains flattened, so the
    nesting stays shallow and compiling is quick)."""
    root: _Trie = {}
    for f in forms:
        node = root
        for c in f:
            node = node.setdefault(c, {})
        node[""] = {}  # a form ends here

    def emit(node: _Trie) -> str:
        alts = []
        for c in sorted(k for k in node if k):
            chars, child = [c], node[c]
            while len(child) == 1 and "" not in child:
                ((c, child),) = child.items()
                chars.append(c)
            piece = re.escape("".join(chars))
            if any(k for k in child):
                piece += f"(?:{emit(child)})" + ("?" if "" in child else "")
            alts.append(piece)
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(root)


class _Lines:
    """Maps a position in ``_flat(text)`` back to its position in ``text``."""

    def __init__(self, text: str) -> None:
        self.starts: list[int] = []  # where each run of text starts, in text
        self.flat_starts: list[int] = []  # and in the flat text
        n = 0
        for run in _TEXT_RUN.finditer(text):
            self.starts.append(run.start())
            self.flat_starts.append(n)
            n += run.end() - run.start()
        self.flat_len = n

    def at(self, i: int) -> int:
        """Where character ``i`` of the flat text is (its end, for ``i == len``)."""
        if i >= self.flat_len:
            r = len(self.starts) - 1
            return self.starts[r] + (i - self.flat_starts[r]) if r >= 0 else 0
        r = bisect.bisect_right(self.flat_starts, i) - 1
        return self.starts[r] + (i - self.flat_starts[r])

    def span(self, start: int, end: int) -> tuple[int, int]:
        return self.at(start), self.at(end - 1) + 1


class Masker:
    """Masks secrets in a text stream that arrives in arbitrary pieces.

    ``feed`` returns the text that is safe to send now; a tail that could be the start of
    a secret's form (line breaks included, for the long forms) is held back until more
    text decides it, or ``finish`` releases it.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self.forms = secret_forms(secrets)
        self._held = ""
        # Long forms are matched in the text without its line breaks (and so without
        # their own: a key file's lines may be broken differently); short ones as they are.
        long = sorted({_flat(f) for f in self.forms if len(_flat(f)) >= MIN_SPLIT_LEN})
        short = [f for f in self.forms if len(_flat(f)) < MIN_SPLIT_LEN]
        self._long = re.compile(_trie_pattern(long)) if long else None
        self._short = re.compile(_trie_pattern(short)) if short else None
        self._longest = max((len(f) for f in long), default=0)
        # A held tail: the leftmost start whose rest (line breaks removed, for long
        # forms) begins a form. Candidates come from one regex over the tail (a form's
        # first _PROBE characters, or fewer at the very end); a sorted list confirms.
        self._long_sorted = long
        self._short_prefixes = {f[:k] for f in short for k in range(1, len(f) + 1)}
        self._short_longest = max((len(f) for f in short), default=0)
        probes: _Trie = {}
        for f in long:
            node = probes
            for c in f[:_PROBE]:
                node = node.setdefault(c, {})
        self._probe = re.compile(f"(?={_probe_pattern(probes)})") if probes else None

    def feed(self, text: str) -> str:
        if not self.forms:
            return text
        text = self._held + text
        # Hold back the longest tail that could still grow into a secret's form, and any
        # match that straddles that point; mask and release the rest.
        cut = len(text) - self._partial_suffix(text)
        out: list[str] = []
        pos = 0
        for start, end in self._spans(text):
            if end > cut:
                cut = min(cut, start)
                break
            out.append(text[pos:start])
            out.append(_masked(text[start:end]))
            pos = end
        out.append(text[pos:cut])
        self._held = text[cut:]
        return "".join(out)

    def finish(self) -> str:
        text, self._held = self._held, ""
        out: list[str] = []
        pos = 0
        for start, end in self._spans(text):
            out.append(text[pos:start])
            out.append(_masked(text[start:end]))
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """Where forms are in ``text``: sorted, overlapping matches merged."""
        found: list[tuple[int, int]] = []
        if self._short is not None:
            found.extend(m.span() for m in self._short.finditer(text))
        if self._long is not None:
            flat = _flat(text)
            if flat is text:
                found.extend(m.span() for m in self._long.finditer(text))
            else:
                lines: _Lines | None = None
                for m in self._long.finditer(flat):
                    lines = lines or _Lines(text)
                    found.append(lines.span(m.start(), m.end()))
        if len(found) < 2:
            return found
        found.sort()
        merged = [found[0]]
        for start, end in found[1:]:
            if start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def _partial_suffix(self, text: str) -> int:
        """The length of the longest tail of ``text`` that a form could start with."""
        best = 0
        for k in range(min(self._short_longest, len(text)), 0, -1):  # short forms: as is
            if text[-k:] in self._short_prefixes:
                best = k
                break
        if self._probe is None:
            return best
        # Long forms: in the tail with its line breaks taken out, a window that holds at
        # least as many other characters as the longest form.
        size = 3 * self._longest
        window = text[-size:]
        flat = _flat(window)
        while len(flat) < self._longest and len(window) < len(text):
            size *= 2
            window = text[-size:]
            flat = _flat(window)
        for m in self._probe.finditer(flat, max(0, len(flat) - self._longest + 1)):
            tail = flat[m.start() :]
            i = bisect.bisect_left(self._long_sorted, tail)
            if i < len(self._long_sorted) and self._long_sorted[i].startswith(tail):
                start = m.start() if flat is window else _Lines(window).at(m.start())
                return max(best, len(window) - start)
        return best


def _probe_pattern(node: _Trie) -> str:
    """The start of a long form: its first ``_PROBE`` characters, or fewer at the end."""
    alts = []
    for c in sorted(node):
        child = node[c]
        alts.append(re.escape(c) + (f"(?:{_probe_pattern(child)}|\\Z)" if child else ""))
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _masked(span: str) -> str:
    """``***`` for a matched span; one per line when it holds line breaks."""
    if "\n" not in span and "\r" not in span:
        return MASK
    return _TEXT_RUN.sub(MASK, span)
