//! The replicator against an object store in memory: resuming after a cut, checksums.
use super::upload::{b64, b64_decode};
use super::*;
use std::io::Read;

#[test]
fn base64_round_trips_and_matches_the_standard() {
    assert_eq!(b64(b""), "");
    assert_eq!(b64(b"f"), "Zg==");
    assert_eq!(b64(b"fo"), "Zm8=");
    assert_eq!(b64(b"foobar"), "Zm9vYmFy");
    // SHA-256("") in base64, as S3 documents it.
    assert_eq!(
        b64(&Sha256::digest(b"")),
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    );
    let digest = Sha256::digest(b"benchcam");
    assert_eq!(b64_decode(&b64(&digest)).unwrap(), digest.to_vec());
}

use crate::replicate::s3::{Head, StoredPart};
use crate::storage::{Limits, SimSpace, Storage};
use std::collections::HashMap;

type StoredBytes = (Vec<u8>, String, String);

/// An object store in memory that can lose a part's reply or the part itself.
#[derive(Default)]
struct Fake {
    objects: HashMap<String, (Vec<u8>, String, Option<String>)>,
    /// Per upload id: part number → (bytes, ETag, SHA-256 base64).
    uploads: HashMap<String, BTreeMap<u16, StoredBytes>>,
    part_calls: usize,
    /// On this part call (counting from 1): `Some(true)` keeps the part and fails the
    /// reply (killed after the store's ack), `Some(false)` loses the part.
    fail_on: Option<(usize, bool)>,
    next_id: u32,
}

struct FakeStore(Arc<Mutex<Fake>>);

fn read_all(body: &mut dyn Read, len: u64) -> Vec<u8> {
    let mut v = Vec::new();
    body.read_to_end(&mut v).unwrap();
    assert_eq!(v.len() as u64, len);
    v
}

impl ObjectStore for FakeStore {
    fn put(
        &self,
        key: &str,
        body: &mut dyn Read,
        len: u64,
        sha: &str,
        file_sha: &str,
    ) -> Result<()> {
        let bytes = read_all(body, len);
        assert_eq!(
            b64(&Sha256::digest(&bytes)),
            sha,
            "the checksum header matches the body"
        );
        self.0
            .lock()
            .unwrap()
            .objects
            .insert(key.into(), (bytes, file_sha.into(), None));
        Ok(())
    }
    fn create_multipart(&self, _key: &str, file_sha: &str) -> Result<String> {
        let mut f = self.0.lock().unwrap();
        f.next_id += 1;
        let id = format!("u{}:{file_sha}", f.next_id);
        f.uploads.insert(id.clone(), BTreeMap::new());
        Ok(id)
    }
    fn upload_part(
        &self,
        _key: &str,
        id: &str,
        n: u16,
        body: &mut dyn Read,
        len: u64,
        sha: &str,
    ) -> Result<String> {
        let bytes = read_all(body, len);
        assert_eq!(b64(&Sha256::digest(&bytes)), sha);
        let mut f = self.0.lock().unwrap();
        f.part_calls += 1;
        let etag = format!("\"{}\"", &hex(&Sha256::digest(&bytes))[..16]);
        let fail = f.fail_on.filter(|(at, _)| *at == f.part_calls);
        if fail != Some((f.part_calls, false)) {
            f.uploads
                .get_mut(id)
                .unwrap()
                .insert(n, (bytes, etag.clone(), sha.into()));
        }
        if fail.is_some() {
            return Err(Error::new(
                ErrorKind::Io,
                "connection reset (the test's cut)",
            ));
        }
        Ok(etag)
    }
    fn list_parts(&self, _key: &str, id: &str) -> Result<Vec<StoredPart>> {
        let f = self.0.lock().unwrap();
        Ok(f.uploads[id]
            .iter()
            .map(|(n, (b, e, _))| StoredPart {
                number: *n,
                etag: e.clone(),
                size: b.len() as u64,
            })
            .collect())
    }
    fn complete(&self, key: &str, id: &str, parts: &[(u16, String, String)]) -> Result<()> {
        let mut f = self.0.lock().unwrap();
        let stored = f.uploads.remove(id).unwrap();
        let mut bytes = Vec::new();
        let mut all = Sha256::new();
        for (n, etag, sha) in parts {
            let (b, e, s) = &stored[n];
            assert_eq!((e, s), (etag, sha), "part {n} as the store has it");
            bytes.extend_from_slice(b);
            all.update(b64_decode(sha).unwrap());
        }
        let composite = format!("{}-{}", b64(&all.finalize()), parts.len());
        let file_sha = id.split_once(':').unwrap().1.to_string();
        f.objects
            .insert(key.into(), (bytes, file_sha, Some(composite)));
        Ok(())
    }
    fn head(&self, key: &str) -> Result<Option<Head>> {
        let f = self.0.lock().unwrap();
        Ok(f.objects.get(key).map(|(b, sha, checksum)| Head {
            size: b.len() as u64,
            checksum: checksum.clone(),
            sha256: Some(sha.clone()),
        }))
    }
    fn location(&self) -> String {
        "s3://lab/".into()
    }
}

