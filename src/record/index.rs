//! The clip index: every rolling clip with its times and frame range, kept in memory
//! and in an append-only journal on disk (postcard records with CRC-32 framing).
//!
//! At start the journal is replayed and then reconciled with the files: files the
//! journal does not know are scanned and added, entries whose file is gone are dropped,
//! clips left open by a crash are repaired. A damaged journal is cut at its last good
//! record; a missing one is rebuilt entirely from the files. The reconciled state is
//! then written as a fresh journal (tmp + fsync + rename), which also compacts it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::fmp4;
use crate::clock::{compact_utc_ms, parse_compact_utc_ms, rfc3339_ms};
use crate::error::{Error, Result, ResultExt};
use crate::storage::write_atomic;

/// Why a clip was recorded (CameraRecordingModel.recording_type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingType {
    Rolling,
    Manual,
    Experiment,
}

/// One clip as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipRecord {
    pub camera: String,
    pub file: String,
    pub recording_type: RecordingType,
    /// Wall-clock capture time of the first frame, Unix µs.
    pub started_us: i64,
    /// CLOCK_MONOTONIC capture time of the first frame, µs; 0 when rebuilt from the file
    /// after a reboot (monotonic times do not survive one).
    pub first_mono_us: u64,
    pub first_frame: u64,
    pub last_frame: u64,
    pub frame_count: u64,
    pub duration_us: u64,
    pub size: u64,
    /// False while the clip is being written (or was torn and not yet repaired).
    pub complete: bool,
    /// Recording order in this data directory (1, 2, ...; assigned by the index when the
    /// clip is first recorded). Decides "oldest" for retention and experiment windows
    /// across reboots, whatever the wall clock did.
    pub seq: u64,
    /// The kernel boot the clip was recorded in (`/proc/sys/kernel/random/boot_id`):
    /// monotonic times compare only within one boot. Empty when rebuilt from the file.
    pub boot_id: String,
}

/// ClipRecord as journal version 1 stored it (before `seq` and `boot_id`).
#[derive(Debug, Serialize, Deserialize)]
struct ClipRecordV1 {
    camera: String,
    file: String,
    recording_type: RecordingType,
    started_us: i64,
    first_mono_us: u64,
    first_frame: u64,
    last_frame: u64,
    frame_count: u64,
    duration_us: u64,
    size: u64,
    complete: bool,
}

impl From<ClipRecordV1> for ClipRecord {
    fn from(c: ClipRecordV1) -> ClipRecord {
        ClipRecord {
            camera: c.camera,
            file: c.file,
            recording_type: c.recording_type,
            started_us: c.started_us,
            first_mono_us: c.first_mono_us,
            first_frame: c.first_frame,
            last_frame: c.last_frame,
            frame_count: c.frame_count,
            duration_us: c.duration_us,
            size: c.size,
            complete: c.complete,
            seq: 0,
            boot_id: String::new(),
        }
    }
}

impl ClipRecord {
    pub fn ended_us(&self) -> i64 {
        // Saturating: both come from file names and headers on disk, which may be damaged.
        self.started_us.saturating_add_unsigned(self.duration_us)
    }

    /// The CameraRecordingModel of the API.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "camera_id": self.camera,
            "filename": self.file,
            "started_at": rfc3339_ms(self.started_us),
            "duration_s": self.duration_us as f64 / 1e6,
            "file_size": self.size,
            "frame_count": self.frame_count,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "recording_type": self.recording_type,
            "complete": self.complete,
        })
    }
}

/// `20261124T114000.123Z_cam0_000042.mp4` from the first frame's wall time and number.
pub fn clip_file_name(started_us: i64, camera: &str, first_frame: u64) -> String {
    format!(
        "{}_{camera}_{first_frame:06}.mp4",
        compact_utc_ms(started_us)
    )
}

/// Header of a clip's frames file: one line per sample, written with each fragment.
/// `driver_dropped_before` counts the frames the camera's driver dropped right before
/// that sample (a gap in its sequence numbers; 0 almost always).
pub const FRAMES_HEADER: &str =
    "frame_number,capture_monotonic_us,capture_wall_us,sample_index,driver_dropped_before\n";

