#!/usr/bin/env python3
"""A tiny hostile registry serving image indexes boxkit must refuse (tests/security/index.rs).

Independent of boxkit: the documents are written here with json/hashlib and served with
http.server. Usage: hostile_index.py PORTFILE — binds 127.0.0.1:0, writes the port to PORTFILE,
serves until killed. Repositories (tag `latest`):

  nested     an index whose linux/amd64 entry is itself an index (listing the outer's
             platforms again: following it would loop back to the same choice)
  liar       an index whose linux/amd64 entry says "image manifest" but is served as an index
  huge       an index with 10,000 entries
  mismatch   an index whose linux/amd64 entry digest names other bytes than the ones served

Every manifest GET is logged to stderr as `GET <repo> <ref>`; blobs are never served (404):
nothing should get that far.
"""
import hashlib
import http.server
import json
import sys

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def enc(doc):
    return json.dumps(doc, separators=(",", ":")).encode()


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def desc(mt, b, platform=None):
    d = {"mediaType": mt, "digest": digest(b), "size": len(b)}
    if platform:
        d["platform"] = {"architecture": platform[1], "os": platform[0]}
    return d


AMD = ("linux", "amd64")
ARM = ("linux", "arm64")

# repo -> {reference: (content type, bytes)}
DOCS = {}


def put(repo, ref, mt, b):
    DOCS.setdefault(repo, {})[ref] = (mt, b)
    DOCS[repo][digest(b)] = (mt, b)


config = enc({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
manifest = enc({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": desc(OCI_CONFIG, config), "layers": []})

# nested: outer -> inner (an index) -> the real manifest, both listing amd64.
inner = enc({"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [desc(OCI_MANIFEST, manifest, AMD)]})
outer = enc({"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [desc(OCI_INDEX, inner, AMD), desc(OCI_INDEX, inner, ARM)]})
put("nested", "latest", OCI_INDEX, outer)
put("nested", digest(inner), OCI_INDEX, inner)
put("nested", digest(manifest), OCI_MANIFEST, manifest)

# liar: the entry claims to be a manifest; the registry serves an index there.
liar = enc({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [desc(OCI_MANIFEST, inner, AMD), desc(OCI_MANIFEST, inner, ARM)]})
put("liar", "latest", OCI_INDEX, liar)
put("liar", digest(inner), OCI_INDEX, inner)

# huge: 10,000 entries, all for real-looking platforms.
entries = []
for i in range(10000):
    m = enc({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc(OCI_CONFIG, config),
             "layers": [], "annotations": {"n": str(i)}})
    entries.append(desc(OCI_MANIFEST, m, AMD if i == 9999 else ("linux", "s390x")))
put("huge", "latest", OCI_INDEX, enc({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                      "manifests": entries}))

# mismatch: the amd64 entry names manifest A; the registry serves manifest B at A's digest.
other = enc({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc(OCI_CONFIG, config),
             "layers": [], "annotations": {"swapped": "yes"}})
mism = enc({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [desc(OCI_MANIFEST, manifest, AMD), desc(OCI_MANIFEST, manifest, ARM)]})
put("mismatch", "latest", OCI_INDEX, mism)
DOCS["mismatch"][digest(manifest)] = (OCI_MANIFEST, other)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, code, mt=None, body=b""):
        self.send_response(code)
        if mt:
            self.send_header("Content-Type", mt)
            self.send_header("Docker-Content-Digest", digest(body))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path in ("/v2/", "/v2"):
            return self.send(200, "application/json", b"{}")
        parts = path.split("/")
        # /v2/<repo>/manifests/<ref>
        if len(parts) == 5 and parts[1] == "v2" and parts[3] == "manifests":
            repo, ref = parts[2], parts[4]
            sys.stderr.write(f"GET {repo} {ref}\n")
            sys.stderr.flush()
            doc = DOCS.get(repo, {}).get(ref)
            if doc:
                return self.send(200, doc[0], doc[1])
        return self.send(404, "application/json", b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    srv.serve_forever()


if __name__ == "__main__":
    main()
