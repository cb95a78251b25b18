use std::mem::{offset_of, size_of};

use libc::c_int;

use super::layout::*;
use super::modes::*;
use super::source::*;
use super::*;
use crate::capture::Mode;
use crate::clock::monotonic_now_us;

#[test]
#[cfg(target_pointer_width = "64")]
fn struct_layouts_match_the_64_bit_kernel_abi() {
    // Sizes and offsets printed by gcc from linux/videodev2.h (linux-libc-dev 6.1, x86_64).
    assert_eq!(size_of::<sys::Capability>(), 104);
    assert_eq!(offset_of!(sys::Capability, capabilities), 84);
    assert_eq!(offset_of!(sys::Capability, device_caps), 88);
    assert_eq!(size_of::<sys::FmtDesc>(), 64);
    assert_eq!(offset_of!(sys::FmtDesc, description), 12);
    assert_eq!(offset_of!(sys::FmtDesc, pixelformat), 44);
    assert_eq!(size_of::<sys::FrmSizeEnum>(), 44);
    assert_eq!(offset_of!(sys::FrmSizeEnum, size), 12);
    assert_eq!(size_of::<sys::FrmIvalEnum>(), 52);
    assert_eq!(offset_of!(sys::FrmIvalEnum, ival), 20);
    assert_eq!(size_of::<sys::PixFormat>(), 48);
    assert_eq!(size_of::<sys::Format>(), 208);
    assert_eq!(offset_of!(sys::Format, fmt), 8);
    assert_eq!(size_of::<sys::StreamParm>(), 204);
    assert_eq!(offset_of!(sys::StreamParm, capture), 4);
    assert_eq!(offset_of!(sys::CaptureParm, timeperframe), 8);
    assert_eq!(size_of::<sys::RequestBuffers>(), 20);
    assert_eq!(size_of::<sys::Buffer>(), 88);
    assert_eq!(offset_of!(sys::Buffer, timestamp), 24);
    assert_eq!(offset_of!(sys::Buffer, timecode), 40);
    assert_eq!(offset_of!(sys::Buffer, sequence), 56);
    assert_eq!(offset_of!(sys::Buffer, memory), 60);
    assert_eq!(offset_of!(sys::Buffer, m), 64);
    assert_eq!(offset_of!(sys::Buffer, length), 72);
    assert_eq!(offset_of!(sys::Buffer, request_fd), 80);
}

#[test]
#[cfg(target_pointer_width = "64")]
fn ioctl_numbers_match_videodev2_h() {
    // Values printed by gcc from linux/videodev2.h on x86_64; aarch64 encodes the same.
    assert_eq!(sys::VIDIOC_QUERYCAP.code, 0x8068_5600);
    assert_eq!(sys::VIDIOC_ENUM_FMT.code, 0xC040_5602);
    assert_eq!(sys::VIDIOC_S_FMT.code, 0xC0D0_5605);
    assert_eq!(sys::VIDIOC_REQBUFS.code, 0xC014_5608);
    assert_eq!(sys::VIDIOC_QUERYBUF.code, 0xC058_5609);
    assert_eq!(sys::VIDIOC_QBUF.code, 0xC058_560F);
    assert_eq!(sys::VIDIOC_DQBUF.code, 0xC058_5611);
    assert_eq!(sys::VIDIOC_STREAMON.code, 0x4004_5612);
    assert_eq!(sys::VIDIOC_STREAMOFF.code, 0x4004_5613);
    assert_eq!(sys::VIDIOC_S_PARM.code, 0xC0CC_5616);
    assert_eq!(sys::VIDIOC_ENUM_FRAMESIZES.code, 0xC02C_564A);
    assert_eq!(sys::VIDIOC_ENUM_FRAMEINTERVALS.code, 0xC034_564B);
}

