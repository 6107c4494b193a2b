#!/usr/bin/env python3
"""Regenerate the real-log corpus: real programs on Debian 12 log through a real rsyslog, in both file formats.

Run as root with ``make corpus`` (it installs rsyslog, sudo, cron and auditd first). Everything
happens in fresh mount, network and UTS namespaces: ``/etc``, ``/home``, ``/var`` and ``/root`` are
overlays thrown away at the end, ``/dev`` is rebuilt so that ``/dev/log`` is this run's rsyslog, the
host name is ``prim-app-1`` and the network is a loopback of its own. Nothing here is written by
hand: every line in the output files was written by rsyslog from what sshd, sudo, su, the shadow
utilities, PAM (pam_unix, pam_faillock), cron and auditd sent it.

Output (committed beside this file):

* ``traditional.log``: rsyslog's ``RSYSLOG_TraditionalFileFormat`` (``Dec  4 10:01:02 host prog[pid]: msg``);
* ``rfc3339.log``: ``RSYSLOG_FileFormat`` (``2026-12-04T10:01:02.123456+00:00 host prog[pid]: msg``);
* ``audit.log``: what auditd wrote for the same session's commands (when the kernel's audit can be used);
* ``scenarios.json``: the behaviours in the order they ran, each with what an analyst expects of it.

Not here, and why: systemd-logind (no systemd on these machines), nftables' log (the kernel logs
drops only in the initial network namespace and only to the kernel ring buffer, which a test run
must not read).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST = "prim-app-1"
SSHD_PORT = 2200
PASSWORD = "Corpus-pass-1"  # the test accounts' password inside the throw-away namespace
SCENARIOS: list[dict[str, object]] = []


def sh(*argv: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a command inside the namespace."""
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]


def scenario(name: str, expect: str, run: object) -> None:
    """Run one behaviour and note what an analyst expects of it (the rule that should alert, or 'nothing')."""
    SCENARIOS.append({"name": name, "expect": expect})
    run()  # type: ignore[operator]
    time.sleep(0.3)  # rsyslog writes asynchronously: keep the behaviours apart in time


# -- the namespace ---------------------------------------------------------------------------------


def overlay(path: str, work: Path) -> None:
    """A throw-away layer over ``path``."""
    name = path.strip("/").replace("/", "_") or "root"
    up, wk = work / "ov" / name / "up", work / "ov" / name / "wk"
    up.mkdir(parents=True)
    wk.mkdir(parents=True)
    sh("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={path},upperdir={up},workdir={wk}", path)


def private_dev(work: Path) -> None:
    """A /dev of our own: the usual nodes, a new devpts, and room for this run's /dev/log."""
    old = work / "olddev"
    old.mkdir()
    sh("mount", "--rbind", "/dev", str(old))
    sh("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/dev")
    for n in ("null", "zero", "full", "random", "urandom", "tty"):
        Path(f"/dev/{n}").touch()
        sh("mount", "--bind", str(old / n), f"/dev/{n}")
    Path("/dev/pts").mkdir()
    sh("mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620,gid=5", "devpts", "/dev/pts")
    os.symlink("pts/ptmx", "/dev/ptmx")
    Path("/dev/shm").mkdir()
    sh("mount", "-t", "tmpfs", "tmpfs", "/dev/shm")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{name}")


def start_rsyslog(work: Path) -> subprocess.Popen[bytes]:
    """rsyslog on /dev/log writing the two file formats."""
    conf = work / "rsyslog.conf"
    spool = work / "rsyslog-spool"
    spool.mkdir()
    conf.write_text(f"""global(workDirectory="{spool}")
module(load="imuxsock")
*.* action(type="omfile" file="{work}/traditional.log" template="RSYSLOG_TraditionalFileFormat")
*.* action(type="omfile" file="{work}/rfc3339.log" template="RSYSLOG_FileFormat")
""")
    p = subprocess.Popen(["rsyslogd", "-n", "-f", str(conf), "-i", str(work / "rsyslog.pid")])
    for _ in range(100):
        if Path("/dev/log").exists():
            return p
        time.sleep(0.05)
    raise SystemExit("rsyslogd did not open /dev/log")


