"""The state directory's lock: exclusive across processes, the holder's pid in the file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamdenoise.errors import AlreadyRunning
from streamdenoise.lock import LOCK_NAME, exclusive_lock, holder_alive

HOLD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from streamdenoise.lock import exclusive_lock\n"
    "with exclusive_lock(Path(sys.argv[1])):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(60)\n"
)


def test_the_lock_holds_this_pid_and_is_free_again_after(tmp_path: Path) -> None:
    path = tmp_path / "state" / LOCK_NAME
    with exclusive_lock(path):
        assert path.read_text() == f"{os.getpid()}\n"
        assert holder_alive(path)
    with exclusive_lock(path):  # released: taken again
        pass


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    path = tmp_path / LOCK_NAME
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            message = f"pid {holder.pid}.*{re.escape(str(tmp_path))}"
            with pytest.raises(AlreadyRunning, match=message), exclusive_lock(path):
                pass
        finally:
            holder.kill()
    with exclusive_lock(path):  # a killed holder leaves nothing that blocks
        pass


def test_a_stale_or_unreadable_pid_is_not_alive(tmp_path: Path) -> None:
    path = tmp_path / LOCK_NAME
    assert not holder_alive(path)
    path.write_text("not a pid\n")
    assert not holder_alive(path)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    path.write_text(gone.stdout)
    assert not holder_alive(path)
