//! Archive cost, printed by `cargo bench --bench archive`: placing 1 GiB of clips into
//! an experiment folder by hard link (same filesystem) versus copy + fsync (what
//! happens when the archive is on another filesystem), and hashing it (SHA-256, which
//! every archive does for its manifest).

use std::io::Write;
use std::time::Instant;

use benchcam::experiment::sha256_file;
use benchcam::storage::{copy_synced, link_or_copy};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("temp dir");
    // Eight 128 MiB "clips" of incompressible-looking bytes.
    let clips: Vec<_> = (0..8)
        .map(|i| {
            let path = dir.path().join(format!("clip{i}.mp4"));
            let mut f = std::fs::File::create(&path).expect("create");
            let mut block = vec![0u8; 1 << 20];
            let mut x = 0x9E37_79B9_u32.wrapping_mul(i + 1);
            for _ in 0..128 {
                for b in block.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    *b = x as u8;
                }
                f.write_all(&block).expect("write");
            }
            f.sync_all().expect("sync");
            path
        })
        .collect();
    let gib = 1u64 << 30;
    std::fs::create_dir(dir.path().join("linked")).expect("dir");
    std::fs::create_dir(dir.path().join("copied")).expect("dir");

    let t = Instant::now();
    for c in &clips {
        let linked = link_or_copy(
            c,
            &dir.path().join("linked").join(c.file_name().expect("name")),
        )
        .expect("link");
        assert!(linked, "same filesystem: must link");
    }
    let link_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    for c in &clips {
        copy_synced(
            c,
            &dir.path().join("copied").join(c.file_name().expect("name")),
        )
        .expect("copy");
    }
    let copy_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    for c in &clips {
        sha256_file(c).expect("hash");
    }
    let hash_s = t.elapsed().as_secs_f64();

    println!(
        "archive of 1 GiB of clips (8 x 128 MiB) in {}:",
        dir.path().display()
    );
    println!("  hard link          {:.4} s", link_s);
    println!(
        "  copy + fsync       {:.2} s ({:.0} MiB/s)",
        copy_s,
        gib as f64 / 1048576.0 / copy_s
    );
    println!(
        "  SHA-256            {:.2} s ({:.0} MiB/s)",
        hash_s,
        gib as f64 / 1048576.0 / hash_s
    );
    println!("  copy / link        {:.0}x", copy_s / link_s.max(1e-6));
}
