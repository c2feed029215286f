"""The cause finder over real-looking logs: the line that says why, each time."""

from __future__ import annotations

import pytest

from app.core.cause import CauseKind, bigger_gpu, find_cause
from app.core.hardware import Catalog

PYTHON_TRACEBACK = """\
▶ Prepare data
loading config from configs/base.yaml
Traceback (most recent call last):
  File "/work/scripts/prepare.py", line 41, in <module>
    main()
  File "/work/scripts/prepare.py", line 37, in main
    with open(args.manifest) as f:
         ^^^^^^^^^^^^^^^^^^^
FileNotFoundError: [Errno 2] No such file or directory: 'data/manifest.json'
✗ Prepare data (exit 1, 0.4s)
"""

CHAINED_RANK_TRACEBACK = """\
[rank0]: Traceback (most recent call last):
[rank0]:   File "/app/train.py", line 10, in <module>
[rank0]:     step(batch)
[rank0]: KeyError: 'input_ids'
✗ Train (exit 1, 3.2s)
"""

PYTEST = """\
============================= test session starts ==============================
collected 12 items

tests/test_metrics.py ......                                             [ 50%]
epoch 3: val_error=0.125 train_error: 0.08
tests/test_model.py ..F...                                               [100%]

=================================== FAILURES ===================================
_______________________________ test_logits_shape ______________________________

    def test_logits_shape():
        out = model(torch.zeros(2, 16))
>       assert out.shape == (2, 10)
E       AssertionError: assert torch.Size([2, 12]) == (2, 10)
E         At index 1 diff: 12 != 10

tests/test_model.py:22: AssertionError
=========================== short test summary info ============================
FAILED tests/test_model.py::test_logits_shape - AssertionError: assert torch.Siz...
========================= 1 failed, 11 passed in 4.21s =========================
✗ Test (exit 1, 5.0s)
"""

PYTEST_SUMMARY_ONLY = """\
..F.
FAILED tests/test_io.py::test_roundtrip - ValueError: bad header
1 failed, 3 passed in 0.12s
"""

CUDA_OOM = """\
Epoch 1/10
step 100 loss=2.31 error rate 0.4
Traceback (most recent call last):
  File "train.py", line 88, in <module>
    loss.backward()
  File "/usr/lib/python3/dist-packages/torch/_tensor.py", line 522, in backward
    torch.autograd.backward(
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a \
total capacity of 22.06 GiB of which 1.12 GiB is free.
✗ Train (exit 1, 41.0s)
"""

NCCL_TIMEOUT = """\
[rank1]:[E1202 10:11:12.345 ProcessGroupNCCL.cpp:616] [Rank 1] Watchdog caught collective \
operation timeout: WorkNCCL(SeqNum=4521, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, \
Timeout(ms)=600000) ran for 600042 milliseconds before timing out.
[rank1]:[E1202 10:11:12.346 ProcessGroupNCCL.cpp:1664] [PG 0 Rank 1] Exception (either an \
error or timeout) detected by watchdog at work: 4521
terminate called after throwing an instance of 'c10::DistBackendError'
✗ Train (exit 134, 10m 3s)
"""

OOM_KILL = """\
Loading dataset shards: 100%|██████████| 64/64
building index...
/tmp/ployd-step-1.sh: line 3:  4242 Killed                  python build_index.py
✗ Index (exit 137, 2m 10s)
"""

EXIT_137_ONLY = """\
resizing images 1000/5000
resizing images 2000/5000
✗ Resize (exit 137, 55.1s)
"""

RUST = """\
   Compiling ployd-demo v0.1.0 (/work)
error[E0308]: mismatched types
 --> src/main.rs:4:18
  |
4 |     let n: u32 = "four";
  |            ---   ^^^^^^ expected `u32`, found `&str`
  |
For more information about this error, try `rustc --explain E0308`.
error: could not compile `ployd-demo` (bin "ployd-demo") due to 1 previous error
✗ Build (exit 101, 1.9s)
"""

CPP = """\
[ 50%] Building CXX object CMakeFiles/app.dir/src/kernel.cpp.o
/work/src/kernel.cpp: In function 'int main()':
/work/src/kernel.cpp:12:5: error: 'launch' was not declared in this scope
   12 |     launch(grid, block);
      |     ^~~~~~
make[2]: *** [CMakeFiles/app.dir/build.make:76: CMakeFiles/app.dir/src/kernel.cpp.o] Error 1
make: *** [Makefile:91: all] Error 2
✗ Build (exit 2, 3.3s)
"""

