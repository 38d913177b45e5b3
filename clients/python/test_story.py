"""docverify from Python: the whole story against the real binaries.

Stubs are generated from <repo>/proto at test time with grpc_tools.protoc.
auth-service and document-service are started as subprocesses on port 0, each
with a fresh SQLite database, or a fresh PostgreSQL database (created and
dropped with psql) when DOCVERIFY_TEST_POSTGRES names a server such as
postgres://postgres@127.0.0.1:5432; readiness is a gRPC health check. The tests
then run the story (register, login, upload, verify, audit, download), check
that a role change refuses the access tokens issued before it, read the
google.rpc error details with grpcio-status and discover the services through
server reflection.

Run it with clients/python/run.sh, which prints "N passed, N failed" last.
"""

import atexit
import base64
import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

# The services are started with fork + exec (a pre-exec hook ties them to
# this process) after channels exist; grpcio's fork handlers then run in the
# child before exec and can abort it ("epoll_wait error: Bad file
# descriptor", seen in CI). Nothing here forks to use gRPC in a child.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc  # noqa: E402
from google.protobuf import descriptor_pool
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("DOCVERIFY_REPO") or os.path.dirname(os.path.dirname(HERE))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
AUTH_BIN = os.environ.get("AUTH_SERVICE_BIN") or os.path.join(TARGET, "debug", "auth-service")
DOCUMENT_BIN = os.environ.get("DOCUMENT_SERVICE_BIN") or os.path.join(
    TARGET, "debug", "document-service"
)

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct horse battery staple admin"
PASSWORD = "quartz violin meadow lantern"

# Seconds for a binary to log its address and answer SERVING.
START_TIMEOUT = float(os.environ.get("DOCVERIFY_START_TIMEOUT", "60"))
RPC_TIMEOUT = 30.0  # seconds for one RPC (argon2 hashing is slow in debug builds)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# When this names a PostgreSQL server, the services run on fresh databases there, not SQLite.
POSTGRES_ENV = "DOCVERIFY_TEST_POSTGRES"
PSQL_TIMEOUT = 60.0  # seconds for one psql command


def postgres_server():
    """The server named by DOCVERIFY_TEST_POSTGRES, or None (unset) for SQLite.

    Set but empty is a mistake in the environment, not a request for SQLite: a run
    that meant PostgreSQL must not pass on SQLite.
    """
    server = os.environ.get(POSTGRES_ENV)
    if server is None:
        return None
    if not server.strip():
        raise RuntimeError(
            f"{POSTGRES_ENV} is set but empty: name a server "
            "(for example postgres://postgres@127.0.0.1:5432), or unset it for SQLite"
        )
    return server.strip()


def with_database(server, name):
    """The server URL with its database (the URL's path) replaced by name."""
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(server)._replace(path=f"/{name}"))


def redacted(url):
    """The URL without its password, for printing."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def psql(server, sql):
    """Runs one SQL command on the server's maintenance database "postgres"."""
    binary = shutil.which("psql")
    if binary is None:
        raise RuntimeError(f"{POSTGRES_ENV} is set but psql is not on PATH")
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    target = with_database(server, "postgres")
    command = [binary, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target, "-c", sql]
    try:
        done = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PSQL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"psql on {redacted(server)}: {sql!r} took over {PSQL_TIMEOUT}s")
    if done.returncode != 0:
        raise RuntimeError(
            f"psql on {redacted(server)}: {sql!r} failed ({done.returncode}): "
            f"{done.stderr.strip()}"
        )


# Test databases created and not yet dropped, name -> server: what the atexit fallback drops.
_LIVE_DATABASES = {}


def create_database(server, label):
    """A fresh, empty database on the server; its URL and name."""
    name = f"dv_py_{label}_{uuid.uuid4().hex}"
    psql(server, f'CREATE DATABASE "{name}"')
    _LIVE_DATABASES[name] = server
    return with_database(server, name), name


def drop_database(name):
    """Drops a database create_database made, cutting its connections first."""
    server = _LIVE_DATABASES.get(name)
    if server is None:
        return
    psql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    del _LIVE_DATABASES[name]