#[test]
fn fourccs_map_to_pixel_formats() {
    assert_eq!(sys::PIX_FMT_MJPEG, 0x4750_4A4D);
    assert_eq!(sys::PIX_FMT_JPEG, 0x4745_504A);
    assert_eq!(sys::PIX_FMT_YUYV, 0x5659_5559);
    assert_eq!(sys::PIX_FMT_NV12, 0x3231_564E);
    assert_eq!(sys::PIX_FMT_YUV420, 0x3231_5559);
    assert_eq!(
        pixel_format_from_fourcc(sys::PIX_FMT_MJPEG),
        Some(PixelFormat::Mjpeg)
    );
    assert_eq!(
        pixel_format_from_fourcc(sys::PIX_FMT_JPEG),
        Some(PixelFormat::Mjpeg)
    );
    assert_eq!(
        pixel_format_from_fourcc(sys::PIX_FMT_YUYV),
        Some(PixelFormat::Yuyv)
    );
    assert_eq!(
        pixel_format_from_fourcc(sys::PIX_FMT_NV12),
        Some(PixelFormat::Nv12)
    );
    assert_eq!(
        pixel_format_from_fourcc(sys::PIX_FMT_YUV420),
        Some(PixelFormat::I420)
    );
    assert_eq!(pixel_format_from_fourcc(sys::fourcc(b"UYVY")), None);
    assert_eq!(pixel_format_from_fourcc(sys::fourcc(b"pRAA")), None);
    assert_eq!(FourCc(sys::PIX_FMT_MJPEG).to_string(), "MJPG");
    assert_eq!(FourCc(0x0102_0341).to_string(), "A...");
}

#[test]
fn video_nodes_sort_numerically_and_ignore_other_names() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "video10", "video2", "video0", "videoX", "video", "video+1", "vbi0", "media0",
    ] {
        fs::write(dir.path().join(name), b"").unwrap();
    }
    let names: Vec<String> = video_nodes(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["video0", "video2", "video10"]);
    assert_eq!(video_index("video12"), Some(12));
    assert_eq!(video_index("video-1"), None);
}

#[test]
fn discovery_without_cameras_is_empty() {
    let empty = tempfile::tempdir().unwrap();
    assert!(discover_in(empty.path()).is_empty());
    assert!(discover_in(&empty.path().join("missing")).is_empty());

    // Files named like device nodes that are not V4L2 devices: QUERYCAP fails (ENOTTY).
    let fake = tempfile::tempdir().unwrap();
    fs::write(fake.path().join("video0"), b"not a camera").unwrap();
    std::os::unix::fs::symlink("/dev/null", fake.path().join("video1")).unwrap();
    assert!(discover_in(fake.path()).is_empty());

    let real = discover();
    if video_nodes(Path::new("/dev")).is_empty() {
        assert!(real.is_empty());
    }
}

#[test]
fn probe_errors_say_what_to_do_next() {
    let err = V4l2Device::probe(Path::new("/nonexistent/video0"))
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::NoDevice);
    assert!(
        err.context.contains("/nonexistent/video0"),
        "{}",
        err.context
    );
    let err = V4l2Device::probe(Path::new("/dev/null")).err().unwrap();
    assert_eq!(err.kind, ErrorKind::Unsupported, "{}", err.context);
}

fn fake_device(path: &str) -> V4l2Device {
    let mode = Mode {
        width: 640,
        height: 480,
        fps: 30,
        format: PixelFormat::Yuyv,
    };
    V4l2Device {
        info: CameraInfo {
            device: path.to_owned(),
            name: "fake".to_owned(),
            backend: "v4l2",
            modes: vec![mode],
        },
        path: Mutex::new(PathBuf::from(path)),
        identity: None,
        dev_dir: PathBuf::from("/nonexistent"),
        last_search: Mutex::new(Vec::new()),
        fourccs: vec![(PixelFormat::Yuyv, sys::PIX_FMT_YUYV)],
    }
}

#[test]
fn open_errors_by_kind() {
    let request = |formats| ModeRequest {
        width: 1280,
        height: 720,
        fps: 30,
        formats,
    };
    let device = fake_device("/nonexistent/video7");
    let err = device
        .open(&request(vec![PixelFormat::Mjpeg]))
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::Unsupported);
    assert!(
        err.context.contains("[mjpeg]") && err.context.contains("[yuyv]"),
        "{}",
        err.context
    );
    let err = device
        .open(&request(vec![PixelFormat::Yuyv]))
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::NoDevice, "{}", err.context);

    let err = fake_device("/dev/null")
        .open(&request(vec![PixelFormat::Yuyv]))
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::Unsupported, "{}", err.context);
    assert!(
        err.context.starts_with("/dev/null: VIDIOC_S_FMT"),
        "{}",
        err.context
    );
}