GENERIC = """\
starting server
\x1b[31mError: expected 42, got 43\x1b[0m
teardown
✗ Check (exit 3, 0.1s)
"""

PLAIN_EXIT = """\
checking formatting
would reformat app/main.py
✗ Lint (exit 1, 0.3s)
"""

PASSING_WITH_ERROR_WORD = """\
epoch 1: val_error=0.31
tests/test_errors.py::test_error_message PASSED
ERROR handling works as documented
✓ Test (2.0s)
"""


def _line(log: str, startswith: str) -> int:
    return next(i for i, line in enumerate(log.splitlines()) if line.startswith(startswith))


CASES = [
    ("python traceback", PYTHON_TRACEBACK, CauseKind.PYTHON, "FileNotFoundError: [Errno 2]"),
    ("torchrun-prefixed traceback", CHAINED_RANK_TRACEBACK, CauseKind.PYTHON, "[rank0]: KeyError"),
    ("pytest E line over a metric", PYTEST, CauseKind.PYTEST, "E       AssertionError"),
    ("pytest -q summary", PYTEST_SUMMARY_ONLY, CauseKind.PYTEST, "FAILED tests/test_io.py"),
    ("CUDA out of memory", CUDA_OOM, CauseKind.CUDA_OOM, "torch.OutOfMemoryError"),
    ("NCCL timeout", NCCL_TIMEOUT, CauseKind.NCCL_TIMEOUT, "[rank1]:[E1202 10:11:12.345"),
    ("OOM kill", OOM_KILL, CauseKind.OOM_KILL, "/tmp/ployd-step-1.sh: line 3:"),
    ("exit 137 alone", EXIT_137_ONLY, CauseKind.OOM_KILL, "✗ Resize (exit 137"),
    ("rust compile error", RUST, CauseKind.COMPILER, "error[E0308]"),
    ("c++ compile error", CPP, CauseKind.COMPILER, "/work/src/kernel.cpp:12:5: error"),
    ("generic error line", GENERIC, CauseKind.ERROR, "\x1b[31mError: expected 42"),
    ("non-zero exit", PLAIN_EXIT, CauseKind.EXIT, "✗ Lint (exit 1"),
]


@pytest.mark.parametrize(("log", "kind", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_line_that_says_why(log: str, kind: CauseKind, line: str) -> None:
    cause = find_cause(log.splitlines())
    assert cause is not None
    assert (cause.index, cause.kind) == (_line(log, line), kind)
    assert (
        "\x1b" not in cause.text
        and cause.text
        == log.splitlines()[cause.index].replace("\x1b[31m", "").replace("\x1b[0m", "").strip()
    )


def test_a_passing_log_with_the_word_error_has_no_cause() -> None:
    assert find_cause(PASSING_WITH_ERROR_WORD.splitlines(), exit_code=0) is None


def test_metric_lines_alone_are_not_errors() -> None:
    lines = ["epoch 1: val_error=0.31", "error rate 0.2", "0 errors", "done"]
    assert find_cause(lines) is None


def test_ml_causes_are_named_with_a_way_out() -> None:
    oom = find_cause(CUDA_OOM.splitlines())
    assert oom is not None and oom.wants_bigger_gpu and "bigger GPU" in oom.advice
    nccl = find_cause(NCCL_TIMEOUT.splitlines())
    assert nccl is not None and nccl.title == "NCCL timeout" and "NCCL_DEBUG" in nccl.advice
    killed = find_cause(OOM_KILL.splitlines())
    assert killed is not None and "OOM killer" in killed.advice and not killed.wants_bigger_gpu
    py = find_cause(PYTHON_TRACEBACK.splitlines())
    assert py is not None and py.advice == "" and py.title == "Python exception"


@pytest.mark.parametrize(
    ("hardware", "bigger"),
    [
        ("t4", "l4:1"),
        ("l4:1", "l40s:1"),
        ("a10g:4", "l40s:4"),
        ("l40s:8", "a100-80gb:8"),
        ("a100-80gb:8", "h200:8"),
        ("h100:1", "h200:1"),  # only an 8-GPU box is bigger: better than nothing
        ("b200:8", None),
        ("cpu:16", None),
        ("nonsense", None),
    ],
)
def test_the_next_gpu_class_up(hardware: str, bigger: str | None) -> None:
    assert bigger_gpu(Catalog.default(), hardware) == bigger