@atexit.register
def _drop_leftover_databases():
    """Whatever the class cleanups did not drop (a failed drop, an interrupted run)."""
    for name in list(_LIVE_DATABASES):
        try:
            drop_database(name)
        except Exception as e:
            print(f"warning: could not drop test database {name}: {e}", file=sys.stderr)


def generate_stubs(out_dir):
    """Runs protoc over every .proto in <repo>/proto into out_dir and puts it on sys.path."""
    from grpc_tools import protoc
    import grpc_tools

    proto_root = os.path.join(REPO, "proto")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    protos = sorted(
        os.path.join(d, f)
        for d, _, files in os.walk(proto_root)
        for f in files
        if f.endswith(".proto")
    )
    if not protos:
        raise RuntimeError(f"no .proto files under {proto_root}")
    os.makedirs(out_dir, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    sys.path.insert(0, out_dir)
    importlib.invalidate_caches()


_STUBS_DIR = None


def load_stubs():
    """Generates the stubs once per test run, into a directory removed at exit."""
    global _STUBS_DIR
    if _STUBS_DIR is None:
        stubs = tempfile.TemporaryDirectory(prefix="docverify-py-stubs-")
        atexit.register(stubs.cleanup)
        generate_stubs(stubs.name)
        _STUBS_DIR = stubs


def _die_with_parent():
    """In the child before exec: SIGTERM it if this test process dies (Linux only)."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


class Service:
    """One real binary as a subprocess; its merged output is kept in memory."""

    def __init__(self, name, binary, env, addr_pattern):
        self.name = name
        self.lines = []
        self._addr = None
        self._found = threading.Event()
        full_env = dict(os.environ)
        full_env.update(env)
        full_env["NO_COLOR"] = "1"
        full_env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(
            [binary],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self._pattern = re.compile(addr_pattern)
        # Keep draining the pipe for the process's whole life, so it never blocks on a full pipe.
        self._reader = threading.Thread(target=self._read, name=f"{name}-log", daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = ANSI.sub("", raw.rstrip("\n"))
            self.lines.append(line)
            if self._addr is None:
                m = self._pattern.search(line)
                if m:
                    self._addr = m.group(1)
                    self._found.set()
        self._found.set()  # the process ended: wake the waiter

    def wait_for_address(self, deadline):
        while time.monotonic() < deadline:
            if self._found.wait(timeout=0.1):
                break
        if self._addr is None:
            code = self.proc.poll()
            state = "still running" if code is None else f"exited with {code}"
            raise RuntimeError(
                f"{self.name} did not log its listening address ({state}):\n{self.log_tail()}"
            )
        return self._addr

    def wait_serving(self, channel, services, deadline):
        """Polls grpc.health.v1.Health/Check for each name until all are SERVING."""
        stub = health_pb2_grpc.HealthStub(channel)
        pending = list(services)
        last = None
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"{self.name} not SERVING for {pending[0]!r} in time (last: {last}):\n"
                    f"{self.log_tail()}"
                )
            try:
                r = stub.Check(
                    health_pb2.HealthCheckRequest(service=pending[0]),
                    timeout=min(2.0, remaining),
                )
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    pending.pop(0)
                    continue
            except grpc.RpcError as e:
                last = f"{e.code().name}: {e.details()}"
            time.sleep(0.05)

    def stop(self, timeout=20.0):
        """SIGTERM, then wait; SIGKILL only if it does not stop in time.

        Returns the exit code after SIGTERM, or None if the process had already exited.
        """
        signalled = self.proc.poll() is None
        if signalled:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.lines.append(f"[test] {self.name} ignored SIGTERM for {timeout}s: killed")
        self._reader.join(timeout=5)
        return self.proc.returncode if signalled else None

    def log_tail(self, n=40):
        return "\n".join(f"  {self.name}| {l}" for l in self.lines[-n:])


def verify_receipt(receipt, verifier_key):
    """Checks a docverify review receipt offline with the log's verifier key (C2SP
    signed-note, RFC 9162 inclusion proof) and returns the event it proves; raises
    ValueError otherwise. Any language can do the same in as many lines."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    name, key_id, key = verifier_key.split("+", 2)
    raw = base64.b64decode(key)
    if raw[0] != 1:
        raise ValueError("not an Ed25519 verifier key")
    public = Ed25519PublicKey.from_public_bytes(raw[1:])
    text, _, signatures = receipt.checkpoint.partition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        signer, _, sig = line.removeprefix("\u2014 ").partition(" ")
        sig = base64.b64decode(sig)
        if signer == name and sig[:4].hex() == key_id:
            try:
                public.verify(sig[4:], text.encode())
            except InvalidSignature:
                raise ValueError("bad checkpoint signature") from None
            break
    else:
        raise ValueError("the checkpoint is not signed by this key")
    origin, size, root = text.splitlines()
    if origin != name or int(size) != receipt.tree_size:
        raise ValueError("the checkpoint is of another log or size")

    def sha(*parts):
        return hashlib.sha256(b"".join(parts)).digest()

    h = sha(b"\x00", receipt.leaf)
    fn, sn = receipt.leaf_index, receipt.tree_size - 1
    for p in receipt.inclusion_proof:
        if fn % 2 == 1 or fn == sn:
            h = sha(b"\x01", p, h)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            h = sha(b"\x01", h, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or h != base64.b64decode(root):
        raise ValueError("the inclusion proof does not lead to the signed root")
    event = json.loads(receipt.leaf)
    if event["sequence"] != receipt.leaf_index + 1:
        raise ValueError("the leaf is not at its place")
    return event


def bearer(token):
    return (("authorization", f"Bearer {token}"),)


def details_of(err):
    """The google.rpc.Status of a failed call, its Any details unpacked by type."""
    status = rpc_status.from_call(err)
    if status is None:
        raise AssertionError(f"{err.code()} carries no grpc-status-details-bin: {err.details()}")
    found = {}
    for any_ in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RequestInfo,
            error_details_pb2.RetryInfo,
        ):
            if any_.Is(cls.DESCRIPTOR):
                msg = cls()
                any_.Unpack(msg)
                found[cls.DESCRIPTOR.name] = msg
    return status, found


