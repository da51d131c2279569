"""`make run`: start the action server, the Rasa server and the web app (widget page + staff console).

Used by the tests too (`start_stack`), so that they exercise exactly what a clinic runs.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from clinicbot.action_server import SECRET_HEADER
from clinicbot.settings import DEFAULT_CONSOLE_SECRET, PROJECT_ROOT, Settings, load_settings, refuse_unsafe_production

VENV_BIN = Path(sys.executable).parent
MODEL = PROJECT_ROOT / "models" / "pelvic-health.tar.gz"


@dataclass
class Ports:
    rasa: int = 5005
    actions: int = 5055
    web: int = 8080


@dataclass
class Stack:
    ports: Ports
    processes: Dict[str, subprocess.Popen]
    log_dir: Path
    commands: Dict[str, list] = field(default_factory=dict)
    environment: Dict[str, str] = field(default_factory=dict)

    def stop_process(self, name: str) -> None:
        """Stop one part (tests use it to take the action server away)."""
        process = self.processes[name]
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()

    def start_process(self, name: str) -> None:
        log = self.log_dir / f"{name}-restarted.log"
        self.processes[name] = subprocess.Popen(
            self.commands[name], cwd=PROJECT_ROOT, env=self.environment, stdout=_private_file(log),
            stderr=subprocess.STDOUT, umask=PRIVATE_UMASK,
        )
        if name == "actions":
            _wait_for(f"http://localhost:{self.ports.actions}/health", self.processes[name], "action server", 120, log)

    @property
    def rasa_url(self) -> str:
        return f"http://localhost:{self.ports.rasa}"

    @property
    def web_url(self) -> str:
        return f"http://localhost:{self.ports.web}"

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.time() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_for(url: str, process: subprocess.Popen, name: str, timeout: float, log: Path) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except Exception:
            time.sleep(0.5)
    raise RuntimeError(f"{name} did not start within {timeout:.0f}s; see {log}")


def start_stack(
    ports: Optional[Ports] = None,
    env: Optional[Dict[str, str]] = None,
    log_dir: Optional[Path] = None,
    model: Path = MODEL,
    with_web: bool = True,
    endpoints: Optional[Path] = None,
) -> Stack:
    ports = ports or Ports()
    log_dir = log_dir or PROJECT_ROOT / "var" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_dir.chmod(0o700)
    environment = dict(os.environ, **(env or {}))
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # No network at run time: no telemetry, no model-hub look-ups.
    environment.setdefault("RASA_TELEMETRY_ENABLED", "false")
    environment.setdefault("HF_HUB_OFFLINE", "1")
    environment.setdefault("TRANSFORMERS_OFFLINE", "1")
    environment["PYTHONPATH"] = str(PROJECT_ROOT) + os.pathsep + environment.get("PYTHONPATH", "")

    settings = load_settings(environment)
    # Sanic reads SANIC_* variables into every app's config: the Rasa server's body cap (Sanic's default is 100 MB;
    # the web app sets the same cap itself, the action server its own, larger one).
    environment["SANIC_REQUEST_MAX_SIZE"] = str(settings.request_max_bytes)
    # Only the Rasa server may call the action server: a secret it sends in a header, new at every start unless
    # the clinic sets one (when the two run on different machines).
    environment.setdefault("ACTION_SERVER_SECRET", settings.action_server_secret or secrets.token_urlsafe(32))
    commands = {
        "actions": [sys.executable, "-m", "clinicbot.action_server", "--port", str(ports.actions)],
        "rasa": [
            str(VENV_BIN / "rasa"), "run", "--model", str(model), "--port", str(ports.rasa),
            "--interface", settings.bind_host,
            "--endpoints", str(endpoints or _endpoints_for(ports, log_dir, settings.action_server_url, environment["ACTION_SERVER_SECRET"])),
            "--credentials", str(PROJECT_ROOT / "credentials.yml"),
        ] + rasa_api_arguments(settings, ports),
    }
    if with_web:
        commands["web"] = [sys.executable, "-m", "clinicbot.web", "--port", str(ports.web), "--rasa-port", str(ports.rasa)]

    processes: Dict[str, subprocess.Popen] = {}
    stack = Stack(ports=ports, processes=processes, log_dir=log_dir, commands=commands, environment=environment)
    try:
        for name, command in commands.items():
            log = log_dir / f"{name}.log"
            processes[name] = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=environment, stdout=_private_file(log), stderr=subprocess.STDOUT,
                umask=PRIVATE_UMASK,
            )
        _wait_for(f"http://localhost:{ports.actions}/health", processes["actions"], "action server", 120, log_dir / "actions.log")
        _wait_for(f"http://localhost:{ports.rasa}/", processes["rasa"], "Rasa server", 300, log_dir / "rasa.log")
        if with_web:
            _wait_for(f"http://localhost:{ports.web}/healthz", processes["web"], "web app", 60, log_dir / "web.log")
    except Exception:
        stack.stop()
        raise
    return stack


# Logs, the SQLite database and the booking outbox hold patient data: what the servers create is readable by
# their own user only (files 0600, folders 0700), whatever the shell's umask.
PRIVATE_UMASK = 0o077


def _private_file(path: Path):
    """A log file only its owner can read, even when it already existed with looser permissions."""
    handle = open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w")
    os.fchmod(handle.fileno(), 0o600)
    return handle


def rasa_api_arguments(settings: Settings, ports: Ports) -> List[str]:
    """`rasa run` flags for Rasa's HTTP API: none unless RASA_API_ENABLED, and then only with a token.

    The API reads and writes any conversation and replaces the model; the console does not need it.
    """
    if not settings.rasa_api_enabled:
        return []
    if not settings.rasa_auth_token:
        raise SystemExit("RASA_API_ENABLED needs RASA_AUTH_TOKEN: Rasa's HTTP API is never opened without a token.")
    origins = settings.rasa_cors_origins or (f"http://localhost:{ports.web}", f"http://127.0.0.1:{ports.web}")
    return ["--enable-api", "--auth-token", settings.rasa_auth_token, "--cors", *origins]


def _endpoints_for(ports: Ports, log_dir: Path, action_server_url: Optional[str], action_server_secret: str) -> Path:
    """endpoints.yml as this stack runs it: the action server's URL and port, and the secret it wants.

    Written next to the logs, readable by its owner only, because it holds the secret.
    """
    endpoints = yaml.safe_load((PROJECT_ROOT / "endpoints.yml").read_text(encoding="utf-8"))
    action = endpoints.setdefault("action_endpoint", {})
    action["url"] = action_server_url or f"http://localhost:{ports.actions}/webhook"
    action["headers"] = {SECRET_HEADER: action_server_secret}
    path = log_dir / "endpoints.yml"
    with _private_file(path) as handle:
        yaml.safe_dump(endpoints, handle, sort_keys=False)
    return path


def production_warnings(settings: Settings) -> List[str]:
    """Settings still at their laptop defaults that a clinic must set before real patients use the bot
    (docs/security.md)."""
    warnings = []
    if settings.console_secret == DEFAULT_CONSOLE_SECRET:
        warnings.append("CONSOLE_SECRET is the development default: anyone can forge console sessions and export pseudonyms.")
    if not settings.outbox_key:
        warnings.append("BOOKING_OUTBOX_KEY is unset: bookings queued while the database is down are plain JSON on disk.")
    if settings.database_url.startswith("sqlite"):
        warnings.append("DATABASE_URL is a SQLite file: fine on a laptop; use PostgreSQL with backups in production.")
    if not settings.rasa_auth_token:
        warnings.append("RASA_AUTH_TOKEN is unset: the REST channel answers this machine only.")
    return warnings


def main() -> None:
    settings = load_settings()
    refuse_unsafe_production(settings)
    if not MODEL.exists():
        sys.exit("No trained model: run `make train` first.")
    for warning in production_warnings(settings):
        print(f"WARNING (production): {warning}", flush=True)
    print("Starting (the Rasa server takes about a minute to load the model)...", flush=True)
    stack = start_stack()
    clinic_db = settings.database_url
    print(
        "\nRunning:\n"
        f"  Chat widget page   {stack.web_url}/\n"
        f"  Staff console      {stack.web_url}/console  (create a user first: make user NAME=you ROLE=clinician)\n"
        f"  Rasa REST channel  {stack.rasa_url}/webhooks/rest/webhook\n"
        f"  Action server      http://localhost:{stack.ports.actions}/webhook\n"
        f"  Database           {clinic_db}\n"
        f"  Logs               {stack.log_dir}\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    try:
        while all(process.poll() is None for process in stack.processes.values()):
            time.sleep(1)
        stopped = [name for name, process in stack.processes.items() if process.poll() is not None]
        print(f"Stopped unexpectedly: {', '.join(stopped)}; see {stack.log_dir}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