/// The frames file beside a clip: `<clip stem>.frames.csv`.
pub fn frames_file_name(clip_file: &str) -> String {
    format!(
        "{}.frames.csv",
        clip_file.strip_suffix(".mp4").unwrap_or(clip_file)
    )
}

/// One line of a frames file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLine {
    pub frame_number: u64,
    pub monotonic_us: u64,
    pub wall_us: i64,
    pub sample_index: u64,
    pub driver_dropped_before: u32,
}

/// Reads a clip's frames file, keeping only samples the (possibly repaired) clip holds.
pub fn read_frames_file(path: &Path, samples: u64) -> Result<Vec<FrameLine>> {
    let text = std::fs::read_to_string(path).ctx(format!("reading {}", path.display()))?;
    // A last line without its newline is being written (or was torn): not a row yet.
    let whole = text.rfind('\n').map_or("", |end| &text[..end + 1]);
    Ok(whole
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split(',');
            Some(FrameLine {
                frame_number: f.next()?.parse().ok()?,
                monotonic_us: f.next()?.parse().ok()?,
                wall_us: f.next()?.parse().ok()?,
                sample_index: f.next()?.parse().ok()?,
                // Files written before the column existed have none: no known gap.
                driver_dropped_before: f.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            })
        })
        .filter(|l| l.sample_index < samples)
        .collect())
}

/// Cuts a clip's frames file back to the rows of the samples the clip holds: the rows of
/// a fragment reach the disk before its video, so a crash between the two leaves rows
/// (or a torn row) past the clip's end. Rows are in sample order, so the file is cut at
/// the first row that does not describe a sample `samples` covers.
pub fn trim_frames_file(path: &Path, samples: u64) -> Result<()> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(e, format!("reading {}", path.display()))),
    };
    let header_end = text
        .iter()
        .position(|&b| b == b'\n')
        .map_or(text.len(), |i| i + 1);
    let mut keep = header_end;
    for line in text[header_end..].split_inclusive(|&b| b == b'\n') {
        let whole = line.last() == Some(&b'\n');
        let sample = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.trim_end().split(',').nth(3)?.parse::<u64>().ok());
        match sample {
            Some(i) if whole && i < samples => keep += line.len(),
            _ => break,
        }
    }
    if keep == text.len() {
        return Ok(());
    }
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(keep as u64).and_then(|_| f.sync_data()))
        .map_err(|e| Error::io(e, format!("trimming {}", path.display())))
}

/// Parses a clip file name back into (started_us, camera, first_frame).
pub fn parse_clip_file_name(name: &str) -> Option<(i64, String, u64)> {
    let stem = name.strip_suffix(".mp4")?;
    let mut parts = stem.splitn(3, '_');
    let started = parse_compact_utc_ms(parts.next()?)?;
    let camera = parts.next()?;
    let frame = parts.next()?;
    if !crate::config::is_camera_id(camera)
        || frame.is_empty()
        || !frame.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((started, camera.to_string(), frame.parse().ok()?))
}

/// Journal record; versioned so an older journal still replays.
#[derive(Debug, Serialize, Deserialize)]
enum Record {
    /// Version 1: a clip was opened, updated or closed (upsert by camera + file).
    ClipV1(ClipRecordV1),
    /// Version 1: a clip file was deleted.
    DeletedV1 { camera: String, file: String },
    /// Version 2: as ClipV1, with the recording order and boot.
    ClipV2(ClipRecord),
}

const JOURNAL: &str = "journal.bin";
/// Largest record we accept when replaying; anything bigger is damage.
const MAX_RECORD: usize = 64 * 1024;

/// The index of one data directory.
///
/// Two locks, taken in this order: `journal` by writers for the whole of a change (the
/// append and its fsync, which an SD card can stretch to seconds), `clips` only for the
/// moment the map is read or updated. Readers (the clip list, downloads, the storage
/// report, retention) never wait on the disk; a change is visible once it is durable.
pub struct ClipIndex {
    rolling_dir: PathBuf,
    journal_path: PathBuf,
    /// None while the data filesystem is away.
    journal: Mutex<Option<File>>,
    clips: Mutex<Clips>,
}