class StoryTest(unittest.TestCase):
    """Both services started once for the class; each test uses its own accounts."""

    services = []
    # document-service's default: it verifies tokens with auth-service's published keys.
    TOKEN_VALIDATION = "local"

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="docverify-py-")
        cls.addClassCleanup(cls.tmp.cleanup)
        load_stubs()
        cls.auth_pb2 = importlib.import_module("docverify.auth.v1.auth_pb2")
        cls.auth_grpc = importlib.import_module("docverify.auth.v1.auth_pb2_grpc")
        cls.doc_pb2 = importlib.import_module("docverify.document.v1.document_pb2")
        cls.doc_grpc = importlib.import_module("docverify.document.v1.document_pb2_grpc")
        cls.audit_pb2 = importlib.import_module("docverify.audit.v1.audit_pb2")
        cls.audit_grpc = importlib.import_module("docverify.audit.v1.audit_pb2_grpc")

        # Before _stop_all is registered, so the drops run after the services stopped.
        auth_db = cls.fresh_database("auth")
        documents_db = cls.fresh_database("documents")

        cls.services = []
        cls.addClassCleanup(cls._stop_all)
        deadline = time.monotonic() + START_TIMEOUT

        auth = Service(
            "auth-service",
            AUTH_BIN,
            {
                "AUTH_LISTEN_ADDR": "127.0.0.1:0",
                "AUTH_DATABASE_URL": auth_db,
                "BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
                "BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                # document-service's service account, for the revocation feed.
                "BOOTSTRAP_SERVICE_CREDENTIALS_FILE": cls.credentials_file(),
                # The keys over plain HTTP, for third-party JWT libraries.
                "AUTH_HTTP_ADDR": "127.0.0.1:0",
                "RUST_LOG": "info",
            },
            r"auth-service listening addr=(\S+)",
        )
        cls.services.append(auth)
        cls.auth_addr = auth.wait_for_address(deadline)
        # Logged before the listening line, so it is in by now.
        jwks = [re.search(r"keys over HTTP.*addr=(\S+)", line) for line in list(auth.lines)]
        cls.jwks_url = next(
            f"http://{m.group(1)}/.well-known/jwks.json" for m in jwks if m is not None
        )
        cls.auth_channel = grpc.insecure_channel(cls.auth_addr)
        cls.addClassCleanup(cls.auth_channel.close)
        auth.wait_serving(
            cls.auth_channel,
            ["", "docverify.auth.v1.AuthService", "docverify.auth.v1.UserService"],
            deadline,
        )

        docs = Service(
            "document-service",
            DOCUMENT_BIN,
            {
                "DOCUMENT_LISTEN_ADDR": "127.0.0.1:0",
                "DOCUMENT_DATABASE_URL": documents_db,
                "AUTH_SERVICE_URL": f"http://{cls.auth_addr}",
                "TOKEN_VALIDATION": cls.TOKEN_VALIDATION,
                "DOCUMENT_CLIENT_CREDENTIALS_FILE": cls.credentials_file(),
                "RUST_LOG": "info",
            },
            r"document-service listening addr=(\S+)",
        )
        cls.services.append(docs)
        cls.doc_addr = docs.wait_for_address(deadline)
        cls.doc_channel = grpc.insecure_channel(cls.doc_addr)
        cls.addClassCleanup(cls.doc_channel.close)
        # document-service reports its auth-service dependency under AuthService's name.
        docs.wait_serving(
            cls.doc_channel,
            ["", "docverify.document.v1.DocumentService", "docverify.auth.v1.AuthService"],
            deadline,
        )

        cls.auth = cls.auth_grpc.AuthServiceStub(cls.auth_channel)
        cls.users = cls.auth_grpc.UserServiceStub(cls.auth_channel)
        cls.docs = cls.doc_grpc.DocumentServiceStub(cls.doc_channel)
        cls.audit = cls.audit_grpc.AuditServiceStub(cls.doc_channel)

    @classmethod
    def credentials_file(cls):
        """Where auth-service writes document-service's client id and secret."""
        return os.path.join(cls.tmp.name, "document-service.credentials")

    @classmethod
    def fresh_database(cls, label):
        """A fresh database for one service of this class: a file in the class's temporary
        folder on SQLite; on PostgreSQL a new database, dropped by a class cleanup."""
        server = postgres_server()
        if server is None:
            return f"sqlite://{cls.tmp.name}/{label}.db"
        url, name = create_database(server, label)
        cls.addClassCleanup(drop_database, name)
        print(f"[test] {cls.__name__}: {label} database {name} on {redacted(server)}", flush=True)
        return url

    @classmethod
    def _stop_all(cls):
        codes = {s.name: s.stop() for s in reversed(cls.services)}
        bad = {name: code for name, code in codes.items() if code not in (0, None)}
        if bad:
            tails = "\n".join(s.log_tail(15) for s in cls.services)
            raise AssertionError(f"not a clean exit after SIGTERM: {bad}\n{tails}")

    # -- helpers -----------------------------------------------------------

    def register(self, email, name):
        r = self.auth.Register(
            self.auth_pb2.RegisterRequest(email=email, password=PASSWORD, display_name=name),
            timeout=RPC_TIMEOUT,
        )
        self.assertEqual(r.user.email, email)
        self.assertEqual(list(r.user.roles), ["user"])
        return r.user

    def login(self, email, password=PASSWORD):
        r = self.auth.Login(
            self.auth_pb2.LoginRequest(email=email, password=password), timeout=RPC_TIMEOUT
        )
        self.assertEqual(r.token_type, "Bearer")
        self.assertGreater(r.expires_in, 0)
        return r

    def current_user(self, token):
        return self.auth.GetCurrentUser(
            self.auth_pb2.GetCurrentUserRequest(), metadata=bearer(token), timeout=RPC_TIMEOUT
        ).user

    def upload(self, token, title, filename, content, chunk=64 * 1024):
        def messages():
            yield self.doc_pb2.UploadDocumentRequest(
                metadata=self.doc_pb2.DocumentMetadata(
                    title=title, filename=filename, content_type="application/octet-stream"
                )
            )
            for i in range(0, len(content), chunk):
                yield self.doc_pb2.UploadDocumentRequest(chunk=content[i : i + chunk])

        return self.docs.UploadDocument(
            messages(), metadata=bearer(token), timeout=RPC_TIMEOUT
        ).document

    def download(self, token, document_id):
        stream = self.docs.DownloadDocument(
            self.doc_pb2.DownloadDocumentRequest(document_id=document_id),
            metadata=bearer(token),
            timeout=RPC_TIMEOUT,
        )
        return b"".join(m.chunk for m in stream)

    # -- tests ---------------------------------------------------------------

    def test_whole_story(self):
        pb = self.doc_pb2

        # A user registers, logs in and uploads through the client stream.
        owner = self.register("owner@example.com", "Olive Owner")
        owner_token = self.login("owner@example.com").access_token
        me = self.auth.GetCurrentUser(
            self.auth_pb2.GetCurrentUserRequest(), metadata=bearer(owner_token), timeout=RPC_TIMEOUT
        ).user
        self.assertEqual(me.id, owner.id)

        content = bytes((i * 7) % 251 for i in range(300_000))
        doc = self.upload(owner_token, "passport scan", "passport.bin", content)
        self.assertEqual(doc.owner_id, owner.id)
        self.assertEqual(doc.title, "passport scan")
        self.assertEqual(doc.filename, "passport.bin")
        self.assertEqual(doc.size_bytes, len(content))
        self.assertEqual(doc.sha256, hashlib.sha256(content).hexdigest())
        self.assertEqual(doc.status, pb.DOCUMENT_STATUS_PENDING)
        self.assertEqual(doc.reviewed_by, "")

        # The bootstrap admin makes a second user a verifier.
        verifier = self.register("verifier@example.com", "Vera Verifier")
        early_token = self.login("verifier@example.com").access_token
        with self.assertRaises(grpc.RpcError) as denied:
            self.docs.VerifyDocument(
                pb.VerifyDocumentRequest(document_id=doc.id, note="too early"),
                metadata=bearer(early_token),
                timeout=RPC_TIMEOUT,
            )
        self.assertEqual(denied.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

        admin_token = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).access_token
        changed = self.users.SetUserRoles(
            self.auth_pb2.SetUserRolesRequest(user_id=verifier.id, roles=["verifier"]),
            metadata=bearer(admin_token),
            timeout=RPC_TIMEOUT,
        ).user
        self.assertEqual(list(changed.roles), ["verifier"])

        # The verifier logs in again (the role change revoked the old session) and verifies.
        verifier_token = self.login("verifier@example.com").access_token
        answer = self.docs.VerifyDocument(
            pb.VerifyDocumentRequest(document_id=doc.id, note="matches the register"),
            metadata=bearer(verifier_token),
            timeout=RPC_TIMEOUT,
        )
        verified = answer.document
        self.assertEqual(verified.status, pb.DOCUMENT_STATUS_VERIFIED)
        self.assertEqual(verified.reviewed_by, verifier.id)
        self.assertTrue(verified.HasField("reviewed_at"))
        self.assertEqual(verified.review_note, "matches the register")

        # A third user, made auditor, finds out who verified it, when, and what was done.
        auditor = self.register("auditor@example.com", "Audrey Auditor")
        self.users.SetUserRoles(
            self.auth_pb2.SetUserRolesRequest(user_id=auditor.id, roles=["auditor"]),
            metadata=bearer(admin_token),
            timeout=RPC_TIMEOUT,
        )
        auditor_token = self.login("auditor@example.com").access_token
        trail = self.audit.ListAuditEvents(
            self.audit_pb2.ListAuditEventsRequest(target_id=doc.id),
            metadata=bearer(auditor_token),
            timeout=RPC_TIMEOUT,
        ).events
        self.assertEqual(
            [e.action for e in trail], ["document.verified", "document.uploaded"], "newest first"
        )
        who = trail[0]
        self.assertEqual(who.actor_id, verifier.id)
        self.assertEqual(who.actor_email, "verifier@example.com")
        self.assertEqual(who.target_id, doc.id)
        self.assertEqual(who.outcome, self.audit_pb2.AUDIT_OUTCOME_SUCCESS)
        self.assertTrue(who.HasField("occurred_at"))
        self.assertEqual(json.loads(who.details_json).get("note"), "matches the register")
        self.assertEqual(trail[1].actor_id, owner.id)
        # The whole trail, once the sequencer has made every event a leaf: gapless.
        deadline = time.monotonic() + 10
        while True:
            everything = self.audit.ListAuditEvents(
                self.audit_pb2.ListAuditEventsRequest(page_size=500),
                metadata=bearer(auditor_token),
                timeout=RPC_TIMEOUT,
            ).events
            if not any(e.pending for e in everything) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(
            sorted(e.sequence for e in everything), list(range(1, len(everything) + 1))
        )

        # The review's receipt, checked offline as any client can: the published key,
        # the checkpoint's signature, the inclusion proof, and what the leaf says.
        key = self.audit.GetCheckpoint(
            self.audit_pb2.GetCheckpointRequest(), timeout=RPC_TIMEOUT
        ).verifier_key
        proven = verify_receipt(answer.receipt, key)
        self.assertEqual(proven["action"], "document.verified")
        self.assertEqual(proven["target_id"], doc.id)
        self.assertEqual(proven["details"]["sha256"], doc.sha256)
        self.assertEqual(proven["actor_email"], "verifier@example.com")
        forged = self.audit_pb2.Receipt()
        forged.CopyFrom(answer.receipt)
        forged.leaf = answer.receipt.leaf.replace(b"verifier@", b"verifiez@")
        with self.assertRaises(ValueError):
            verify_receipt(forged, key)
        # The verifier's attempt before the role change is there too, as DENIED (its
        # target is the method, not the document, so the target_id filter leaves it out).
        denied_events = [
            e
            for e in everything
            if e.action == "authz.denied" and e.actor_id == verifier.id
        ]
        self.assertEqual(len(denied_events), 1, everything)
        self.assertEqual(denied_events[0].outcome, self.audit_pb2.AUDIT_OUTCOME_DENIED)
        self.assertLess(denied_events[0].sequence, who.sequence)

        chain = self.audit.VerifyAuditChain(
            self.audit_pb2.VerifyAuditChainRequest(),
            metadata=bearer(auditor_token),
            timeout=RPC_TIMEOUT,
        )
        self.assertTrue(chain.valid, chain)
        self.assertGreaterEqual(chain.events_checked, 2)
        self.assertEqual(chain.first_invalid_sequence, 0)

        # The server stream gives back the same bytes and the hash the server reported.
        downloaded = self.download(owner_token, doc.id)
        self.assertEqual(len(downloaded), len(content))
        self.assertTrue(downloaded == content, "downloaded bytes differ from the upload")
        self.assertEqual(hashlib.sha256(downloaded).hexdigest(), doc.sha256)
        self.assertEqual(self.download(auditor_token, doc.id), content)

    def test_role_change_refuses_older_access_tokens(self):
        # SetUserRoles bumps the user's token generation, which auth-service checks on every
        # request: a token issued before the change is refused at once, not at its expiry.
        user = self.register("promoted@example.com", "Paula Promoted")
        old_token = self.login("promoted@example.com").access_token
        before = self.current_user(old_token)
        self.assertEqual(before.id, user.id)
        self.assertEqual(list(before.roles), ["user"])

        admin_token = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).access_token
        changed = self.users.SetUserRoles(
            self.auth_pb2.SetUserRolesRequest(user_id=user.id, roles=["verifier", "auditor"]),
            metadata=bearer(admin_token),
            timeout=RPC_TIMEOUT,
        ).user
        self.assertEqual(sorted(changed.roles), ["auditor", "verifier"])

        with self.assertRaises(grpc.RpcError) as refused:
            self.current_user(old_token)
        err = refused.exception
        self.assertEqual(err.code(), grpc.StatusCode.UNAUTHENTICATED, err.details())
        _, found = details_of(err)
        self.assertIn("ErrorInfo", found)
        self.assertEqual(found["ErrorInfo"].domain, "docverify")
        self.assertEqual(found["ErrorInfo"].reason, "INVALID_TOKEN")

        # document-service learns it from the revocation feed (local mode) or asks
        # auth-service (remote mode): either way the old token is refused within a second.
        deadline = time.monotonic() + 1.0
        while True:
            try:
                self.docs.ListDocuments(
                    self.doc_pb2.ListDocumentsRequest(), metadata=bearer(old_token), timeout=RPC_TIMEOUT
                )
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.UNAUTHENTICATED, e.details())
                break
            self.assertLess(time.monotonic(), deadline, "document-service still accepts the old token")
            time.sleep(0.01)

        # A new login carries the new roles; the old token stays refused.
        new = self.login("promoted@example.com")
        self.assertEqual(sorted(new.user.roles), ["auditor", "verifier"])
        me = self.current_user(new.access_token)
        self.assertEqual(me.id, user.id)
        self.assertEqual(sorted(me.roles), ["auditor", "verifier"])
        with self.assertRaises(grpc.RpcError) as still_refused:
            self.current_user(old_token)
        self.assertEqual(still_refused.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

    def test_rich_error_details_on_invalid_register(self):
        with self.assertRaises(grpc.RpcError) as caught:
            self.auth.Register(
                self.auth_pb2.RegisterRequest(email="nope", password="short", display_name=""),
                timeout=RPC_TIMEOUT,
            )
        err = caught.exception
        self.assertEqual(err.code(), grpc.StatusCode.INVALID_ARGUMENT, err.details())

        status, found = details_of(err)
        self.assertEqual(status.code, grpc.StatusCode.INVALID_ARGUMENT.value[0])
        self.assertIn("ErrorInfo", found, status)
        self.assertEqual(found["ErrorInfo"].reason, "INVALID_ARGUMENT")
        self.assertEqual(found["ErrorInfo"].domain, "docverify")
        self.assertIn("BadRequest", found, status)
        violations = {v.field: v.description for v in found["BadRequest"].field_violations}
        for field in ("email", "password", "display_name"):
            self.assertIn(field, violations, violations)
            self.assertTrue(violations[field], f"empty description for {field}")
        self.assertIn("RequestInfo", found, status)
        request_id = found["RequestInfo"].request_id
        self.assertTrue(request_id)
        # The same id travels as the x-request-id response header (trailers-only on errors).
        sent = dict(err.initial_metadata() or ()) | dict(err.trailing_metadata() or ())
        self.assertEqual(sent.get("x-request-id"), request_id, sent)

    def test_no_token_is_unauthenticated(self):
        with self.assertRaises(grpc.RpcError) as caught:
            self.docs.ListDocuments(self.doc_pb2.ListDocumentsRequest(), timeout=RPC_TIMEOUT)
        err = caught.exception
        self.assertEqual(err.code(), grpc.StatusCode.UNAUTHENTICATED, err.details())
        _, found = details_of(err)
        self.assertIn("ErrorInfo", found)
        self.assertEqual(found["ErrorInfo"].domain, "docverify")
        self.assertTrue(found["ErrorInfo"].reason)

        with self.assertRaises(grpc.RpcError) as bad_token:
            self.docs.ListDocuments(
                self.doc_pb2.ListDocumentsRequest(),
                metadata=bearer("not.a.jwt"),
                timeout=RPC_TIMEOUT,
            )
        self.assertEqual(bad_token.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

    def test_a_third_party_verifies_tokens_with_the_jwks_url(self):
        """PyJWT's PyJWKClient, as a gateway or another language would: the
        key set by URL, the token's kid looked up in it, EdDSA checked."""
        import jwt  # PyJWT

        self.register("pyjwt@example.com", "Third Party")
        token = self.login("pyjwt@example.com").access_token
        client = jwt.PyJWKClient(self.jwks_url, cache_keys=True)
        signing_key = client.get_signing_key_from_jwt(token)
        self.assertEqual(signing_key.key_id, jwt.get_unverified_header(token)["kid"])
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=["EdDSA"],
            audience="docverify",
            issuer="docverify-auth",
        )
        me = self.current_user(token)
        self.assertEqual(claims["sub"], me.id)
        self.assertIn("user", claims["roles"])

        # A token signed by another key is refused by the same client.
        tampered = token[: token.rindex(".") + 1] + ("A" * 86)
        with self.assertRaises(jwt.InvalidSignatureError):
            jwt.decode(
                tampered,
                signing_key.key,
                algorithms=["EdDSA"],
                audience="docverify",
                issuer="docverify-auth",
            )

        # Cacheable for the reload interval, and revalidated by its ETag.
        with urllib.request.urlopen(self.jwks_url, timeout=RPC_TIMEOUT) as response:
            self.assertEqual(response.headers["Cache-Control"], "public, max-age=60")
            etag = response.headers["ETag"]
        request = urllib.request.Request(self.jwks_url, headers={"If-None-Match": etag})
        with self.assertRaises(urllib.error.HTTPError) as not_modified:
            urllib.request.urlopen(request, timeout=RPC_TIMEOUT)
        self.assertEqual(not_modified.exception.code, 304)

    def test_reflection_lists_the_services(self):
        expected = {
            self.auth_addr: ["docverify.auth.v1.AuthService", "docverify.auth.v1.UserService"],
            self.doc_addr: [
                "docverify.document.v1.DocumentService",
                "docverify.audit.v1.AuditService",
            ],
        }
        channels = {self.auth_addr: self.auth_channel, self.doc_addr: self.doc_channel}
        for addr, names in expected.items():
            db = ProtoReflectionDescriptorDatabase(channels[addr])
            listed = set(db.get_services())
            for name in names:
                self.assertIn(name, listed, f"{addr} lists {sorted(listed)}")
            self.assertIn("grpc.health.v1.Health", listed)

        # The descriptors reflection serves describe the same contract as proto/.
        pool = descriptor_pool.DescriptorPool(
            ProtoReflectionDescriptorDatabase(self.doc_channel)
        )
        svc = pool.FindServiceByName("docverify.document.v1.DocumentService")
        generated = self.doc_pb2.DESCRIPTOR.services_by_name["DocumentService"]
        self.assertEqual(
            sorted(m.name for m in svc.methods), sorted(m.name for m in generated.methods)
        )
        upload = svc.methods_by_name["UploadDocument"]
        download = svc.methods_by_name["DownloadDocument"]
        self.assertTrue(upload.client_streaming and not upload.server_streaming)
        self.assertTrue(download.server_streaming and not download.client_streaming)


class RemoteValidationStoryTest(StoryTest):
    """The same tests with document-service asking auth-service's ValidateToken every time."""

    TOKEN_VALIDATION = "remote"


CLASSES = (StoryTest, RemoteValidationStoryTest)


def describe_database():
    """Which database this run uses, checked before any test starts."""
    server = postgres_server()
    if server is None:
        return "SQLite (a fresh file per service and test class)"
    psql(server, "SELECT 1")
    return (
        f"PostgreSQL at {redacted(server)} ({POSTGRES_ENV}; a fresh database per service "
        "and test class, dropped afterwards)"
    )


def main():
    try:
        database = describe_database()
    except Exception as e:
        print(f"python client: {e}", file=sys.stderr, flush=True)
        print("0 passed, 1 failed", flush=True)
        return 1
    print(f"database: {database}", flush=True)
    loader = unittest.defaultTestLoader
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in CLASSES)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = max(result.testsRun - failed - skipped, 0)
    if failed:
        for c in CLASSES:
            for s in c.__dict__.get("services", ()):
                print(f"--- last lines of {s.name} ({c.__name__}):\n{s.log_tail()}")
    print(f"database: {database}")
    sys.stderr.flush()
    ok = failed == 0 and passed > 0
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
