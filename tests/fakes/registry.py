"""A container registry on loopback (the OCI distribution API, the part a pull uses):
``/v2/``, manifests and blobs, optionally behind HTTP basic auth. It serves images made
from a root file system tar, and records every request (to tell a pull from none)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from tests.fakes.serving import start_app

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.users = users or {}  # none: anyone may pull
        self.manifests: dict[tuple[str, str], bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, bool]] = []  # method, path, authorized
        self.host = ""  # 127.0.0.1:PORT once served

    def add_image(self, repo: str, tag: str, rootfs_tar: bytes) -> str:
        """Serve ``repo:tag`` with one layer, the tar; its name to pull."""
        layer = gzip.compress(rootfs_tar, mtime=0)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]},
                "rootfs": {"type": "layers", "diff_ids": [_digest(rootfs_tar)]},
            }
        ).encode()
        self.blobs[_digest(layer)] = layer
        self.blobs[_digest(config)] = config
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, "digest": _digest(config), "size": len(config)},
                "layers": [{"mediaType": LAYER, "digest": _digest(layer), "size": len(layer)}],
            }
        ).encode()
        self.manifests[(repo, tag)] = manifest
        self.manifests[(repo, _digest(manifest))] = manifest
        return f"{self.host}/{repo}:{tag}"

    def pulls(self, repo: str) -> int:
        """How many times a manifest of ``repo`` was fetched with GET."""
        return sum(
            1
            for m, p, ok in self.requests
            if m == "GET" and ok and p.startswith(f"/v2/{repo}/manifests/")
        )

    def _authorized(self, request: web.Request) -> bool:
        if not self.users:
            return True
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return self.users.get(user) == password

    def make_app(self) -> web.Application:
        @web.middleware
        async def auth(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
            ok = self._authorized(request)
            self.requests.append((request.method, request.path, ok))
            if not ok:
                return web.json_response(
                    {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                    status=401,
                    headers={"WWW-Authenticate": 'Basic realm="fake-registry"'},
                )
            return await handler(request)

        async def ping(_request: web.Request) -> web.Response:
            return web.json_response({})

        async def manifest(request: web.Request) -> web.Response:
            body = self.manifests.get((request.match_info["name"], request.match_info["ref"]))
            if body is None:
                return web.json_response(
                    {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]},
                    status=404,
                )
            headers = {"Docker-Content-Digest": _digest(body), "Content-Type": MANIFEST}
            if request.method == "HEAD":
                return web.Response(headers={**headers, "Content-Length": str(len(body))})
            return web.Response(body=body, headers=headers)

        async def blob(request: web.Request) -> web.Response:
            body = self.blobs.get(request.match_info["digest"])
            if body is None:
                return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
            headers = {"Docker-Content-Digest": _digest(body)}
            if request.method == "HEAD":
                return web.Response(headers={**headers, "Content-Length": str(len(body))})
            return web.Response(body=body, headers=headers, content_type="application/octet-stream")

        app = web.Application(middlewares=[auth])
        app.router.add_get("/v2/", ping)
        app.router.add_route("*", "/v2/{name:.+}/manifests/{ref}", manifest)
        app.router.add_route("*", "/v2/{name:.+}/blobs/{digest}", blob)
        return app


@asynccontextmanager
async def serve_registry(users: dict[str, str] | None = None) -> AsyncIterator[FakeRegistry]:
    registry = FakeRegistry(users)
    runner, registry.host = await start_app(registry.make_app())
    try:
        yield registry
    finally:
        await runner.cleanup()