def start_sshd(work: Path) -> None:
    """sshd on the namespace's loopback, logging through syslog (PAM on, passwords allowed, pam_faillock in its stack)."""
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    # pam_faillock for sshd only (sudo keeps its plain stack): three failures in a row lock an account for ten minutes
    pam = Path("/etc/pam.d/sshd").read_text()
    Path("/etc/pam.d/sshd").write_text(pam.replace("@include common-auth", "auth required pam_faillock.so preauth\n"
                                                   "auth [success=1 default=bad] pam_unix.so\nauth [default=die] pam_faillock.so authfail\n"
                                                   "auth sufficient pam_faillock.so authsucc", 1))
    Path("/etc/security/faillock.conf").write_text("deny = 3\nunlock_time = 600\nfail_interval = 900\n")
    key = work / "ssh_host_ed25519_key"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    conf = work / "sshd_config"
    conf.write_text(f"""Port {SSHD_PORT}
ListenAddress 127.0.0.1
HostKey {key}
UsePAM yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
LogLevel INFO
PidFile {work}/sshd.pid
MaxAuthTries 10
""")
    sh("/usr/sbin/sshd", "-f", str(conf))


def start_auditd(work: Path) -> bool:
    """auditd with rules for commands run and identity files changed; False where the kernel's audit is not ours to use."""
    conf = work / "auditd.conf"
    conf.write_text(f"log_file = {work}/audit.log\nlog_format = ENRICHED\nflush = INCREMENTAL_ASYNC\nfreq = 1\nwrite_logs = yes\n"
                    "max_log_file = 50\nmax_log_file_action = ROTATE\nspace_left = 10\nspace_left_action = IGNORE\n"
                    "admin_space_left = 5\nadmin_space_left_action = IGNORE\ndisk_full_action = IGNORE\ndisk_error_action = IGNORE\n")
    os.chmod(conf, 0o640)
    if subprocess.run(["auditd", "-c", str(work)], capture_output=True).returncode != 0:  # it reads <dir>/auditd.conf
        return False
    time.sleep(1)
    for rule in (["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-F", "uid>=1000", "-k", "exec"],
                 ["-w", "/etc/passwd", "-p", "wa", "-k", "identity"], ["-w", "/etc/shadow", "-p", "wa", "-k", "identity"],
                 ["-w", "/etc/sudoers", "-p", "wa", "-k", "sudoers"]):
        subprocess.run(["auditctl", *rule], capture_output=True)
    return True


def stop_auditd() -> None:
    """Remove our rules and stop auditd (the kernel's audit is the machine's)."""
    subprocess.run(["auditctl", "-D"], capture_output=True)
    subprocess.run(["pkill", "-x", "auditd"], capture_output=True)
    subprocess.run(["auditctl", "-e", "0"], capture_output=True)


# -- the behaviours --------------------------------------------------------------------------------


def ssh_try(user: str, password: str | None = None, key: Path | None = None, bind: str = "127.0.0.1") -> None:
    """One SSH login attempt with the real OpenSSH client (a password typed at its prompt, or a key)."""
    import pexpect

    argv = ["-p", str(SSHD_PORT), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "NumberOfPasswordPrompts=1", "-b", bind]  # fmt: skip
    if key:
        argv += ["-i", str(key), "-o", "PreferredAuthentications=publickey", "-o", "IdentitiesOnly=yes"]
    else:
        argv += ["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"]
    c = pexpect.spawn("ssh", [*argv, f"{user}@127.0.0.1", "true"], timeout=20)
    if password is not None:
        i = c.expect(["assword:", pexpect.EOF])
        if i == 0:
            c.sendline(password)
    c.expect(pexpect.EOF)
    c.close()


def as_user(user: str, command: str, answers: list[tuple[str, str]] | None = None) -> None:
    """Run ``command`` as ``user`` on a terminal of its own (sudo and su want a TTY to ask for passwords)."""
    import pexpect

    c = pexpect.spawn("runuser", ["-u", user, "--", "bash", "-c", command], timeout=30, cwd="/")
    for prompt, reply in answers or []:
        try:
            c.expect(prompt)
        except (pexpect.EOF, pexpect.TIMEOUT):
            break
        c.sendline(reply)
    c.expect(pexpect.EOF)
    c.close()


