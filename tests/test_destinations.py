"""Every destination by one rule (``fastmlp.files``): what ``--overwrite`` never replaces, links
written through, FIFOs, terminals and descriptors written into, two runs racing for one folder,
Ctrl-C while a folder is put in place. Real ``fastmlp`` subprocesses, real FIFOs, pseudo-terminals
and pipes made by the test (never the machine's own ``/dev/stdout`` or ``/dev/null``). (Rows of the
fault list: tests/README.md says which.)"""

import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from .helpers import default_signals
from .test_cli import fastmlp_cli

#: the quickest benchmark there is: what it writes matters here, not its timings
BENCH = (
    "bench",
    "--backends",
    "numpy",
    "--n",
    "100",
    "--valid",
    "10",
    "--hidden",
    "8",
    "--epochs",
    "1",
    "--warmup",
    "1",
)


def contents(folder):
    """{relative path: SHA-256} of every file under ``folder``: what must not change."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def run(tmp_path, trained_model_file, sample_folder):
    """A run folder as train leaves it, with a note of the user's: the model, the data beside it."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model.npz").write_bytes(trained_model_file.read_bytes())
    (folder / "history.csv").write_text("epoch,train_loss\n1,2.3\n")
    (folder / "notes.txt").write_text("the user's own notes")
    data = tmp_path / "data"
    data.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (data / name).write_bytes((sample_folder / name).read_bytes())
    return folder


# ------------------------------------------------- row 39: never replaced
#: case -> (the command after "fastmlp", relative to the test's folder; the working folder; the reason)
NEVER_REPLACED = {
    "the model it evaluates": (
        ["evaluate", "run/model.npz", "--data", "data", "--out", "run", "--overwrite"],
        ".",
        "holds the weights file this command reads (run/model.npz)",
    ),
    "the data it trains on": (
        ["train", "--data", "run/../data", "--epochs", "1", "--out", "data", "--overwrite"],
        ".",
        "is the data (run/../data)",
    ),
    "the working folder": (
        ["evaluate", "model.npz", "--data", "../data", "--out", ".", "--overwrite"],
        "run",
        "is the working folder",
    ),
    "a parent of the working folder": (
        ["evaluate", "model.npz", "--data", "../data", "--out", "..", "--overwrite"],
        "run",
        "holds the working folder",
    ),
    "the home folder": (
        ["evaluate", "run/model.npz", "--data", "data", "--out", "home", "--overwrite"],
        ".",
        "is your home folder",
    ),
    "a mount point": (
        ["evaluate", "run/model.npz", "--data", "data", "--out", "/proc", "--overwrite"],
        ".",
        "is a mount point",
    ),
}


@pytest.mark.parametrize("case", NEVER_REPLACED, ids=list(NEVER_REPLACED))
def test_row39_overwrite_never_replaces_inputs_the_working_folder_home_or_a_mount_point(tmp_path, run, case):
    args, cwd, reason = NEVER_REPLACED[case]
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".profile").write_text("the user's settings")
    before = contents(tmp_path)
    result = fastmlp_cli(*args, cwd=tmp_path / cwd, env={"HOME": str(tmp_path / "home")})
    assert result.returncode == 2 and result.stdout == "", result.stderr  # refused before anything was read
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"fastmlp: error: --out {args[args.index('--out') + 1]}: the folder "
    )
    assert f"{reason}" in lines[0] and lines[0].endswith("so it is never replaced; choose another folder"), lines[0]
    assert contents(tmp_path) == before and hidden(tmp_path) == []


def test_row39_an_export_never_replaces_the_weights_file_it_reads(tmp_path, trained_model_file):
    model = tmp_path / "letters.onnx"  # a weights file under an ONNX name
    model.write_bytes(trained_model_file.read_bytes())
    result = fastmlp_cli("export", str(model), str(model), "--overwrite")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"fastmlp: error: ONNX file {model}: is the weights file this command reads; give another file name"
    )
    assert model.read_bytes() == trained_model_file.read_bytes()


