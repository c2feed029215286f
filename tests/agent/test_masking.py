"""app/agent/masking.py: each secret and its encodings are masked in a stream that arrives
in arbitrary pieces, also with line breaks inserted anywhere inside; ordinary text is
left alone. The end-to-end cases run real bash steps (base64 -w, fold, od)."""

from __future__ import annotations

import base64
import random
import string
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from app.agent import runner
from app.agent.masking import MIN_SPLIT_LEN, Masker, secret_forms
from app.agent.runner import StepSpec, run_steps

ROOT = Path(__file__).resolve().parents[2]
# "+" and "/" in its standard base64, a space and a non-ASCII letter for the URL forms.
SECRET = "s3cr3t token>?~é-Ωmega!"


def mask_all(secrets: list[str], text: str) -> str:
    m = Masker(secrets)
    return m.feed(text) + m.finish()


def fed_in(secrets: list[str], pieces: list[str]) -> str:
    m = Masker(secrets)
    return "".join(m.feed(p) for p in pieces) + m.finish()


def encodings(secret: str) -> dict[str, str]:
    raw = secret.encode()
    return {
        "plain": secret,
        "base64": base64.b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64 url-safe": base64.urlsafe_b64encode(raw).decode(),
        "base64 of echo (a newline after it)": base64.b64encode(raw + b"\n").decode(),
        "url-encoded": quote(secret, safe=""),
        "url-encoded, + for spaces": quote_plus(secret, safe=""),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
    }


def test_the_runner_still_exports_the_masker() -> None:
    assert runner.Masker is Masker and runner.secret_forms is secret_forms


def test_the_encodings_differ_so_each_is_tested() -> None:
    forms = encodings(SECRET)
    assert len(set(forms.values())) == len(forms)


@pytest.mark.parametrize("name", list(encodings(SECRET)))
def test_each_encoding_is_masked(name: str) -> None:
    form = encodings(SECRET)[name]
    out = mask_all([SECRET], f"before {form} after\n")
    assert out.startswith("before ***") and out.endswith(" after\n"), out
    assert form not in out
    if name == "base64 of echo (a newline after it)":  # the last group depends on "\n"
        rest = out.removeprefix("before ***").removesuffix(" after\n")
        assert form.endswith(rest) and len(rest) <= 4, out
    else:
        assert out == "before *** after\n"


def test_each_line_of_a_multi_line_secret_is_masked_alone() -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END-"
    out = mask_all([key], "line two: BKcwggSjAgEAAoIBAQC7 done\n")
    assert out == "line two: *** done\n"


