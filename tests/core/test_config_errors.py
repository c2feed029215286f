"""Every error carries file, line, column and a human message; all are reported at once."""

from __future__ import annotations

import textwrap

import pytest

from app.core.config.errors import ConfigError, ConfigInvalid
from app.core.config.loader import load_config


def errors_of(text: str) -> list[ConfigError]:
    with pytest.raises(ConfigInvalid) as info:
        load_config(textwrap.dedent(text))
    return info.value.errors


BASE = """\
version: 1
jobs:
  unit:
    steps:
      - run: pytest
"""

# (case id, yaml, line, column, message fragment)
CASES = [
    ("unknown needs", BASE + "  gpu-tests:\n    needs: [unti]\n    steps: [{run: x}]\n",
     7, 13, "job 'gpu-tests' needs 'unti', which is not a job (did you mean 'unit'?)"),
    ("needs as string", BASE + "  b:\n    needs: unitt\n    steps: [{run: x}]\n",
     7, 12, "needs 'unitt', which is not a job (did you mean 'unit'?)"),
    ("needs itself", BASE + "  b:\n    needs: [b]\n    steps: [{run: x}]\n",
     7, 13, "job 'b' needs itself"),
    ("cycle", BASE + "  a:\n    needs: [c]\n    steps: [{run: x}]\n"
                     "  b:\n    needs: [a]\n    steps: [{run: x}]\n"
                     "  c:\n    needs: [b]\n    steps: [{run: x}]\n",
     7, 13, "cycle: a -> c -> b -> a"),
    ("unknown hardware", BASE + "  g:\n    hardware: h10\n    steps: [{run: x}]\n",
     7, 15, "unknown hardware class 'h10' (did you mean 'h100'?); known classes: cpu, t4"),
    ("hardware count too big", BASE + "  g:\n    hardware: h100:16\n    steps: [{run: x}]\n",
     7, 15, "the most in one machine is h100:8"),
    ("bad hardware syntax", BASE + "  g:\n    hardware: 'H100 x 8'\n    steps: [{run: x}]\n",
     7, 15, "must be a hardware spec CLASS or CLASS:COUNT"),
    ("hardware list item", BASE + "  g:\n    hardware: [h100, a10]\n    steps: [{run: x}]\n",
     7, 22, "unknown hardware class 'a10'"),
    ("bad duration", BASE + "  g:\n    timeout: 30 minutes\n    steps: [{run: x}]\n",
     7, 14, "'timeout' must be a duration like 90s, 30m, 2h, 7d"),
    ("timeout too long", BASE + "  g:\n    timeout: 4d\n    steps: [{run: x}]\n",
     7, 14, "longer than the maximum of 72h"),
    ("zero timeout", BASE + "  g:\n    timeout: 0s\n    steps: [{run: x}]\n",
     7, 14, "must be longer than 0s"),
    ("bad size", BASE + "  g:\n    resources: {memory: 64 gigs}\n    steps: [{run: x}]\n",
     7, 25, "must be a size like 512MB, 40GB or 2TB"),
    ("unsatisfiable resources",
     BASE + "  g:\n    resources:\n      gpu: {count: 1, memory: 500GB}\n"
                                       "    steps: [{run: x}]\n",
     8, 7, "no instance type in the catalog satisfies these resources (1 x GPU with >= 500GB"),
    ("unknown gpu type", BASE + "  g:\n    resources:\n      gpu: {type: a101}\n"
                                "    steps: [{run: x}]\n",
     8, 19, "unknown hardware class 'a101' (did you mean"),
    ("unknown top-level key", BASE + "job: {}\n",
     6, 1, "unknown top-level key 'job' (did you mean 'jobs'?)"),
    ("unknown job key", BASE + "  g:\n    hardwre: cpu\n    steps: [{run: x}]\n",
     7, 5, "unknown key 'hardwre' in job 'g' (did you mean 'hardware'?)"),
    ("unknown step key", BASE + "  g:\n    steps:\n      - run: x\n        nme: y\n",
     9, 9, "unknown key 'nme' in job 'g' at 'steps[0]' (did you mean 'name'?)"),
    ("bad job name", BASE + "  'gpu tests!':\n    steps: [{run: x}]\n",
     6, 3, "'gpu tests!' is not a valid job name"),
    ("long job name", BASE + "  " + "j" * 65 + ":\n    steps: [{run: x}]\n",
     6, 3, "is not a valid job name"),
    ("missing steps", BASE + "  g:\n    hardware: cpu\n",
     6, 3, "job 'g' is missing the required key 'steps'"),
    ("empty steps", BASE + "  g:\n    steps: []\n", 7, 12, "job 'g': 'steps' must not be empty"),
    ("step run not string", BASE + "  g:\n    steps: [{run: [a]}]\n",
     7, 19, "job 'g': 'steps[0].run' must be a string, not a list"),
    ("enum typo", BASE + "  g:\n    workload: trian\n    steps: [{run: x}]\n",
     7, 15, "must be one of preprocess, train, inference, batch, test, not 'trian' "
            "(did you mean 'train'?)"),
    ("retry max range", BASE + "  g:\n    retry: {max: 9}\n    steps: [{run: x}]\n",
     7, 18, "'retry.max' must be between 0 and 5, not 9"),
    ("retry reason", BASE + "  g:\n    retry: {when: [spot]}\n    steps: [{run: x}]\n",
     7, 20, "'retry.when[0]' must be one of spot_interruption"),
    ("version", "version: 2\njobs:\n  a:\n    steps: [{run: x}]\n",
     1, 10, "'version' must be 1, not 2"),
    ("missing version", "jobs:\n  a:\n    steps: [{run: x}]\n", 1, 1,
     "missing the required top-level key 'version'"),
    ("no jobs", "version: 1\njobs: {}\n", 2, 7, "'jobs' must not be empty"),
    ("on typo", "version: 1\non:\n  pushh: {}\njobs:\n  a:\n    steps: [{run: x}]\n",
     3, 3, "unknown key 'pushh' in 'on' (did you mean 'push'?)"),
    ("on event typo", "version: 1\non: pushh\njobs:\n  a:\n    steps: [{run: x}]\n",
     2, 5, "'on' must be one of push, pull_request, not 'pushh' (did you mean 'push'?)"),
    ("hardware wrong type", BASE + "  g:\n    hardware: 5\n    steps: [{run: x}]\n",
     7, 15, "job 'g': 'hardware' must be a string or a list, not an integer"),
    ("env null", BASE + "  g:\n    env: {A: }\n    steps: [{run: x}]\n",
     7, 14, "'env.A' must be a string, a number or a boolean, not empty"),
    ("env name", BASE + "  g:\n    env: {1A: x}\n    steps: [{run: x}]\n",
     7, 11, "'1A' is not a valid environment variable name"),
    ("hardware and resources", BASE + "  g:\n    hardware: l4\n    resources: {cpu: 2}\n"
                                      "    steps: [{run: x}]\n",
     8, 5, "job 'g' sets both 'hardware' and 'resources'"),
    ("matrix unknown key", BASE + "  g:\n    matrix: {py: ['3.11']}\n    steps:\n"
                                  "      - run: echo ${{ matrix.pyy }}\n",
     9, 14, "job 'g' uses ${{ matrix.pyy }}, but its matrix has no 'pyy' (did you mean 'py'?)"),
    ("matrix ref without matrix",
     BASE + "  g:\n    env: {A: '${{ matrix.py }}'}\n    steps: [{run: x}]\n",
     7, 14, "job 'g' uses ${{ matrix.py }}, but it has no matrix"),
    ("matrix clash", BASE + "  g:\n    matrix: {py: ['3.11', '3.11']}\n    steps: [{run: x}]\n",
     7, 27, "axis 'py' lists '3.11' twice"),
    ("matrix include clash", BASE + "  g:\n    matrix:\n      include: [{a: '1'}, {a: '1'}]\n"
                                    "    steps: [{run: x}]\n",
     8, 7, "gives two children named 'g (a=1)'"),
    ("matrix hardware axis",
     BASE + "  g:\n    matrix: {hardware: [l4, l5]}\n    steps: [{run: x}]\n",
     7, 29, "unknown hardware class 'l5'"),
    ("matrix exclude unknown axis",
     BASE + "  g:\n    matrix:\n      py: ['3.11']\n"
            "      exclude: [{pyy: '3.11'}]\n    steps: [{run: x}]\n",
     9, 18, "exclude uses 'pyy', which is not an axis (did you mean 'py'?)"),
    ("matrix too big", BASE + "  g:\n    matrix:\n" + "".join(
        f"      a{i}: [1, 2, 3, 4]\n" for i in range(5)) + "    steps: [{run: x}]\n",
     8, 7, "gives 1024 children; the most is 256"),
    ("matrix axis plus hardware", BASE + "  g:\n    hardware: l4\n    matrix: {hardware: [l4]}\n"
                                         "    steps: [{run: x}]\n",
     7, 5, "sets 'hardware' and a matrix 'hardware' axis"),
    ("duplicate key", BASE + "  unit:\n    steps: [{run: y}]\n", 6, 3,
     "duplicate key 'unit' (first defined on line 3)"),
    ("defaults unknown key",
     "version: 1\ndefaults:\n  hardwre: cpu\njobs:\n  a:\n    steps: [{run: x}]\n",
     3, 3, "unknown key 'hardwre' in defaults (did you mean 'hardware'?)"),
    ("defaults bad hardware",
     "version: 1\ndefaults:\n  hardware: gpu\njobs:\n  a:\n    steps: [{run: x}]\n",
     3, 13, "unknown hardware class 'gpu'"),
    ("tabs", "version: 1\njobs:\n\tunit: {}\n", 3, 1, "tabs are not allowed"),
    ("syntax", "version: 1\njobs: [\n", 3, 1, "YAML syntax error"),
    # README's cache example as it was: a bare ${{ }} in a flow mapping
    ("expression in a flow mapping",
     "version: 1\njobs:\n  t:\n    cache: {key: pip-${{ hashFiles('req*.txt') }}, paths: [a]}\n"
     "    steps: [{run: x}]\n",
     4, 18, "${{ }} inside a flow mapping {...} must be quoted: write "
     "\"pip-${{ hashFiles('req*.txt') }}\""),
    ("expression in a flow sequence",
     "version: 1\njobs:\n  t:\n    needs: [a, ${{ x }}]\n    steps: [{run: x}]\n",
     4, 16, "${{ }} inside a flow sequence [...] must be quoted: write \"${{ x }}\""),
    ("unterminated string", 'version: 1\njobs:\n  t:\n    steps:\n      - run: "echo hi\n'
     "      - run: ok\n\n\n", 5, 14, 'this "-quoted string is never closed'),
    ("unterminated single-quoted string",
     "version: 1\njobs:\n  t:\n    steps:\n      - run: 'it''s\n      - run: ok\n",
     5, 14, "this '-quoted string is never closed"),
    ("colon in a plain value",
     "version: 1\njobs:\n  t:\n    steps:\n      - run: echo 'a: b'\n",
     5, 14, "a value holding ': ' must be quoted"),
    ("unclosed flow sequence",
     "version: 1\njobs:\n  t:\n    needs: [a, b\n    steps:\n      - run: ok\n",
     4, 12, "the [ opened here is not closed"),
    ("top-level list", "- a\n- b\n", 1, 1, "the file must be a mapping"),
    ("top-level scalar", "hello\n", 1, 1, "the file must be a mapping"),
    ("empty", "", 1, 1, "file is empty"),
    ("only comments", "# nothing\n\n", 1, 1, "file is empty"),
    ("binary", "version: 1\n\x00\x01\x02", 2, 1, "control character U+0000"),
    ("several documents", "version: 1\n---\nversion: 1\n", 2, 1, "several YAML documents"),
    ("python tag", "version: 1\njobs: !!python/object:os.system {}\n",
     2, 7, "unsupported YAML tag"),
    ("undefined alias", "version: 1\njobs: *nope\n", 2, 7, "alias *nope refers to no anchor"),
    ("image option unknown",
     BASE + "  g:\n    image: {name: x, options: {privileged: true}}\n    steps: [{run: x}]\n",
     7, 32, "unknown key 'privileged' in job 'g' at 'image.options'; known keys: user, "
     "entrypoint, shm_size"),
    ("image key unknown",
     BASE + "  g:\n    image: {name: x, pull: always}\n    steps: [{run: x}]\n",
     7, 22, "unknown key 'pull' in job 'g' at 'image'; known keys: name, credentials, options"),
    ("image without name", BASE + "  g:\n    image: {credentials: REG}\n    steps: [{run: x}]\n",
     7, 5, "job 'g': 'image' is missing the required key 'name'"),
    ("image a number", BASE + "  g:\n    image: 3\n    steps: [{run: x}]\n",
     7, 12, "job 'g': 'image' must be a string or a mapping, not an integer"),
    ("image shm size", BASE + "  g:\n    image: {name: x, options: {shm_size: lots}}\n"
                              "    steps: [{run: x}]\n",
     7, 42, "'image.options.shm_size' must be a size like 512m or 2g, not 'lots'"),
    ("image user", BASE + "  g:\n    image: {name: x, options: {user: 'root; rm'}}\n"
                          "    steps: [{run: x}]\n",
     7, 38, "'image.options.user' must be a user name or id, optionally :group"),
    ("image credentials name", BASE + "  g:\n    image: {name: x, credentials: my-login}\n"
                                      "    steps: [{run: x}]\n",
     7, 35, "'image.credentials' is not a valid secret name"),
    ("defaults image option", BASE + "defaults:\n  image: {name: x, options: {gpus: all}}\n",
     7, 30, "unknown key 'gpus' in defaults at 'image.options'"),
    ("image matrix ref", BASE + "  g:\n    image: {name: 'py:${{ matrix.pyy }}'}\n"
                                "    matrix: {py: ['3.12']}\n    steps: [{run: x}]\n",
     7, 19, "job 'g' uses ${{ matrix.pyy }}, but its matrix has no 'pyy' (did you mean 'py'?)"),
]