# ------------------------------------------------ row 40: links, FIFOs, terminals, descriptors
def test_row40_a_link_to_a_file_is_written_through_and_stays_a_link(tmp_path, trained_model_file):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "today.json").write_text("yesterday's")
    (tmp_path / "latest.json").symlink_to("results/today.json")
    (tmp_path / "results" / "bars.png").write_text("old picture")
    (tmp_path / "bars.png").symlink_to(tmp_path / "results" / "bars.png")
    result = fastmlp_cli(*BENCH, "--json", "latest.json", "--plot", "bars.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert os.readlink(tmp_path / "latest.json") == "results/today.json"
    assert json.loads((tmp_path / "results" / "today.json").read_text())["configs"]
    assert (tmp_path / "bars.png").is_symlink()
    assert (tmp_path / "results" / "bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    (tmp_path / "letters.onnx").symlink_to("results/letters.onnx")  # a link whose target is not there yet
    result = fastmlp_cli("export", str(trained_model_file), "letters.onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "letters.onnx").is_symlink() and (tmp_path / "results" / "letters.onnx").stat().st_size > 1000
    assert hidden(tmp_path) == hidden(tmp_path / "results") == []


def test_row40_an_out_that_links_to_an_empty_folder_is_written_through(tmp_path, run):
    (tmp_path / "empty").mkdir()
    (tmp_path / "latest").symlink_to("empty")
    result = fastmlp_cli("evaluate", "run/model.npz", "--data", "data", "--out", "latest", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert os.readlink(tmp_path / "latest") == "empty"
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == [
        "confusion.png",
        "mistakes.png",
        "summary.json",
        "summary.txt",
    ]
    result = fastmlp_cli("evaluate", "run/model.npz", "--data", "data", "--out", "latest", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""  # checked up front, through the link
    assert f"the folder {tmp_path / 'latest'} (a link to {tmp_path / 'empty'}) already holds files" in result.stderr
    assert hidden(tmp_path) == []


def _read_fifo(path, chunks):
    with open(path, "rb") as fifo:
        chunks.append(fifo.read())


def test_row40_a_fifo_is_written_into_and_one_nobody_reads_is_an_error(tmp_path):
    fifo = tmp_path / "bench.json"
    os.mkfifo(fifo)
    chunks = []
    reader = threading.Thread(target=_read_fifo, args=(fifo, chunks), daemon=True)
    reader.start()
    time.sleep(0.2)  # the reader waits in open()
    result = fastmlp_cli(*BENCH, "--json", str(fifo))
    if reader.is_alive():  # never opened for writing: release the reader
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    reader.join(10)
    assert result.returncode == 0, result.stderr
    assert json.loads(chunks[0])["configs"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)

    result = fastmlp_cli(*BENCH, "--json", str(fifo))  # no reader now
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"fastmlp: error: cannot write {fifo}: no process is reading it"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]


def test_row40_a_terminal_device_is_written_into(tmp_path):
    leader, follower = os.openpty()  # a character device of the test's own: /dev/pts/N
    terminal = os.ttyname(follower)
    try:
        os.set_blocking(leader, False)
        received = bytearray()
        process = subprocess.Popen(
            [sys.executable, "-m", "fastmlp", *BENCH, "--json", terminal],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while process.poll() is None or len(received) < 10:
            try:
                received += os.read(leader, 65536)
            except BlockingIOError:
                if process.poll() is not None:
                    break
                time.sleep(0.05)
        out, err = process.communicate(timeout=60)
        assert stat.S_ISCHR(os.stat(terminal).st_mode)  # still the terminal
    finally:
        os.close(follower)
        os.close(leader)
    assert process.returncode == 0, err
    assert json.loads(received.replace(b"\r\n", b"\n"))["configs"]  # the terminal turns \n into \r\n
    assert out.splitlines()[-1] == f"wrote {terminal}"


@pytest.mark.parametrize("stdout", ["a pipe", "a file"])
def test_row40_a_link_to_standard_output_writes_into_it_in_order(tmp_path, stdout):
    """``--json /dev/stdout``, made safe: a link of the test's own to /proc/self/fd/1, which is what
    /dev/stdout is; the old rename would only have replaced this link."""
    link = tmp_path / "stdout.json"
    link.symlink_to("/proc/self/fd/1")
    if stdout == "a pipe":
        output = fastmlp_cli(*BENCH, "--json", str(link)).stdout
    else:
        with open(tmp_path / "out.txt", "w") as handle:
            subprocess.run([sys.executable, "-m", "fastmlp", *BENCH, "--json", str(link)], stdout=handle, timeout=300)
        output = (tmp_path / "out.txt").read_text()
    assert os.readlink(link) == "/proc/self/fd/1"
    table, rest = output.split("\n{", 1)
    document, last = rest.rsplit("\n", 2)[0], output.splitlines()[-1]
    assert "numpy" in table and json.loads("{" + document + "\n")["configs"]  # after the table, whole
    assert last == f"wrote {link}"


#: case -> (the destination, made in the test's folder; the end of the one error line)
REFUSED = {
    "inside a file": ("afile/x.json", "afile is a file, not a folder"),
    "in a missing folder": ("missing/x.json", "the folder {tmp}/missing does not exist"),
    "a folder": ("folder", "is a folder; give a file name"),
    "a socket": ("socket", "is a socket; give a file name"),
    "a link loop": ("loop", "more than 40 symbolic links in a row (a loop?); give another path"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_row40_what_cannot_take_a_file_is_refused_before_any_timing(tmp_path, case):
    destination, ending = REFUSED[case]
    (tmp_path / "afile").write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "loop").symlink_to("loop")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "socket"))
    try:
        result = fastmlp_cli(*BENCH, "--json", str(tmp_path / destination))
    finally:
        server.close()
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().startswith(f"fastmlp: error: --json {tmp_path / destination}: ")
    assert result.stderr.strip().endswith(ending.format(tmp=tmp_path)), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder", "loop", "socket"]


# ----------------------------------------------------------- row 41: races
#: a Python audit hook in the process of the run: the other run does its part just before the
#: rename it names (src, the path renamed, ends with it), as it could on a busy machine
RACE = """
import os, sys
from pathlib import Path

destination, moment = Path(sys.argv[1]), sys.argv[2]

def the_other_run(event, args):
    if event != "os.rename" or the_other_run.done:
        return
    source = Path(os.fsdecode(args[0]))
    ours = source.parent == destination.parent and source.name.startswith(f".{destination.name}.")
    if moment == "takes the place between this run's two renames" and ours and source.name.endswith(".tmp"):
        the_other_run.done = True
        os.mkdir(destination)
        (destination / "theirs.txt").write_text("theirs")
    if moment == "moves the old folder away first" and source == destination:
        the_other_run.done = True
        os.rename(destination, destination.with_name("theirs-moved-it"))

the_other_run.done = False
sys.addaudithook(the_other_run)
from fastmlp.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize(
    "moment", ["takes the place between this run's two renames", "moves the old folder away first"]
)
def test_row41_two_overwrites_racing_for_one_folder_keep_each_result_whole(tmp_path, run, moment):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the folder both runs were told to replace")
    args = ["evaluate", str(run / "model.npz"), "--data", str(tmp_path / "data"), "--out", str(out), "--overwrite"]
    result = subprocess.run(
        [sys.executable, "-c", RACE, str(out), moment, *args], capture_output=True, text=True, timeout=300
    )
    ours = ["confusion.png", "mistakes.png", "summary.json", "summary.txt"]
    assert "Traceback" not in result.stderr and "[Errno" not in result.stderr, result.stderr
    if moment == "moves the old folder away first":
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in out.iterdir()) == ours
    else:
        assert result.returncode == 2
        line = result.stderr.strip().splitlines()[-1]
        kept = line.split("this run's results were written to ")[1].split(" instead")[0]
        assert line == (
            f"fastmlp: error: {out} was filled by another run while this one worked; "
            f"this run's results were written to {kept} instead"
        )
        assert sorted(p.name for p in (tmp_path / kept).iterdir()) == ours  # whole, beside it
        assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]
    assert hidden(tmp_path) == []  # the displaced folder was replaced, as asked, and is not left hidden


def test_ctrl_c_while_the_folder_is_put_in_place_says_it_was_written(tmp_path, run):
    """The old folder is removed while signals wait: a Ctrl-C then comes once the new one is in place."""
    out = tmp_path / "out"
    out.mkdir()
    for i in range(200):  # an old folder that takes a while to remove
        (out / f"{i}").mkdir()
        for j in range(100):
            (out / f"{i}" / f"{j}").touch()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastmlp",
            "evaluate",
            str(run / "model.npz"),
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--overwrite",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )
    deadline = time.monotonic() + 240
    while not any(p.name.endswith(".old") for p in tmp_path.iterdir()):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == f"fastmlp: interrupted; {out} was written"
    assert sorted(p.name for p in out.iterdir()) == ["confusion.png", "mistakes.png", "summary.json", "summary.txt"]
    assert hidden(tmp_path) == []
