"""Real mail servers for the email channel's tests: Debian's Dovecot for IMAP, configured into a temporary
directory, and aiosmtpd for SMTP, keeping what it is sent."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from imapclient import IMAPClient

from tests.servers import free_port, wait_for

MAILBOX = "support@shop.example"
PASSWORD = "mailbox-secret"


@dataclass
class Dovecot:
    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"imap://{MAILBOX.replace('@', '%40')}:{PASSWORD}@127.0.0.1:{self.port}/INBOX"

    def deliver(self, raw: bytes) -> None:
        """A mail arrives in the support mailbox (IMAP APPEND, as a delivery agent would file it)."""
        with IMAPClient("127.0.0.1", port=self.port, ssl=False) as imap:
            imap.login(MAILBOX, PASSWORD)
            imap.append("INBOX", raw)

    def seen(self) -> list[int]:
        with IMAPClient("127.0.0.1", port=self.port, ssl=False) as imap:
            imap.login(MAILBOX, PASSWORD)
            imap.select_folder("INBOX", readonly=True)
            return list(imap.search(["SEEN"]))


@contextmanager
def dovecot() -> Iterator[Dovecot]:
    """Dovecot serving one mailbox over plain IMAP on a free loopback port, everything in a temporary
    directory its own users can reach (pytest's are the test user's alone)."""
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not os.path.exists(binary):
        pytest.skip("Dovecot is not installed; `make test` installs Debian's dovecot-imapd where apt is available "
                    "(or: apt-get install dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="switchboard-dovecot-"))
    root.chmod(0o755)
    port = free_port()
    for directory in ("run", "state", "mail"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "users").write_text(f"{MAILBOX}:{{PLAIN}}{PASSWORD}\n", encoding="utf-8")
    user = "dovecot" if _user_exists("dovecot") else os.environ.get("USER", "root")
    (root / "dovecot.conf").write_text(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%n
first_valid_uid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={user} gid={user} home={root}/mail/%n
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
default_login_user = {"dovenull" if _user_exists("dovenull") else user}
default_internal_user = {user}
""", encoding="utf-8")
    if user == "dovecot":
        shutil.chown(root / "mail", user, user)
    # In the foreground (-F) and a process group of its own, so the test owns it and its children and stops
    # them all at once (asked to stop, Dovecot's master waits a second for its children).
    process = subprocess.Popen([binary, "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: process.poll() is None and _answers(port), timeout=20)
        yield Dovecot(port, root)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _answers(port: int) -> bool:
    try:
        with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=2) as imap:
            imap.login(MAILBOX, PASSWORD)
    except Exception:
        return False
    return True


@dataclass
class SmtpServer:
    port: int
    received: list[EmailMessage] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)  # recipients it answers 550 for
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if address.lower() in self.refused:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        mail = message_from_bytes(content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        with self.lock:
            self.received.append(mail)
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    controller = Controller(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