#[test]
fn node_capabilities_decide_what_is_a_camera() {
    let cap = |capabilities, device_caps| {
        let mut cap = sys::Capability::zeroed();
        cap.capabilities = capabilities;
        cap.device_caps = device_caps;
        cap
    };
    let uvc_video = sys::CAP_VIDEO_CAPTURE | sys::CAP_STREAMING | 0x0020_0000;
    let uvc_meta = sys::CAP_META_CAPTURE | sys::CAP_STREAMING | 0x0020_0000;
    let uvc_all = uvc_video | uvc_meta | sys::CAP_DEVICE_CAPS;
    assert_eq!(node_caps(&cap(uvc_all, uvc_meta)), uvc_meta);
    assert_eq!(node_caps(&cap(uvc_video, 0)), uvc_video);

    assert_eq!(unusable_reason(uvc_video, "uvcvideo"), None);
    assert_eq!(unusable_reason(uvc_video, "bcm2835 mmal"), None);
    assert!(unusable_reason(uvc_meta, "uvcvideo").is_some());
    assert!(unusable_reason(uvc_video, "bcm2835-isp").is_some());
    assert!(unusable_reason(uvc_video, "unicam").is_some());
    assert!(unusable_reason(uvc_video, "rp1-cfe").is_some());
    assert!(unusable_reason(sys::CAP_VIDEO_CAPTURE, "uvcvideo").is_some());
    assert!(unusable_reason(sys::CAP_VIDEO_M2M | sys::CAP_STREAMING, "x").is_some());
    let old_m2m = sys::CAP_VIDEO_CAPTURE | sys::CAP_VIDEO_OUTPUT | sys::CAP_VIDEO_M2M;
    assert!(unusable_reason(old_m2m | sys::CAP_STREAMING, "x").is_some());
}

#[test]
fn frame_rates_from_intervals() {
    assert_eq!(fps_from_interval(1, 30), Some(30));
    assert_eq!(fps_from_interval(1001, 30000), Some(30));
    assert_eq!(fps_from_interval(2, 15), Some(8));
    assert_eq!(fps_from_interval(1, 0), None);
    assert_eq!(fps_from_interval(0, 30), None);
    assert_eq!(fps_from_interval(10, 1), None);
    assert_eq!(fps_from_interval(2, 1), Some(1));

    assert_eq!(rates_within((1, 30), (1, 1)), [5, 10, 15, 20, 25, 30]);
    assert_eq!(rates_within((1, 60), (1, 25)), [25, 30, 50, 60]);
    assert_eq!(rates_within((1, 12), (1, 11)), [12]);
}

#[test]
fn common_sizes_within_a_range() {
    // bcm2835 mmal with an OV5647: 32x32 to 2592x1944 in steps of 2.
    assert_eq!(
        sizes_within(&[32, 2592, 2, 32, 1944, 2]),
        [
            (320, 240),
            (640, 480),
            (800, 600),
            (1024, 768),
            (1280, 720),
            (1280, 960),
            (1920, 1080),
            (2560, 1440)
        ]
    );
    // Steps of 16 from 8 exclude every common size: fall back to the largest.
    assert_eq!(sizes_within(&[8, 1288, 16, 8, 728, 16]), [(1288, 728)]);
    // Continuous ranges report a step of 1 (or 0 from sloppy drivers).
    assert_eq!(
        sizes_within(&[1, 700, 0, 1, 500, 1]),
        [(320, 240), (640, 480)]
    );
}

#[test]
fn raw_layouts_know_when_to_repack() {
    let packed = RawLayout::new(PixelFormat::Yuyv, 640, 480, 1280).unwrap();
    assert!(packed.is_packed());
    assert_eq!(packed.source_bytes(), 640 * 480 * 2);
    assert_eq!(
        packed.packed_bytes(),
        PixelFormat::Yuyv.raw_frame_bytes(640, 480).unwrap()
    );
    // bytesperline left at 0 by the driver means packed.
    assert!(RawLayout::new(PixelFormat::Nv12, 640, 480, 0)
        .unwrap()
        .is_packed());
    assert!(RawLayout::new(PixelFormat::Mjpeg, 640, 480, 0).is_none());

    let padded = RawLayout::new(PixelFormat::I420, 1000, 10, 1024).unwrap();
    assert!(!padded.is_packed());
    assert_eq!(padded.source_bytes(), 1024 * 10 + 2 * 512 * 5 - (512 - 500));
    assert_eq!(
        padded.packed_bytes(),
        PixelFormat::I420.raw_frame_bytes(1000, 10).unwrap()
    );
}