/// camera -> file -> record; file names sort by start time.
type Clips = BTreeMap<String, BTreeMap<String, ClipRecord>>;

/// What `open` found and fixed, for the log and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    pub journal_records: usize,
    pub journal_damaged: bool,
    pub added_from_files: usize,
    pub dropped_missing: usize,
    pub repaired: Vec<String>,
    pub removed_empty: usize,
}

impl ClipIndex {
    /// Loads `index/journal.bin` under `data_dir`, reconciles it with `rolling/`, and
    /// rewrites it compacted.
    pub fn open(data_dir: &Path) -> Result<(ClipIndex, OpenReport)> {
        let index = ClipIndex::detached(data_dir);
        let report = index.reload()?;
        Ok((index, report))
    }

    /// An empty index of `data_dir` that touches nothing on disk: for a data directory
    /// whose filesystem is not there yet. Writes fail until `reload` succeeds.
    pub fn detached(data_dir: &Path) -> ClipIndex {
        ClipIndex {
            rolling_dir: data_dir.join("rolling"),
            journal_path: data_dir.join("index").join(JOURNAL),
            journal: Mutex::new(None),
            clips: Mutex::new(BTreeMap::new()),
        }
    }

    /// (Re)reads the journal and the clip files, as at start (creating `rolling/` and
    /// `index/` if missing), and reattaches the journal. Used when the data filesystem
    /// comes back after it was removed: the clip cut short by the removal is repaired.
    pub fn reload(&self) -> Result<OpenReport> {
        let mut journal_slot = self.journal.lock().expect("index poisoned");
        let index_dir = self.journal_path.parent().expect("journal has a directory");
        std::fs::create_dir_all(&self.rolling_dir)
            .ctx(format!("creating {}", self.rolling_dir.display()))?;
        std::fs::create_dir_all(index_dir).ctx(format!("creating {}", index_dir.display()))?;
        let mut report = OpenReport::default();
        let mut clips = replay(&self.journal_path, &mut report)?;
        reconcile(&self.rolling_dir, &mut clips, &mut report)?;

        let mut compacted = Vec::new();
        for record in clips.values().flat_map(|m| m.values()) {
            frame_record(&Record::ClipV2(record.clone()), &mut compacted)?;
        }
        write_atomic(&self.journal_path, &compacted)?;
        let journal = OpenOptions::new()
            .append(true)
            .open(&self.journal_path)
            .ctx(format!("opening {}", self.journal_path.display()))?;
        *self.clips.lock().expect("index poisoned") = clips;
        *journal_slot = Some(journal);
        Ok(report)
    }

    /// Lets go of the journal (its filesystem went away); the clip list stays as it was
    /// until `reload`, and changes fail meanwhile.
    pub fn detach(&self) {
        *self.journal.lock().expect("index poisoned") = None;
    }