def without_tty(user: str, command: str) -> None:
    """Run ``command`` as ``user`` with no terminal at all (sudo then logs no TTY field)."""
    subprocess.run(["runuser", "-u", user, "--", "setsid", "bash", "-c", command], stdin=subprocess.DEVNULL, capture_output=True, timeout=30, cwd="/")


def behaviours(work: Path) -> None:
    """Every behaviour, in order."""
    key = work / "alice_key"
    scenario("setup: accounts alice, bob and carol created", "new_local_user", lambda: (
        sh("useradd", "-m", "-s", "/bin/bash", "alice"), sh("useradd", "-m", "-s", "/bin/bash", "bob"), sh("useradd", "-m", "-s", "/bin/bash", "carol"),
        subprocess.run(["chpasswd"], input=f"alice:{PASSWORD}\nbob:{PASSWORD}\ncarol:{PASSWORD}\n", text=True, check=True)))
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    ssh_dir = Path("/home/alice/.ssh")
    ssh_dir.mkdir(mode=0o700)
    shutil.copy(f"{key}.pub", ssh_dir / "authorized_keys")
    sh("chown", "-R", "alice:alice", str(ssh_dir))
    Path("/etc/sudoers.d/corpus").write_text("alice ALL=(ALL) NOPASSWD: /usr/bin/id, /usr/bin/systemctl status *\n"
                                             "bob ALL=(ALL) ALL\nalice ALL=(bob) NOPASSWD: ALL\n")
    os.chmod("/etc/sudoers.d/corpus", 0o440)

    scenario("ssh: alice logs in with her key", "nothing", lambda: ssh_try("alice", key=key))
    scenario("ssh: bob logs in with his password", "nothing", lambda: ssh_try("bob", PASSWORD))
    scenario("ssh: one wrong password for bob", "nothing", lambda: ssh_try("bob", "wrong"))
    scenario("ssh: six wrong passwords for root from 127.0.0.2 (brute force)", "ssh_bruteforce",
             lambda: [ssh_try("root", f"guess{i}", bind="127.0.0.2") for i in range(6)])
    scenario("ssh: four invalid user names from 127.0.0.3 (enumeration)", "ssh_user_enumeration",
             lambda: [ssh_try(u, "x", bind="127.0.0.3") for u in ("admin", "oracle", "test", "ubuntu")])
    scenario("ssh: carol's password guessed wrong three times from 127.0.0.4, pam_faillock locks her out (indexed; no alert of its own)", "nothing",
             lambda: [ssh_try("carol", f"guess{i}", bind="127.0.0.4") for i in range(4)])

    scenario("sudo: alice runs an allowed command without a terminal", "nothing", lambda: without_tty("alice", "sudo -n /usr/bin/id"))
    scenario("sudo: alice denied rm without a terminal (password on stdin)", "sudo_not_allowed",
             lambda: without_tty("alice", f"echo {PASSWORD} | sudo -S -p '' /bin/rm -rf /srv/x"))
    scenario("sudo: alice denied a shell on a terminal", "sudo_not_allowed", lambda: as_user("alice", "sudo -k; sudo /bin/bash -c true", [("assword", PASSWORD)]))
    scenario("sudo: alice runs a command as bob (-u)", "nothing", lambda: as_user("alice", "sudo -n -u bob /usr/bin/id"))
    scenario("sudo: bob's password is required but -n forbids asking", "nothing", lambda: without_tty("bob", "sudo -n /usr/bin/id"))
    scenario("sudo: bob types a wrong password three times", "sudo_auth_failure",
             lambda: as_user("bob", "sudo -k; sudo /usr/bin/id", [("assword", "w1"), ("assword", "w2"), ("assword", "w3")]))
    scenario("sudo: bob runs sudoedit on /etc/hosts with his password", "nothing",
             lambda: as_user("bob", "sudo -k; EDITOR=true sudoedit /etc/hosts", [("assword", PASSWORD)]))
    scenario("sudo: bob opens a root shell with his password", "sudo_to_shell",
             lambda: as_user("bob", "sudo -k; sudo -s", [("assword", PASSWORD), ("# ", "exit")]))

    scenario("su: root becomes alice", "nothing", lambda: sh("su", "-", "alice", "-c", "true"))
    scenario("su: alice fails to become root", "su_root_failure", lambda: as_user("alice", "su - root -c true", [("assword", "wrong")]))

    scenario("accounts: toor created with UID 0", "uid0_account_created", lambda: sh("useradd", "-o", "-u", "0", "-g", "0", "-M", "toor"))
    scenario("accounts: group wheel0 created with GID 0", "gid0_group_created", lambda: sh("groupadd", "-o", "-g", "0", "wheel0"))
    scenario("accounts: bob added to the sudo group", "user_added_to_admin_group", lambda: sh("usermod", "-aG", "sudo", "bob"))
    scenario("accounts: tmpops created, then deleted three seconds later", "account_created_then_deleted",
             lambda: (sh("useradd", "-M", "tmpops"), time.sleep(3), sh("userdel", "tmpops")))
    scenario("accounts: root's password changed", "privileged_password_changed",
             lambda: subprocess.run(["chpasswd"], input=f"root:{PASSWORD}\n", text=True, check=True))
    scenario("accounts: alice's password aging changed", "nothing", lambda: sh("chage", "-M", "90", "alice"))
    scenario("accounts: a project group created and removed", "nothing", lambda: (sh("groupadd", "proj"), sh("groupdel", "proj")))

    scenario("cron: root installs a crontab for alice", "crontab_changed",
             lambda: subprocess.run(["crontab", "-u", "alice", "-"], input="*/5 * * * * /usr/bin/true\n", text=True, check=True))
    scenario("cron: alice lists her crontab", "nothing", lambda: without_tty("alice", "crontab -l"))


