//! A stand-in for huggingface.co in the tests: a thread on 127.0.0.1 that answers the routes
//! hf-hub calls, from folders on disk, and logs every request. It is bounded: it stops after
//! `max_requests` connections, after `lifetime`, or when dropped, whichever comes first.
//!
//! - `GET /api/models/{repo}/revision/{rev}`: `{"id", "sha", "siblings": [{"rfilename"}]}`;
//! - `GET /{repo}/resolve/{rev}/{file}`: the bytes, with `X-Repo-Commit`, `ETag` (the sha256 of
//!   LFS files, else the git blob hash, as the hub; `X-Linked-Etag`/`X-Linked-Size` for LFS),
//!   `Content-Length`, and `Range` answered with 206 + `Content-Range`;
//! - unknown repo, revision or file: 404 with the hub's `X-Error-Code`; a private repo without
//!   `Authorization: Bearer <token>`: 401.
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One repo served at one commit.
pub struct Repo {
    pub id: String,
    pub commit: String,
    pub refs: Vec<String>,
    pub files: BTreeMap<String, Vec<u8>>,
    /// Answer 401 unless the request carries the server's token.
    pub private: bool,
}

impl Repo {
    /// Every file under `folder`, by repo-relative path.
    pub fn from_folder(id: &str, commit: &str, folder: &Path) -> Self {
        let mut files = BTreeMap::new();
        let mut stack = vec![folder.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(folder).unwrap().to_str().unwrap();
                    files.insert(rel.replace('\\', "/"), std::fs::read(&p).unwrap());
                }
            }
        }
        Self {
            id: id.into(),
            commit: commit.into(),
            refs: vec!["main".into()],
            files,
            private: false,
        }
    }
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

pub struct Server {
    pub endpoint: String,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(repos: Vec<Repo>, token: &str, max_requests: usize, lifetime: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2, token) = (log.clone(), stop.clone(), token.to_string());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + lifetime;
            let mut served = 0;
            while served < max_requests
                && Instant::now() < deadline
                && !stop2.load(Ordering::SeqCst)
            {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        if let Some(req) = handle(stream, &repos, &token) {
                            log2.lock().unwrap().push(req);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            endpoint,
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn is_lfs(name: &str) -> bool {
    [
        ".safetensors",
        ".bin",
        ".ckpt",
        ".pt",
        ".pth",
        ".h5",
        ".msgpack",
        ".onnx",
    ]
    .iter()
    .any(|s| name.ends_with(s))
}

/// The hub's etag of a file (see the module docs); `tools/hub_cache.py` uses the same rule.
pub fn etag(name: &str, data: &[u8]) -> String {
    if is_lfs(name) {
        hex(&sha256(data))
    } else {
        let mut blob = format!("blob {}\0", data.len()).into_bytes();
        blob.extend_from_slice(data);
        hex(&sha1(&blob))
    }
}

fn handle(mut stream: TcpStream, repos: &[Repo], token: &str) -> Option<Request> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let req = Request {
        method,
        path: path.clone(),
        authorization: headers.get("authorization").cloned(),
    };
    let authorized = req.authorization.as_deref() == Some(&format!("Bearer {token}"));
    let (status, extra, body) = route(&path, &headers, repos, authorized);
    let mut out = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if req.method != "HEAD" {
        bytes.extend_from_slice(&body);
    }
    let _ = stream.write_all(&bytes);
    let _ = stream.flush();
    Some(req)
}

type Answer = (&'static str, Vec<(String, String)>, Vec<u8>);

fn not_found(code: &str) -> Answer {
    (
        "404 Not Found",
        vec![("X-Error-Code".into(), code.into())],
        b"{}".to_vec(),
    )
}

fn route(
    path: &str,
    headers: &BTreeMap<String, String>,
    repos: &[Repo],
    authorized: bool,
) -> Answer {
    let path = path.replace("%2F", "/");
    let (api, rest) = match path.strip_prefix("/api/models/") {
        Some(r) => (true, r.to_string()),
        None => (false, path.trim_start_matches('/').to_string()),
    };
    let Some(repo) = repos
        .iter()
        .find(|r| rest.starts_with(&format!("{}/", r.id)))
    else {
        return not_found("RepoNotFound");
    };
    if repo.private && !authorized {
        return (
            "401 Unauthorized",
            vec![("X-Error-Code".into(), "RepoNotFound".into())],
            b"{}".to_vec(),
        );
    }
    let rest = &rest[repo.id.len() + 1..];
    let revisions: Vec<&String> = repo.refs.iter().chain([&repo.commit]).collect();
    if api {
        let Some(rev) = rest.strip_prefix("revision/") else {
            return not_found("EntryNotFound");
        };
        if !revisions.iter().any(|r| r.as_str() == rev) {
            return not_found("RevisionNotFound");
        }
        let siblings: Vec<serde_json::Value> = repo
            .files
            .keys()
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let body = serde_json::json!({ "id": repo.id, "sha": repo.commit, "siblings": siblings });
        let h = vec![("Content-Type".into(), "application/json".into())];
        return ("200 OK", h, body.to_string().into_bytes());
    }
    let Some(rest) = rest.strip_prefix("resolve/") else {
        return not_found("EntryNotFound");
    };
    let Some((_, file)) = revisions
        .iter()
        .find_map(|r| rest.strip_prefix(&format!("{r}/")).map(|f| (r, f)))
    else {
        return not_found("RevisionNotFound");
    };
    let Some(data) = repo.files.get(file) else {
        return not_found("EntryNotFound");
    };
    let tag = etag(file, data);
    let mut h = vec![
        ("X-Repo-Commit".to_string(), repo.commit.clone()),
        ("ETag".to_string(), format!("\"{tag}\"")),
        ("Accept-Ranges".to_string(), "bytes".to_string()),
    ];
    if is_lfs(file) {
        h.push(("X-Linked-Etag".into(), format!("\"{tag}\"")));
        h.push(("X-Linked-Size".into(), data.len().to_string()));
    }
    let Some(range) = headers.get("range").and_then(|r| r.strip_prefix("bytes=")) else {
        return ("200 OK", h, data.clone());
    };
    let (a, b) = range.split_once('-').unwrap_or((range, ""));
    let start: usize = a.parse().unwrap_or(0).min(data.len());
    let end: usize = b
        .parse()
        .map(|e: usize| e + 1)
        .unwrap_or(data.len())
        .min(data.len());
    h.push((
        "Content-Range".into(),
        format!("bytes {start}-{}/{}", end.max(1) - 1, data.len()),
    ));
    (
        "206 Partial Content",
        h,
        data[start..end.max(start)].to_vec(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha1(data: &[u8]) -> Vec<u8> {
    use sha1::Digest;
    sha1::Sha1::digest(data).to_vec()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

#[test]
fn etags_as_the_hub_computes_them() {
    // `git hash-object` of an empty file, and sha256("abc")
    assert_eq!(
        etag("a.json", b""),
        "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    );
    assert_eq!(
        etag("a.safetensors", b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