    /// Holds the journal as a writer in a stalled fsync does, until the guard drops: for
    /// tests of what must not wait on the disk.
    #[doc(hidden)]
    pub fn hold_journal(&self) -> std::sync::MutexGuard<'_, Option<File>> {
        self.journal.lock().expect("index poisoned")
    }

    pub fn rolling_dir(&self) -> &Path {
        &self.rolling_dir
    }

    pub fn camera_dir(&self, camera: &str) -> PathBuf {
        self.rolling_dir.join(camera)
    }

    /// Records a new or updated clip and appends it to the journal (fsynced).
    /// A record with `seq` 0 keeps the seq it has, or gets the next one if it is new.
    pub fn upsert(&self, mut record: ClipRecord) -> Result<()> {
        let mut journal = self.journal.lock().expect("index poisoned");
        if record.seq == 0 {
            let clips = self.clips.lock().expect("index poisoned");
            record.seq = clips
                .get(&record.camera)
                .and_then(|m| m.get(&record.file))
                .map_or_else(|| next_seq(&clips), |known| known.seq);
        }
        append(&mut journal, &Record::ClipV2(record.clone()))
            .map_err(|e| e.context(format!("journal {}", self.journal_path.display())))?;
        self.clips
            .lock()
            .expect("index poisoned")
            .entry(record.camera.clone())
            .or_default()
            .insert(record.file.clone(), record);
        Ok(())
    }

    /// Deletes a clip's file and its entry.
    pub fn delete(&self, camera: &str, file: &str) -> Result<u64> {
        let mut journal = self.journal.lock().expect("index poisoned");
        if journal.is_none() {
            return Err(Error::new(
                crate::error::ErrorKind::StorageRemoved,
                "storage removed: nothing is deleted until it is back",
            ));
        }
        let path = self.rolling_dir.join(camera).join(file);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(self.rolling_dir.join(camera).join(frames_file_name(file)));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(e, format!("deleting {}", path.display()))),
        }
        append(
            &mut journal,
            &Record::DeletedV1 {
                camera: camera.to_string(),
                file: file.to_string(),
            },
        )?;
        if let Some(m) = self.clips.lock().expect("index poisoned").get_mut(camera) {
            m.remove(file);
        }
        Ok(size)
    }

    /// Clips of one camera (or all), newest first.
    pub fn list(&self, camera: Option<&str>) -> Vec<ClipRecord> {
        let clips = self.clips.lock().expect("index poisoned");
        let mut out: Vec<ClipRecord> = clips
            .iter()
            .filter(|(c, _)| camera.is_none_or(|want| want == c.as_str()))
            .flat_map(|(_, m)| m.values().cloned())
            .collect();
        out.sort_by(|a, b| b.seq.cmp(&a.seq).then_with(|| b.camera.cmp(&a.camera)));
        out
    }

    /// `camera`'s clips still being written (normally none or one).
    pub fn open_clips(&self, camera: &str) -> Vec<ClipRecord> {
        let clips = self.clips.lock().expect("index poisoned");
        clips.get(camera).map_or_else(Vec::new, |m| {
            m.values().filter(|c| !c.complete).cloned().collect()
        })
    }

    /// One clip by camera and exact file name (how request paths are validated).
    pub fn get(&self, camera: &str, file: &str) -> Option<ClipRecord> {
        let clips = self.clips.lock().expect("index poisoned");
        clips.get(camera)?.get(file).cloned()
    }

    /// Complete clips of `camera`, oldest (first recorded) first.
    pub fn complete_oldest_first(&self, camera: &str) -> Vec<ClipRecord> {
        let clips = self.clips.lock().expect("index poisoned");
        let mut out: Vec<ClipRecord> = clips
            .get(camera)
            .map(|m| m.values().filter(|c| c.complete).cloned().collect())
            .unwrap_or_default();
        out.sort_by_key(|c| c.seq);
        out
    }

    /// The seq the next new clip will get: clips with a seq below it were recorded
    /// before now (experiments mark their window with it).
    pub fn next_seq(&self) -> u64 {
        next_seq(&self.clips.lock().expect("index poisoned"))
    }

    /// Whether a clip of that name is indexed, or its file exists (names must never
    /// collide, even when the wall clock steps back).
    pub fn name_taken(&self, camera: &str, file: &str) -> bool {
        let indexed = self
            .clips
            .lock()
            .expect("index poisoned")
            .get(camera)
            .is_some_and(|m| m.contains_key(file));
        indexed || self.rolling_dir.join(camera).join(file).exists()
    }

    pub fn cameras(&self) -> Vec<String> {
        self.clips
            .lock()
            .expect("index poisoned")
            .keys()
            .cloned()
            .collect()
    }

    /// Bytes of rolling clips of one camera (or all).
    pub fn total_bytes(&self, camera: Option<&str>) -> u64 {
        let clips = self.clips.lock().expect("index poisoned");
        clips
            .iter()
            .filter(|(c, _)| camera.is_none_or(|want| want == c.as_str()))
            .flat_map(|(_, m)| m.values())
            .map(|c| c.size)
            .sum()
    }
}