def inside() -> None:
    """Set up the namespace, run every behaviour, copy the logs out."""
    sh("mount", "--make-rprivate", "/")
    work = Path(tempfile.mkdtemp(prefix="govctl-corpus-"))
    sh("mount", "-t", "tmpfs", "tmpfs", str(work))
    for p in ("/etc", "/home", "/var", "/root"):
        overlay(p, work)
    sh("mount", "-t", "tmpfs", "tmpfs", "/run")
    Path("/run/lock").mkdir()
    private_dev(work)
    sh("hostname", HOST)
    with open("/etc/hosts", "a", encoding="utf-8") as f:  # the overlay's copy: sudo resolves its own host name
        f.write(f"127.0.1.1 {HOST}\n")
    sh("ip", "link", "set", "lo", "up")
    for extra in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):  # sources of their own for the attacks
        sh("ip", "addr", "add", f"{extra}/8", "dev", "lo", check=False)
    rsyslog = start_rsyslog(work)
    audit = start_auditd(work)
    try:
        start_sshd(work)
        behaviours(work)
        time.sleep(1.5)
    finally:
        if audit:
            stop_auditd()
        subprocess.run(["pkill", "-f", f"sshd -f {work}"], capture_output=True)
        rsyslog.terminate()
        rsyslog.wait(10)
    out = Path(sys.argv[sys.argv.index("--inside") + 1])
    for name in ("traditional.log", "rfc3339.log", "audit.log"):
        if (work / name).exists():
            shutil.copy(work / name, out / name)
    (out / "scenarios.json").write_text(json.dumps({"host": HOST, "auditd": audit, "scenarios": SCENARIOS}, ensure_ascii=False, indent=1) + "\n")


def main() -> None:
    """Re-run this script inside fresh namespaces."""
    if os.geteuid() != 0:
        raise SystemExit("run as root (make corpus): the corpus needs namespaces, sshd, su and the shadow utilities")
    if "--inside" in sys.argv:
        inside()
        return
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for tool in ("rsyslogd", "sudo", "sshd", "crontab", "auditd", "unshare"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is missing: make corpus installs rsyslog, sudo, cron and auditd")
    os.execvp("unshare", ["unshare", "--mount", "--net", "--uts", "--fork", sys.executable, __file__, "--inside", str(out)])


if __name__ == "__main__":
    main()
