"""What /proc says about the processes a bench started: CPU, faults, memory, sockets,
scheduling. Read-only, except the two knobs a bench turns (peak RSS reset, autogroup nice)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcCounters:
    """Counters of a process, all threads, children included once reaped."""

    user_s: float  # utime + cutime
    sys_s: float  # stime + cstime
    minflt: int  # minor page faults

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def read_counters(pid: int) -> ProcCounters:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # Fields after "(comm)": field 3 (state) is index 0, so field N is index N - 3.
    f = raw[raw.rindex(")") + 2 :].split()
    minflt = int(f[10 - 3]) + int(f[11 - 3])
    user = int(f[14 - 3]) + int(f[16 - 3])
    system = int(f[15 - 3]) + int(f[17 - 3])
    return ProcCounters(user / CLK_TCK, system / CLK_TCK, minflt)


def run_ns(pids: Sequence[int]) -> int:
    """CPU time of every thread of these processes, in ns (/proc/PID/task/*/schedstat).

    The scheduler's own runtime, exact to the ns: the 10 ms ticks of /proc/PID/stat are
    ±0.04 CPU-s/GiB at 256 MiB, as large as the difference the integrity cases look for.
    A thread that exits during a case takes its share with it (s3shim's threads live on).
    """
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int((task / "schedstat").read_text().split()[0])
    return total


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            raw = (entry / "stat").read_text()
            if int(raw[raw.rindex(")") + 2 :].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def tcp_sockets(port: int) -> list[tuple[str, int, int]]:
    """(state, remote port, inode) of the IPv4 sockets whose local port is ``port``."""
    out = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].rsplit(":", 1)[1], 16) == port:
            out.append((f[3], int(f[2].rsplit(":", 1)[1], 16), int(f[9])))
    return out


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def connections_per_worker(
    port: int, pids: Sequence[int], client_ports: Sequence[int]
) -> list[int]:
    """How many of the clients' connections (by their source ports) each worker accepted."""
    remote = set(client_ports)
    inodes = {ino for state, rport, ino in tcp_sockets(port) if state == "01" and rport in remote}
    return [len(inodes & socket_inodes(pid)) for pid in pids]


def host_cpu() -> tuple[float, float]:
    """Machine-wide (busy, steal) CPU seconds since boot, every tenant included."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


@dataclass
class Watched:
    """The processes whose CPU a case is charged with, by role."""

    groups: dict[str, list[int]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, ProcCounters]:
        out = {}
        for role, pids in self.groups.items():
            user, system, flt = 0.0, 0.0, 0
            for pid in pids:
                with contextlib.suppress(OSError):
                    c = read_counters(pid)
                    user += c.user_s
                    system += c.sys_s
                    flt += c.minflt
            out[role] = ProcCounters(user, system, flt)
        return out


def connections_by_process(port: int, pids: Sequence[int]) -> list[int]:
    """Established client connections each process holds (the SO_REUSEPORT split)."""
    inodes = {ino for state, _, ino in tcp_sockets(port) if state == "01"}
    return [len(inodes & socket_inodes(pid)) for pid in pids]


def cpu_of(pids: Sequence[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            out[pid] = read_counters(pid).cpu_s
    return out


def schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's main thread."""
    run_ns, wait_ns, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def alive(pid: int) -> bool:
    """True while pid runs (a zombie waiting for its parent counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def set_autogroup_nice(pids: Sequence[int], nice: int) -> None:
    """Set the scheduling weight of each process's autogroup (its session) among sessions.

    With autogroups on (the kernel default here), CPU time is shared between sessions first,
    so a process's own nice only ranks it inside its session; s3shim and nginx run in
    sessions of their own (start_new_session), so on a machine shared with other tenants
    each gets one session's share however busy the rest is. This weight is what changes it.
    """
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def autogroup_nice(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None