/// An archived experiment of a 12 MiB clip (3 parts of 5 MiB) and a small file.
fn archive(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let folder = dir.join("experiments/e1");
    std::fs::create_dir_all(&folder).unwrap();
    let mut x = 0x1234_5678_9abc_def1u64;
    let clip: Vec<u8> = (0..12 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let files = vec![
        ("a.mp4".to_string(), clip),
        ("a.frames.csv".to_string(), b"1,2,3\n".to_vec()),
    ];
    let listed: Vec<serde_json::Value> = files
        .iter()
        .map(|(n, b)| {
            std::fs::write(folder.join(n), b).unwrap();
            serde_json::json!({"name": n, "size": b.len(), "sha256": hex(&Sha256::digest(b))})
        })
        .collect();
    let manifest =
        serde_json::to_vec(&serde_json::json!({"experiment_id": "e1", "files": listed})).unwrap();
    std::fs::write(folder.join("manifest.json"), &manifest).unwrap();
    let mut all = files;
    all.push(("manifest.json".into(), manifest));
    all
}

fn replicator(dir: &Path, store: &Arc<Mutex<Fake>>) -> Arc<Replicator> {
    let storage = Storage::open(
        dir,
        None,
        Limits {
            max_clips: 100,
            max_bytes: 1 << 40,
            min_free: 0,
        },
        Box::new(Arc::new(SimSpace::default())),
    )
    .unwrap();
    let config = ReplicationConfig {
        enabled: true,
        part_size: crate::config::ByteSize(5 << 20),
        ..Default::default()
    };
    Replicator::new(
        config,
        Arc::new(FakeStore(Arc::clone(store))),
        storage,
        Arc::new(crate::clock::SystemClock),
    )
    .unwrap()
}

/// One pass over the jobs, as the thread makes it; the first error is returned.
fn pass(r: &Replicator) -> Result<()> {
    r.jobs().into_iter().try_for_each(|job| r.run_job(job))
}

fn check_arrived(store: &Arc<Mutex<Fake>>, files: &[(String, Vec<u8>)]) {
    let f = store.lock().unwrap();
    for (name, bytes) in files {
        let key = format!(
            "{}/experiments/e1/{name}",
            safe_segment(&crate::host::hostname())
        );
        assert!(
            f.objects.get(&key).is_some_and(|o| &o.0 == bytes),
            "{key} arrived whole"
        );
    }
}

#[test]
fn a_cut_mid_part_resumes_sending_only_that_part_again() {
    let dir = tempfile::tempdir().unwrap();
    let files = archive(dir.path());
    let store = Arc::new(Mutex::new(Fake {
        fail_on: Some((2, false)),
        ..Default::default()
    }));
    let first = replicator(dir.path(), &store);
    let err = pass(&first).unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    assert_eq!(first.experiment_status("e1").unwrap()["state"], "failed");
    drop(first);
    // A restart: a new replicator over the same journal (the process was killed).
    let second = replicator(dir.path(), &store);
    pass(&second).unwrap();
    check_arrived(&store, &files);
    let status = second.experiment_status("e1").unwrap();
    assert_eq!(status["state"], "verified");
    // 3 parts + the one that was cut; part 1, acknowledged, was not sent again.
    assert_eq!(store.lock().unwrap().part_calls, 4);
    assert_eq!(status["bytes_resent"], 5 << 20);
    assert!(second.is_verified("e1"));
}

#[test]
fn a_part_the_store_kept_but_never_acknowledged_is_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let files = archive(dir.path());
    let store = Arc::new(Mutex::new(Fake {
        fail_on: Some((2, true)),
        ..Default::default()
    }));
    assert!(pass(&replicator(dir.path(), &store)).is_err());
    let second = replicator(dir.path(), &store);
    pass(&second).unwrap();
    check_arrived(&store, &files);
    assert_eq!(
        store.lock().unwrap().part_calls,
        3,
        "ListParts found part 2"
    );
    assert_eq!(second.experiment_status("e1").unwrap()["bytes_resent"], 0);
    // Verified jobs are not planned again.
    assert!(second.jobs().is_empty());
}

#[test]
fn hostnames_become_one_key_segment() {
    assert_eq!(safe_segment("bench-07.lab"), "bench-07.lab");
    assert_eq!(safe_segment("a/b c"), "a_b_c");
    assert_eq!(safe_segment(""), "host");
    assert_eq!(safe_segment(".."), "host..");
}