fn next_seq(clips: &Clips) -> u64 {
    clips
        .values()
        .flat_map(|m| m.values())
        .map(|c| c.seq)
        .max()
        .unwrap_or(0)
        + 1
}

fn frame_record(record: &Record, out: &mut Vec<u8>) -> Result<()> {
    let body = postcard::to_stdvec_crc32(record, crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).digest())
        .map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Io,
                format!("encoding index record: {e}"),
            )
        })?;
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

fn append(journal: &mut Option<File>, record: &Record) -> Result<()> {
    let Some(journal) = journal.as_mut() else {
        return Err(Error::new(
            crate::error::ErrorKind::StorageRemoved,
            "storage removed: the index is detached until it is back",
        ));
    };
    let mut buf = Vec::with_capacity(256);
    frame_record(record, &mut buf)?;
    journal.write_all(&buf).ctx("appending to index journal")?;
    journal.sync_data().ctx("syncing index journal")
}

#[doc(hidden)] // for the fuzz target (fuzz/fuzz_targets/index_journal.rs)
pub fn replay(
    path: &Path,
    report: &mut OpenReport,
) -> Result<BTreeMap<String, BTreeMap<String, ClipRecord>>> {
    let mut clips: BTreeMap<String, BTreeMap<String, ClipRecord>> = BTreeMap::new();
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .ctx(format!("reading {}", path.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!(
                "index: no journal at {}, rebuilding from clip files",
                path.display()
            );
            return Ok(clips);
        }
        Err(e) => return Err(Error::io(e, format!("opening {}", path.display()))),
    }
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let mut pos = 0;
    while pos < bytes.len() {
        let record = bytes
            .get(pos..pos + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .filter(|&len| len <= MAX_RECORD)
            .and_then(|len| bytes.get(pos + 4..pos + 4 + len).map(|body| (len, body)))
            .and_then(|(len, body)| {
                postcard::from_bytes_crc32::<Record>(body, crc.digest())
                    .ok()
                    .map(|r| (len, r))
            });
        let Some((len, record)) = record else {
            report.journal_damaged = true;
            log::warn!(
                "index: journal {} damaged at byte {pos} of {}; keeping {} records and rebuilding the rest from files",
                path.display(),
                bytes.len(),
                report.journal_records
            );
            break;
        };
        pos += 4 + len;
        report.journal_records += 1;
        match record {
            Record::ClipV1(c) => {
                // Version 1 had no seq: the order of first appearance in the journal is
                // the recording order.
                let mut c = ClipRecord::from(c);
                c.seq = clips
                    .get(&c.camera)
                    .and_then(|m| m.get(&c.file))
                    .map_or_else(|| next_seq(&clips), |known| known.seq);
                clips
                    .entry(c.camera.clone())
                    .or_default()
                    .insert(c.file.clone(), c);
            }
            Record::ClipV2(c) => {
                clips
                    .entry(c.camera.clone())
                    .or_default()
                    .insert(c.file.clone(), c);
            }
            Record::DeletedV1 { camera, file } => {
                if let Some(m) = clips.get_mut(&camera) {
                    m.remove(&file);
                }
            }
        }
    }
    Ok(clips)
}

fn reconcile(
    rolling_dir: &Path,
    clips: &mut BTreeMap<String, BTreeMap<String, ClipRecord>>,
    report: &mut OpenReport,
) -> Result<()> {
    // Drop entries whose file is gone.
    for (camera, files) in clips.iter_mut() {
        let before = files.len();
        files.retain(|file, _| rolling_dir.join(camera).join(file).is_file());
        report.dropped_missing += before - files.len();
    }
    let Ok(cameras) = std::fs::read_dir(rolling_dir) else {
        return Ok(());
    };
    for cam_entry in cameras.flatten() {
        let camera = cam_entry.file_name().to_string_lossy().to_string();
        if !crate::config::is_camera_id(&camera) || !cam_entry.path().is_dir() {
            continue;
        }
        let Ok(files) = std::fs::read_dir(cam_entry.path()) else {
            continue;
        };
        // By name (wall-clock start) so clips the journal does not know get their seq in
        // the best order there is.
        let mut files: Vec<_> = files.flatten().collect();
        files.sort_by_key(|e| e.file_name());
        for entry in files {
            let file = entry.file_name().to_string_lossy().to_string();
            let path = entry.path();
            let Some((started_us, file_camera, first_frame)) = parse_clip_file_name(&file) else {
                continue;
            };
            if file_camera != camera {
                continue;
            }
            let known = clips.get(&camera).and_then(|m| m.get(&file)).cloned();
            if known.as_ref().is_some_and(|k| {
                k.complete && k.size == entry.metadata().map(|m| m.len()).unwrap_or(0)
            }) {
                continue;
            }
            // Unknown, open when the service stopped, or changed: scan and repair.
            let scan = match fmp4::repair(&path) {
                Ok(scan) => scan,
                Err(e) => {
                    log::warn!("index: cannot scan {}: {e}", path.display());
                    continue;
                }
            };
            if !scan.has_init || scan.samples == 0 {
                // Nothing playable survived (crash before the first fragment).
                log::warn!(
                    "index: removing {} with no complete fragment",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(path.with_file_name(frames_file_name(&file)));
                if let Some(m) = clips.get_mut(&camera) {
                    m.remove(&file);
                }
                report.removed_empty += 1;
                continue;
            }
            if known.as_ref().is_some_and(|k| !k.complete)
                || scan.file_len != entry.metadata().map(|m| m.len()).unwrap_or(0)
            {
                report.repaired.push(file.clone());
            }
            report.added_from_files += usize::from(known.is_none());
            let mut record = known.unwrap_or(ClipRecord {
                camera: camera.clone(),
                file: file.clone(),
                recording_type: RecordingType::Rolling,
                started_us,
                first_mono_us: 0,
                first_frame,
                last_frame: first_frame,
                frame_count: 0,
                duration_us: 0,
                size: 0,
                complete: false,
                seq: next_seq(clips),
                boot_id: String::new(),
            });
            if record.frame_count != scan.samples {
                // The journal's frame range is lost with the torn tail: count samples,
                // assuming no frame was dropped inside the surviving part.
                record.last_frame = record
                    .first_frame
                    .saturating_add(scan.samples.saturating_sub(1));
            }
            record.frame_count = scan.samples;
            record.duration_us = scan.duration_us();
            record.size = scan.valid_len;
            record.complete = true;
            let frames = path.with_file_name(frames_file_name(&file));
            if let Err(e) = trim_frames_file(&frames, scan.samples) {
                log::warn!("index: {e}");
            }
            clips
                .entry(camera.clone())
                .or_default()
                .insert(file.clone(), record);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_rows_past_the_clips_samples_are_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.frames.csv");
        let rows: String = (0..5)
            .map(|i| format!("{i},{},{},{i},0\n", 1000 + i, 2000 + i))
            .collect();
        // Two fragments (samples 0-2, 3-4) were written; the video holds only the first.
        std::fs::write(&path, format!("{FRAMES_HEADER}{rows}3,10")).unwrap();
        trim_frames_file(&path, 3).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "header and 3 rows: {text}");
        assert!(text.ends_with("2,1002,2002,2,0\n"));
        assert_eq!(read_frames_file(&path, 3).unwrap().len(), 3);
        // Nothing past the end: untouched; a missing file is no error.
        trim_frames_file(&path, 3).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        trim_frames_file(&dir.path().join("none.csv"), 3).unwrap();
    }

    #[test]
    fn clip_names_round_trip() {
        let name = clip_file_name(1_795_520_400_123_000, "cam0", 42);
        assert_eq!(name, "20261124T114000.123Z_cam0_000042.mp4");
        assert_eq!(
            parse_clip_file_name(&name),
            Some((1_795_520_400_123_000, "cam0".into(), 42))
        );
        assert_eq!(parse_clip_file_name("../etc/passwd"), None);
        assert_eq!(
            parse_clip_file_name("20261124T114000.123Z_cam0_00x042.mp4"),
            None
        );
    }
}
