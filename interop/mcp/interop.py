#!/usr/bin/env python3
"""MCP interop: the official Python SDK's client against examples/mcp_server.

Usage: interop.py PATH/TO/mcp_server   (interop/mcp/run runs it)

The script plays a tiny authorization server (RFC 8414 metadata, a JWKS, a client_credentials
token endpoint that mints ES256 `at+jwt` tokens for the `resource` asked for, RFC 8707), starts
the MCP server with that issuer and its canonical URI, and lets the SDK do the rest: the 401,
the protected resource metadata named in it (RFC 9728), the authorization server's metadata,
the token, then initialize, tools/list and tools/call. The 401 names the scope every request
needs (`mcp:tools`), which the SDK asks for; calling the admin tool then draws a
`403 insufficient_scope` naming `mcp:admin`, and the SDK steps up: it asks the authorization
server again for both scopes and retries. It exits non-zero unless every check holds.
"""

import asyncio
import base64
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from mcp import ClientSession
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import Process, check, failures, finish, free_port, stop_on_sigterm  # noqa: E402

# The clients the authorization server knows: id -> (secret, the scopes it may be granted).
# The server, as real ones do, grants only the scopes asked for that the client is allowed.
CLIENTS = {
    "interop-client": ("interop-secret", {"mcp:tools"}),
    "interop-admin": ("interop-admin-secret", {"mcp:tools", "mcp:admin"}),
}