/// Builds a padded driver buffer whose every pixel byte is `plane_tag + row` and whose
/// padding is 0xEE, repacks it, and checks the packed frame row by row.
fn check_repack(format: PixelFormat, width: u32, height: u32, stride: u32) {
    let layout = RawLayout::new(format, width, height, stride).unwrap();
    let (planes, count) = layout.planes();
    let mut src = vec![0xEE; layout.source_bytes()];
    for (tag, p) in planes[..count].iter().enumerate() {
        for row in 0..p.rows {
            let from = p.src_offset + row * p.src_stride;
            src[from..from + p.row_bytes].fill((tag * 64 + row) as u8);
        }
    }
    let mut frames = RawFrames::new(layout);
    let frame = frames.frame(&src).unwrap().to_vec();
    assert_eq!(frame.len(), format.raw_frame_bytes(width, height).unwrap());
    assert!(
        !frame.contains(&0xEE),
        "{format:?}: padding leaked into the frame"
    );
    let mut at = 0;
    for (tag, p) in planes[..count].iter().enumerate() {
        for row in 0..p.rows {
            let expected = (tag * 64 + row) as u8;
            assert!(
                frame[at..at + p.row_bytes].iter().all(|&b| b == expected),
                "{format:?}"
            );
            at += p.row_bytes;
        }
    }
    assert_eq!(at, frame.len());
    assert!(
        frames.frame(&src[..src.len() - 1]).is_none(),
        "short frame accepted"
    );
}

#[test]
fn padded_rows_are_repacked() {
    check_repack(PixelFormat::Yuyv, 6, 4, 16);
    check_repack(PixelFormat::Nv12, 6, 4, 8);
    check_repack(PixelFormat::I420, 6, 4, 8);
    check_repack(PixelFormat::I420, 1000, 10, 1024);
}

#[test]
fn packed_frames_are_lent_in_place() {
    let mut frames = RawFrames::new(RawLayout::new(PixelFormat::Yuyv, 4, 2, 8).unwrap());
    let buffer = [7u8; 20];
    let frame = frames.frame(&buffer).unwrap();
    assert_eq!(frame.len(), 16);
    assert!(std::ptr::eq(frame.as_ptr(), buffer.as_ptr()));
    assert!(frames.frame(&buffer[..15]).is_none());
}

#[test]
fn mjpeg_frames_must_start_like_a_jpeg() {
    assert!(looks_like_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0xFF, 0xD9]));
    assert!(!looks_like_jpeg(&[]));
    assert!(!looks_like_jpeg(&[0xFF]));
    assert!(!looks_like_jpeg(&[0x00, 0xFF, 0xD8, 0xFF, 0xD9]));
    // Cut short: no end-of-image marker.
    let mut cut = vec![0xFF, 0xD8, 0xFF, 0xE0];
    cut.extend(std::iter::repeat_n(0x55, 4000));
    assert!(!looks_like_jpeg(&cut));
    // Padding after EOI is fine.
    cut.extend([0xFF, 0xD9]);
    cut.extend([0; 100]);
    assert!(looks_like_jpeg(&cut));
}

#[test]
fn timestamps_come_from_the_driver_only_on_the_monotonic_clock() {
    let tv = libc::timeval {
        tv_sec: 12,
        tv_usec: 345_678,
    };
    let now = || 99;
    let monotonic = sys::BUF_FLAG_TIMESTAMP_MONOTONIC | 0x1;
    assert_eq!(frame_timestamp_us(monotonic, &tv, now), 12_345_678);
    assert_eq!(
        frame_timestamp_us(sys::BUF_FLAG_TIMESTAMP_COPY, &tv, now),
        99
    );
    assert_eq!(frame_timestamp_us(0, &tv, now), 99);
    let zero = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    assert_eq!(frame_timestamp_us(monotonic, &zero, now), 99);

    let before = monotonic_now_us();
    assert!(monotonic_now_us() >= before);
    assert!(before > 0);
}

#[test]
fn poll_timeouts_round_up() {
    assert_eq!(poll_timeout_ms(Duration::ZERO), 0);
    assert_eq!(poll_timeout_ms(Duration::from_micros(1)), 1);
    assert_eq!(poll_timeout_ms(Duration::from_millis(40)), 40);
    assert_eq!(poll_timeout_ms(Duration::from_micros(40_001)), 41);
    assert_eq!(poll_timeout_ms(Duration::from_secs(u64::MAX)), c_int::MAX);
}

#[test]
fn card_names_stop_at_nul() {
    let mut card = [0u8; 32];
    card[..20].copy_from_slice(b"HD Pro Webcam C920  ");
    assert_eq!(c_string(&card), "HD Pro Webcam C920");
    assert_eq!(c_string(&[b'x'; 16]), "x".repeat(16));
}