@pytest.mark.parametrize("name", list(encodings(SECRET)))
@pytest.mark.parametrize("brk", ["\n", "\r\n", "\r"])
def test_a_line_break_anywhere_inside_a_form_is_masked(name: str, brk: str) -> None:
    form = encodings(SECRET)[name]
    if name == "base64 of echo (a newline after it)":
        form = form[: (len(SECRET.encode()) // 3) * 4]  # the part that is masked
    for at in range(1, len(form)):
        text = f"x {form[:at]}{brk}{form[at:]} y\n"
        assert mask_all([SECRET], text) == f"x ***{brk}*** y\n", (at, text)


def test_a_form_folded_into_many_lines_is_masked_line_by_line() -> None:
    secret = "".join(random.Random(1).choices(string.ascii_letters + string.digits, k=120))
    b64 = base64.encodebytes(secret.encode()).decode()  # base64 -w 76: lines of 76
    assert b64.count("\n") == 3
    assert mask_all([secret], b64) == "***\n***\n***\n"
    folded = "\n".join(secret[i : i + 7] for i in range(0, len(secret), 7)) + "\n"
    assert mask_all([secret], folded) == "***\n" * folded.count("\n")
    hexdump = "\n".join(secret.encode().hex()[i : i + 60] for i in range(0, 240, 60)) + "\n"
    assert mask_all([secret], hexdump) == "***\n" * 4  # xxd -p


def test_short_forms_are_not_masked_across_lines() -> None:
    """Below MIN_SPLIT_LEN a split match would hide ordinary text: only whole ones."""
    short = "q7#z"
    assert len(short) < MIN_SPLIT_LEN
    assert mask_all([short], "q7\n#z and q7#z\n") == "q7\n#z and ***\n"


def test_blank_lines_inside_a_form_are_line_breaks_too() -> None:
    secret = "correct-horse-battery"
    assert mask_all([secret], "correct-horse-\n\r\n\nbattery\n") == "***\n\r\n\n***\n"


SPLIT_TEXT = (
    f"a {SECRET} b\n"
    f"{encodings(SECRET)['base64'][:9]}\n{encodings(SECRET)['base64'][9:]}\n"
    f"hex={encodings(SECRET)['hex'][:30]}\r\n{encodings(SECRET)['hex'][30:]};\n"
    f"tail {SECRET[:5]}\n{SECRET[5:]}"
)
SPLIT_MASKED = "a *** b\n***\n***\nhex=***\r\n***;\ntail ***\n***"


def test_the_split_text_masks_as_expected_in_one_piece() -> None:
    assert mask_all([SECRET], SPLIT_TEXT) == SPLIT_MASKED


def test_any_one_chunk_boundary_gives_the_same_output() -> None:
    for cut in range(len(SPLIT_TEXT) + 1):
        got = fed_in([SECRET], [SPLIT_TEXT[:cut], SPLIT_TEXT[cut:]])
        assert got == SPLIT_MASKED, cut


def test_two_chunk_boundaries_at_every_offset_give_the_same_output() -> None:
    n = len(SPLIT_TEXT)
    for a in range(n + 1):
        for b in range(a, n + 1, 3):
            got = fed_in([SECRET], [SPLIT_TEXT[:a], SPLIT_TEXT[a:b], SPLIT_TEXT[b:]])
            assert got == SPLIT_MASKED, (a, b)


def test_one_character_at_a_time() -> None:
    assert fed_in([SECRET], list(SPLIT_TEXT)) == SPLIT_MASKED


def test_what_cannot_be_a_secret_is_released_at_once() -> None:
    m = Masker([SECRET])
    assert m.feed("no secret here\n") == "no secret here\n"
    assert m.feed("half: s3cr") == "half: "  # could be the start: held
    assert m.feed("ew\n") == "s3crew\n"  # it was not
    assert m.feed(f"{SECRET[:6]}\n") == ""  # a split secret may continue after "\n"
    assert m.finish() == f"{SECRET[:6]}\n"


def _ordinary_text() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rng = random.Random(7)
    numbers = "\n".join(
        f"step {i} loss={rng.random():.5f} sha={rng.getrandbits(160):040x} n={rng.randrange(10**9)}"
        for i in range(2000)
    )
    return readme + numbers + "\n"


def test_no_false_positives_on_ordinary_text() -> None:
    rng = random.Random(3)
    alphabet = string.ascii_letters + string.digits + "_-"
    secrets = ["".join(rng.choices(alphabet, k=rng.randrange(12, 60))) for _ in range(20)]
    secrets += ["hunter2", "p4ssw0rd!", "ghs_" + "a1B2" * 9]
    text = _ordinary_text()
    assert mask_all(secrets, text) == text
    pieces = [text[i : i + 997] for i in range(0, len(text), 997)]
    assert fed_in(secrets, pieces) == text


def test_forms_are_longest_first_and_without_short_derived_ones() -> None:
    forms = secret_forms(["abc", "x"])
    assert forms[-1] == "abc" and "x" not in forms  # "x": too short to mask
    assert all(len(f) >= 8 for f in forms if f != "abc")  # "616263" is left out
    assert [len(f) for f in forms] == sorted((len(f) for f in forms), reverse=True)


class Recorder:
    def __init__(self) -> None:
        self.chunks: list[str] = []

    async def __call__(self, text: str) -> None:
        self.chunks.append(text)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


async def test_what_real_tools_print_is_masked(tmp_path: Path) -> None:
    """base64 -w, fold and od, run for real by a step, each printing the secret."""
    secret = "Zq9-tRk2_wV7mLp4xNc8bHs1"
    script = "\n".join(
        [
            'printf %s "$SEC" | base64 -w 10; echo',
            'printf %s "$SEC" | fold -w 5; echo',
            "printf %s \"$SEC\" | od -An -tx1 | tr -d ' '",
            'printf %s "$SEC" | base64 | tr "a-z" "A-Z"',  # deliberately transformed
        ]
    )
    rec = Recorder()
    result = await run_steps(
        [StepSpec(0, "leak", script)], cwd=tmp_path, on_log=rec, secrets={"SEC": secret}
    )
    assert result.succeeded
    body = rec.text.split("\n", 1)[1]  # after the step's title line
    flat = body.replace("\n", "")
    for form in (secret, base64.b64encode(secret.encode()).decode(), secret.encode().hex()):
        assert form[:8] not in flat, form
    assert base64.b64encode(secret.encode()).decode().upper() in body  # the documented limit


def test_a_long_key_file_is_masked_whole_and_in_pieces() -> None:
    rng = random.Random(5)
    body = "".join(rng.choices(string.ascii_letters + string.digits + "+/", k=3200))
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    key = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n"
    b64 = base64.b64encode(key.encode()).decode()
    text = f"cat: {key}\nb64: {b64}\n"
    pieces = [text[i : i + 4096] for i in range(0, len(text), 4096)]
    out = fed_in([key], pieces)
    assert body[:64] not in out and b64[:64] not in out
    assert out.startswith("cat: ***") and out.endswith("b64: ***\n")