@pytest.mark.parametrize(("text", "line", "column", "fragment"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_cases(text: str, line: int, column: int, fragment: str) -> None:
    errs = errors_of(text)
    matching = [e for e in errs if fragment in e.message]
    assert matching, f"no error containing {fragment!r} in {[str(e) for e in errs]}"
    e = matching[0]
    assert (e.file, e.line, e.column) == (".ployd.yml", line, column), str(e)


def test_error_format_and_all_errors_at_once() -> None:
    text = textwrap.dedent("""\
        version: 1
        jobs:
          unit:
            steps:
              - run: pytest
          gpu-tests:
            needs: [unti]
            hardware: h10
            timeout: forever
            steps: [{run: x}]
        """)
    with pytest.raises(ConfigInvalid) as info:
        load_config(text, filename="ci/.ployd.yml")
    lines = str(info.value).splitlines()
    assert lines == [
        "ci/.ployd.yml:7:13: job 'gpu-tests' needs 'unti', which is not a job "
        "(did you mean 'unit'?)",
        "ci/.ployd.yml:8:15: unknown hardware class 'h10' (did you mean 'h100'?); known classes: "
        "cpu, t4, l4, a10g, l40s, a100, a100-80gb, h100, h200, b200, trainium, inferentia",
        "ci/.ployd.yml:9:14: job 'gpu-tests': 'timeout' must be a duration like 90s, 30m, 2h, 7d "
        "or 1h30m, not 'forever'",
    ]
    assert str(info.value.errors[0]).startswith("ci/.ployd.yml:7:13: ")


def test_errors_are_sorted_and_unique() -> None:
    errs = errors_of(BASE + "  a:\n    hardware: zz\n    steps: [{run: x}]\n"
                            "  b:\n    hardware: zz\n    steps: [{run: x}]\n")
    assert [(e.line, e.column) for e in errs] == [(7, 15), (10, 15)]


def test_no_raw_jsonschema_messages() -> None:
    errs = errors_of(BASE + "  g:\n    hardware: {cls: l4}\n    retry: 'often'\n"
                            "    steps: [{run: x}]\n")
    for e in errs:
        assert "is not valid under any of the given schemas" not in e.message
        assert "is not of type" not in e.message
