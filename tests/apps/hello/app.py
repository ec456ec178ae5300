"""A small WSGI app for the lab: answers with what served the request.

Body: ``<version> <app> <vassal> <host> <pid>``.  The version is the
release directory's name (the emperor role runs each release from
``releases/<version>``), so a response says which code served it.
"""

import importlib.metadata
import os
import socket
import sys
import time

VERSION = os.path.basename(os.getcwd())
APP = os.environ.get("APP_NAME", "hello")
HOST = socket.gethostname()
# A real app imports a framework and warms caches: take a moment.
time.sleep(float(os.environ.get("APP_IMPORT_SECONDS", "0.5")))
if os.path.exists(os.path.join(os.getcwd(), "BROKEN")):
    raise RuntimeError("release %s of %s is broken (BROKEN file present)" % (VERSION, APP))
# A release whose import never returns (a dead database at start-up).
while os.path.exists(os.path.join(os.getcwd(), "HANG")):
    time.sleep(60)
# A release that starts but answers 503 (its warm-up request never passes).
COLD = os.path.exists(os.path.join(os.getcwd(), "COLD"))


def uwsgi_version(module):
    version = getattr(module, "version", "-") if module else "-"
    return version.decode() if isinstance(version, bytes) else version


def application(environ, start_response):
    if COLD:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"cold\n"]
    if environ.get("PATH_INFO") == "/runtime":
        # What runs the app: its Python prefix (a virtualenv's with virtualenv: true), the uWSGI
        # serving it, and the version of the lab's requirement (six) that Python finds, if any.
        try:
            six = importlib.metadata.version("six")
        except importlib.metadata.PackageNotFoundError:
            six = "-"
        uwsgi = sys.modules.get("uwsgi")
        body = "%s %s %s prefix=%s uwsgi=%s six=%s\n" % (
            VERSION, APP, HOST, sys.prefix, uwsgi_version(uwsgi), six)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body.encode()]
    if environ.get("PATH_INFO") == "/whoami":
        # What the app learns of the client: scheme, addresses, forwarded headers.
        body = "%s scheme=%s https=%s remote=%s xfp=%s xff=%s\n" % (
            VERSION, environ.get("wsgi.url_scheme"), environ.get("HTTPS", "-"), environ.get("REMOTE_ADDR", "-"),
            environ.get("HTTP_X_FORWARDED_PROTO", "-"), environ.get("HTTP_X_FORWARDED_FOR", "-"))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body.encode()]
    body = "%s %s %s %s %d\n" % (VERSION, APP, environ.get("UWSGI_VASSAL", os.environ.get("VASSAL", "-")),
                                 HOST, os.getpid())
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body.encode()]
