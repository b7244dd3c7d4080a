// A stand-in for the Hugging Face hub, for the browser suite: it serves the fixture chat model as
// `duet-e2e/tiny-llm` through the endpoints hf-hub uses (file list with hashes, ranged resolve
// with X-Repo-Commit and ETag), and stalls for good inside `openvino_model.xml`, so a server
// pointed at it (HF_ENDPOINT) stays `downloading` with partial progress for the whole suite.
// Usage: node mock-hub.mjs PORT FIXTURE_DIR
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { join, relative } from 'node:path';

const [port, dir] = process.argv.slice(2);
const REPO = 'duet-e2e/tiny-llm';
const COMMIT = 'e2e0000000000000000000000000000000000000';
const STALL_FILE = 'openvino_model.xml';
const STALL_AT = 100_000;

function walk(d) {
  return readdirSync(d).flatMap((name) => {
    const p = join(d, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}
const files = new Map(walk(dir).sort().map((p) => [relative(dir, p), readFileSync(p)]));
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const gitBlob = (b) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const lfs = (path) => path.endsWith('.bin');

createServer((req, res) => {
  const url = new URL(req.url, 'http://hub');
  if (url.pathname === '/health') return res.end('ok');
  if (url.pathname === `/api/models/${REPO}/revision/main`) {
    const siblings = [...files].map(([rfilename, b]) =>
      lfs(rfilename)
        ? { rfilename, size: b.length, lfs: { sha256: sha256(b), size: b.length, pointerSize: 134 } }
        : { rfilename, size: b.length, blobId: gitBlob(b) },
    );
    res.setHeader('content-type', 'application/json');
    return res.end(JSON.stringify({ id: REPO, sha: COMMIT, siblings }));
  }
  const prefix = `/${REPO}/resolve/`;
  if (!url.pathname.startsWith(prefix)) {
    res.statusCode = 404;
    res.setHeader('x-error-code', 'RepoNotFound');
    return res.end('{"error":"Repository not found"}');
  }
  const path = url.pathname.slice(prefix.length).split('/').slice(1).join('/');
  const body = files.get(path);
  if (!body) {
    res.statusCode = 404;
    return res.end();
  }
  const [start, endAsked] = (req.headers.range ?? `bytes=0-${body.length - 1}`).slice(6).split('-').map(Number);
  const end = Math.min(endAsked, body.length - 1);
  res.statusCode = req.headers.range ? 206 : 200;
  res.setHeader('x-repo-commit', COMMIT);
  res.setHeader(lfs(path) ? 'x-linked-etag' : 'etag', `"${lfs(path) ? sha256(body) : gitBlob(body)}"`);
  res.setHeader('content-range', `bytes ${start}-${end}/${body.length}`);
  res.setHeader('content-length', end + 1 - start);
  if (path === STALL_FILE && start <= STALL_AT && STALL_AT <= end) {
    res.write(body.subarray(start, STALL_AT)); // and nothing more, ever
    return;
  }
  res.end(body.subarray(start, end + 1));
}).listen(Number(port), '127.0.0.1');
