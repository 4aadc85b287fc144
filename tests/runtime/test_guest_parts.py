"""The host-side parts of the qemu runtime that need no guest: the bounded console log,
how a guest's last words become the SDK's stop reason, and the instance script."""

from __future__ import annotations

import subprocess
from pathlib import Path

from volumed.domain.runtime import StopReason
from volumed.runtime._init import GuestDisk, instance_script
from volumed.runtime.console import ConsoleLog
from volumed.runtime.qemu import classify_exit


def test_the_console_keeps_the_newest_bytes_numbered_from_the_first(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path, limit=10)
    for chunk in (b"0123", b"4567", b"89ab", b"cdef"):
        log.append(chunk)
    whole = log.read(0, 100)
    assert (whole.first, whole.end) == (whole.start, 16)
    assert whole.data == b"0123456789abcdef"[whole.first :] and len(whole.data) <= 10
    assert log.read(-3, 2).data == b"de" and log.read(-3, 2).start == 13
    assert log.read(1000, 5).data == b"" and log.read(1000, 5).start == 16
    again = ConsoleLog(tmp_path, limit=10).read(0, 100)  # a restarted server reads the same
    assert again == whole


def test_last_words_become_stop_reasons() -> None:
    user = StopReason.USER | StopReason.PLATFORM
    app_kernel = StopReason.APP | StopReason.KERNEL
    cases = [
        (["ready", "exit 3", "halted"], False, False, (app_kernel, 3, 0)),
        (["ready", "exit 143", "halted"], True, False, (user | app_kernel, 143, 0)),
        (["ready", "killed", "halted"], True, False, (user | StopReason.KERNEL, None, 0)),
        (["ready"], True, True, (user | StopReason.FORCED, None, None)),
        (["ready"], False, False, (StopReason.KERNEL, None, None)),
    ]
    for lines, requested, forced, expected in cases:
        outcome = classify_exit(lines, requested=requested, forced=forced)
        assert (outcome.reason, outcome.exit_code, outcome.stop_code) == expected, lines
    assert classify_exit(["ready"], requested=False, forced=False).unclean
    assert not classify_exit(["exit 0", "halted"], requested=False, forced=False).unclean


def test_tenant_strings_reach_the_guest_shell_as_single_words(tmp_path: Path) -> None:
    hostile = "$(touch pwned); `touch pwned2` ' \" \\ ; && | *"
    script = instance_script(
        [GuestDisk("vol0", "/data dir/x", False)],
        ["printf", "%s|", hostile, "two words"],
        {"VAR": hostile, "bad name": "dropped"},
        str(tmp_path),  # the working directory: where a "touch pwned" would land
    )
    # Run it with sh (stubbing what the init provides) and check what the workload gets.
    stub = (
        'mount_volume() { printf "mount:%s:%s:%s\\n" "$1" "$2" "$3"; }\n'
        f"{script}\nrun_workload; echo\n"
    )
    done = subprocess.run(["sh", "-c", stub], cwd=tmp_path, capture_output=True, text=True)
    assert "mount:vol0:/data dir/x:rw" in done.stdout, done
    assert f"{hostile}|two words|" in done.stdout, done
    assert not list(tmp_path.iterdir())  # nothing was executed from the strings
    assert "bad name" not in script
