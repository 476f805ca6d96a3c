"""nginx as the reference proxy: HTTP/2 in (cleartext, prior knowledge), pooled
HTTP/1.1 keep-alive connections out, streaming unbuffered, as a team would set it
up in front of Ollama. Debian's package (`apt-get install nginx-light`) is enough;
without nginx the benchmark leaves this path out.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def nginx_config(directory: Path, port: int, backend: str, workers: int = 1) -> str:
    """The whole nginx.conf: everything it writes stays in `directory`.

    One worker by default, like one region process; the access log is off, as
    Ghostgate's is a per-request JSON line that the benchmark does keep on.
    """
    host_port = backend.removeprefix("http://").rstrip("/")
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
daemon off;
master_process on;
worker_processes {workers};
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{
    worker_connections 16384;
}}
http {{
    access_log off;
{temp}
    upstream ollama {{
        server {host_port};
        keepalive 1024;
        keepalive_requests 1000000;
        keepalive_timeout 3600s;
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        http2_max_concurrent_streams 256;
        keepalive_requests 1000000;
        keepalive_timeout 3600s;
        location / {{
            proxy_pass http://ollama;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


def nginx_command(binary: str, directory: Path) -> list[str]:
    return [binary, "-p", str(directory), "-c", str(directory / "nginx.conf")]
