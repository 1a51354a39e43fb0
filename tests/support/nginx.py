"""nginx as a real origin in front of docker-registry (or a directory): one without Range support
(`max_ranges 0`), one capping each connection (`limit_rate`), one serving chosen bytes."""

from __future__ import annotations

import os
from pathlib import Path

from .net import free_port, wait_port
from .procs import ManagedProcess, require_binary


class NginxServer:
    """nginx in the foreground on a free loopback port; `location` is the body of `location / {}`."""

    def __init__(self, workdir: Path, location: str, bind_host: str = "127.0.0.1", *, access_log: bool = True) -> None:
        self.workdir = Path(workdir)
        self.location = location
        self.access_log = access_log  # off for benchmarks: logging is not what the reference measures
        self.bind_host = bind_host
        self.port = free_port(bind_host)
        self.process: ManagedProcess | None = None

    @classmethod
    def proxy(cls, workdir: Path, upstream_url: str, *directives: str, buffering: bool = False) -> NginxServer:
        """A reverse proxy to `upstream_url` plus `directives` (e.g. max_ranges 0). `limit_rate`
        needs `buffering` on to bind."""
        body = [
            f"proxy_pass {upstream_url};",
            f"proxy_buffering {'on' if buffering else 'off'};",
            "proxy_http_version 1.1;",
            'proxy_set_header Connection "";',
            "proxy_set_header Host $http_host;",
            *directives,
        ]
        return cls(workdir, " ".join(body))

    @classmethod
    def static(cls, workdir: Path, root: Path, *directives: str, access_log: bool = True) -> NginxServer:
        """Serves files under `root` as they are (sendfile, Range support unless told otherwise)."""
        location = " ".join([f"root {root};", "default_type application/octet-stream;", *directives])
        return cls(workdir, location, access_log=access_log)

    @property
    def host(self) -> str:
        return f"{self.bind_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> NginxServer:
        prefix = self.workdir / "nginx"
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        temp = prefix / "temp"
        temp.mkdir(exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(
            "worker_processes 1;\n"
            + ("user root;\n" if os.geteuid() == 0 else "")  # pytest's temp dirs are 0700
            + f"pid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            + (f"  access_log {prefix}/logs/access.log;\n" if self.access_log else "  access_log off;\n")
            + "  sendfile on;\n  tcp_nopush on;\n"
            "  keepalive_requests 100000;\n"
            f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
            f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
            f"  scgi_temp_path {temp}/scgi;\n"
            f"  server {{ listen {self.host}; location / {{ {self.location} }} }}\n}}\n"
        )
        self.process = ManagedProcess(
            [require_binary("nginx"), "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"],
            prefix / "nginx.log",
        ).start()
        wait_port(self.bind_host, self.port)
        return self

    def access_lines(self) -> list[str]:
        path = self.workdir / "nginx" / "logs" / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