class AuthorizationServer:
    """RFC 8414 metadata, a JWKS and a client_credentials token endpoint, on 127.0.0.1."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid="as-1", alg="ES256", use="sig")
        self.jwks = {"keys": [jwk]}
        self.token_requests = []
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.issuer = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def mint(self, audience, scope, client_id="interop-client"):
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": client_id, "aud": audience, "client_id": client_id,
                  "scope": scope, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "as-1", "typ": "at+jwt"})

    def handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/.well-known/oauth-authorization-server":
                    self.reply(200, {
                        "issuer": server.issuer,
                        # The SDK's metadata model requires it, though no flow here uses it.
                        "authorization_endpoint": f"{server.issuer}/authorize",
                        "token_endpoint": f"{server.issuer}/token",
                        "jwks_uri": f"{server.issuer}/jwks",
                        "response_types_supported": ["code"],
                        "grant_types_supported": ["client_credentials"],
                        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                    })
                elif self.path == "/jwks":
                    self.reply(200, server.jwks)
                else:
                    self.reply(404, {"error": "not_found"})

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                server.token_requests.append(form)
                client = None
                for client_id, (secret, allowed) in CLIENTS.items():
                    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
                    if self.headers.get("authorization") == f"Basic {basic}":
                        client = (client_id, allowed)
                if self.path != "/token" or client is None:
                    return self.reply(401, {"error": "invalid_client"})
                if form.get("grant_type") != "client_credentials" or "resource" not in form:
                    return self.reply(400, {"error": "invalid_request"})
                granted = set(form.get("scope", "").split()) & client[1]
                scope = " ".join(sorted(granted))
                self.reply(200, {"access_token": server.mint(form["resource"], scope, client[0]),
                                 "token_type": "Bearer", "expires_in": 300, "scope": scope})

        return Handler


class MemoryStorage:
    def __init__(self):
        self.tokens, self.client = None, None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class McpServer(Process):
    def __init__(self, binary, issuer, workdir):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/mcp"
        super().__init__("mcp_server", [binary, "--listen", f"127.0.0.1:{port}", "--issuer", issuer,
                                        "--jwks", f"{issuer}/jwks", "--public-url", self.url],
                         workdir)
        self.ready(self.wait_for_port, port)


async def session_with(server_url, issuer, client_id):
    """Tools listed and called by the SDK with tokens it obtains itself; the admin tool's
    outcome is its result, or the error that ended the call."""
    provider = ClientCredentialsOAuthProvider(
        server_url=server_url, storage=MemoryStorage(), client_id=client_id,
        client_secret=CLIENTS[client_id][0], issuer=issuer)
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        async with streamable_http_client(server_url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                echo = await session.call_tool("echo", {"text": "hi"})
                try:
                    admin = await asyncio.wait_for(session.call_tool("admin_stats", {}), 30)
                except Exception as error:  # the SDK's error for a refused call
                    admin = error
                return tools, echo, admin


def text(result):
    return " ".join(getattr(c, "text", "") for c in result.content)


async def scenario(binary, workdir):
    auth = AuthorizationServer()
    server = McpServer(binary, auth.issuer, workdir)
    try:
        async with httpx2.AsyncClient(timeout=30) as raw:
            anonymous = await raw.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                       headers={"accept": "application/json, text/event-stream"})
            challenge = anonymous.headers.get("www-authenticate", "")
            check(anonymous.status_code == 401 and "resource_metadata=" in challenge
                  and 'scope="mcp:tools"' in challenge,
                  f"no token: 401 naming resource_metadata and the scope ({challenge})")

            # A token for the server without mcp:admin, and the admin tool called with it.
            reader = auth.mint(server.url, "mcp:tools")
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "admin_stats", "arguments": {}}}
            refused = await raw.post(server.url, json=call,
                                     headers={"accept": "application/json, text/event-stream",
                                              "authorization": f"Bearer {reader}"})
            challenge = refused.headers.get("www-authenticate", "")
            check(refused.status_code == 403 and 'error="insufficient_scope"' in challenge
                  and 'scope="mcp:tools mcp:admin"' in challenge and "resource_metadata=" in challenge,
                  f"admin_stats without mcp:admin: 403 naming the scope ({challenge})")

        tools, echo, admin = await session_with(server.url, auth.issuer, "interop-client")
        asked = [r.get("scope") for r in auth.token_requests]
        resources = {r.get("resource") for r in auth.token_requests}
        check(resources == {server.url},
              f"the SDK asked every token for the canonical URI (resource={resources})")
        check(asked[:1] == ["mcp:tools"], f"the SDK asked first for the 401's scope (scope={asked[:1]})")
        names = sorted(t.name for t in tools.tools)
        check(names == ["admin_stats", "echo"], f"tools/list: {names}")
        check(not echo.is_error and text(echo) == "interop-client: hi", f"echo: {text(echo)}")
        check(asked[1:] == ["mcp:tools mcp:admin"],
              f"on the 403 the SDK stepped up, asking for both scopes (scope={asked[1:]})")
        check(isinstance(admin, Exception) or admin.is_error,
              f"admin_stats, when the authorization server grants no mcp:admin: refused ({admin!r})")

        auth.token_requests.clear()
        _, _, admin = await session_with(server.url, auth.issuer, "interop-admin")
        asked = [r.get("scope") for r in auth.token_requests]
        check(asked == ["mcp:tools", "mcp:tools mcp:admin"],
              f"a client allowed mcp:admin gets it by stepping up (scope={asked})")
        check(not isinstance(admin, Exception) and not admin.is_error,
              f"admin_stats after the step-up: {admin if isinstance(admin, Exception) else text(admin)}")

        elsewhere = auth.mint("https://other.example/mcp", "mcp:tools mcp:admin")
        async with httpx2.AsyncClient(timeout=30) as raw:
            refused = await raw.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                     headers={"accept": "application/json, text/event-stream",
                                              "authorization": f"Bearer {elsewhere}"})
            challenge = refused.headers.get("www-authenticate", "")
            check(refused.status_code == 401 and 'error="invalid_token"' in challenge,
                  f"a token for another audience: 401 invalid_token ({challenge})")
    finally:
        server.stop()
        auth.http.shutdown()
        if failures:
            server.print_log()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: interop.py PATH/TO/mcp_server")
    with tempfile.TemporaryDirectory() as workdir:
        asyncio.run(scenario(sys.argv[1], workdir))
    finish("MCP interop")


if __name__ == "__main__":
    stop_on_sigterm()
    main()
