//! openh264 through its C API (`openh264-sys2`, which builds the library from source with
//! its x86 and NEON assembly). The `openh264` crate's `Encoder` fixes what benchcam needs to
//! set itself: it always turns the deblocking filter on, applies the parameters at the first
//! frame and lets the library print a warning at every start. This file opens the same
//! library with benchcam's parameters, once, and encodes I420 pictures into Annex B NAL units.

use std::os::raw::{c_int, c_void};
use std::ptr::NonNull;

use openh264_sys2::{
    DynamicAPI, ISVCEncoder, ISVCEncoderVtbl, SEncParamExt, SFrameBSInfo, SSourcePicture, API,
    CAMERA_VIDEO_REAL_TIME, CONSTANT_ID, DEBLOCKING_IDC_0, DEBLOCKING_IDC_1, ENCODER_OPTION,
    ENCODER_OPTION_DATAFORMAT, ENCODER_OPTION_TRACE_LEVEL, LOW_COMPLEXITY, RC_BITRATE_MODE,
    SM_SINGLE_SLICE, WELS_LOG_ERROR,
};

use super::yuv::I420;
use crate::error::{Error, ErrorKind, Result};

/// What an encoder is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// H.264's in-loop deblocking filter (`[recording] deblocking`).
    pub deblocking: bool,
}

/// One open openh264 encoder.
pub struct Openh264 {
    api: DynamicAPI,
    encoder: NonNull<ISVCEncoder>,
    calls: Calls,
    info: Box<SFrameBSInfo>,
    params: Params,
}

type Enc = *mut ISVCEncoder;

/// The entries of the encoder's vtable that benchcam calls, looked up once when it is made.
struct Calls {
    get_defaults: unsafe extern "C" fn(Enc, *mut SEncParamExt) -> c_int,
    init: unsafe extern "C" fn(Enc, *const SEncParamExt) -> c_int,
    uninit: unsafe extern "C" fn(Enc) -> c_int,
    encode: unsafe extern "C" fn(Enc, *const SSourcePicture, *mut SFrameBSInfo) -> c_int,
    force_idr: unsafe extern "C" fn(Enc, bool) -> c_int,
    set_option: unsafe extern "C" fn(Enc, ENCODER_OPTION, *mut c_void) -> c_int,
}

impl Calls {
    fn of(v: &ISVCEncoderVtbl) -> Option<Self> {
        Some(Calls {
            get_defaults: v.GetDefaultParams?,
            init: v.InitializeExt?,
            uninit: v.Uninitialize?,
            encode: v.EncodeFrame?,
            force_idr: v.ForceIntraFrame?,
            set_option: v.SetOption?,
        })
    }
}

// SAFETY: the encoder is reached only through `&mut self`, so from one thread at a time;
// openh264 keeps no state tied to the thread that created it.
unsafe impl Send for Openh264 {}

fn codec_error(what: &str, code: c_int) -> Error {
    Error::new(
        ErrorKind::Codec,
        format!("openh264 {what} failed (code {code})"),
    )
}

/// A library call's return code as a result (0 is success).
fn check(what: impl FnOnce() -> String, rc: c_int) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(codec_error(&what(), rc))
    }
}

impl Openh264 {
    pub fn open(params: Params) -> Result<Self> {
        let (w, h) = (params.width, params.height);
        // The library's own limit (level 5.2).
        if w.max(h) > 3840 || w.min(h) > 2160 || w == 0 || h == 0 {
            return Err(Error::new(
                ErrorKind::Codec,
                format!("openh264 cannot encode {w}x{h} (at most 3840x2160)"),
            ));
        }
        let api = DynamicAPI::from_source();
        let mut raw: *mut ISVCEncoder = std::ptr::null_mut();
        // SAFETY: WelsCreateSVCEncoder writes an encoder pointer or leaves it null.
        let rc = unsafe { api.WelsCreateSVCEncoder(&raw mut raw) };
        let encoder = NonNull::new(raw).ok_or_else(|| codec_error("WelsCreateSVCEncoder", rc))?;
        // SAFETY: a created encoder points at its vtable pointer, valid until destroyed.
        let Some(calls) = Calls::of(unsafe { &**encoder.as_ptr() }) else {
            // SAFETY: created above, never initialised, destroyed once.
            unsafe { api.WelsDestroySVCEncoder(encoder.as_ptr()) };
            return Err(codec_error("vtable (an entry is missing)", -1));
        };
        let mut this = Openh264 {
            api,
            encoder,
            calls,
            info: Box::default(),
            params,
        };
        this.initialize()?;
        Ok(this)
    }

    pub fn params(&self) -> Params {
        self.params
    }

    fn initialize(&mut self) -> Result<()> {
        let p = self.params;
        let (bps, fps) = (
            (p.bitrate_kbps.saturating_mul(1000)).min(i32::MAX as u32) as c_int,
            p.fps as f32,
        );
        let mut e = SEncParamExt::default();
        // SAFETY: the encoder is live; `e` is a valid SEncParamExt to fill.
        let rc = unsafe { (self.calls.get_defaults)(self.encoder.as_ptr(), &raw mut e) };
        check(|| "GetDefaultParams".into(), rc)?;
        e.iUsageType = CAMERA_VIDEO_REAL_TIME;
        e.iPicWidth = p.width as c_int;
        e.iPicHeight = p.height as c_int;
        e.iTargetBitrate = bps;
        e.iRCMode = RC_BITRATE_MODE;
        e.iMinQp = 0;
        e.iMaxQp = 51;
        e.fMaxFrameRate = fps;
        // Every frame a sample: clip sample times stay the capture times.
        e.bEnableFrameSkip = false;
        e.iComplexityMode = LOW_COMPLEXITY;
        e.iMultipleThreadIdc = 1;
        // The recorder forces an IDR at every fragment start (and the encoder stage when a
        // viewer joins), so the library's own period and scene detection are not needed.
        e.uiIntraPeriod = 0;
        e.bEnableSceneChangeDetect = false;
        e.bEnableAdaptiveQuant = false;
        e.bEnableBackgroundDetection = false;
        e.bEnableDenoise = false;
        e.bEnableLongTermReference = false;
        e.eSpsPpsIdStrategy = CONSTANT_ID;
        e.iLoopFilterDisableIdc = if p.deblocking {
            DEBLOCKING_IDC_0
        } else {
            DEBLOCKING_IDC_1
        } as c_int;
        e.iSpatialLayerNum = 1;
        e.iTemporalLayerNum = 1;
        let layer = &mut e.sSpatialLayers[0];
        layer.iVideoWidth = p.width as c_int;
        layer.iVideoHeight = p.height as c_int;
        layer.fFrameRate = fps;
        layer.iSpatialBitrate = bps;
        layer.iMaxSpatialBitrate = bps;
        layer.sSliceArgument.uiSliceMode = SM_SINGLE_SLICE;
        layer.sSliceArgument.uiSliceNum = 1;
        // Errors only: the library warns at every start that bitrate control "can't" work
        // without frame skipping, which is the choice above.
        self.set_option(ENCODER_OPTION_TRACE_LEVEL, WELS_LOG_ERROR as c_int)?;
        // SAFETY: the encoder is live; `e` is fully initialised.
        let rc = unsafe { (self.calls.init)(self.encoder.as_ptr(), &raw const e) };
        check(
            || {
                format!(
                    "InitializeExt ({}x{}, {} fps, {} kbit/s)",
                    p.width, p.height, p.fps, p.bitrate_kbps
                )
            },
            rc,
        )?;
        self.set_option(
            ENCODER_OPTION_DATAFORMAT,
            openh264_sys2::videoFormatI420 as c_int,
        )
    }

    fn set_option(&mut self, option: ENCODER_OPTION, mut value: c_int) -> Result<()> {
        // SAFETY: the encoder is live; both options read one int through the pointer.
        let rc = unsafe {
            (self.calls.set_option)(
                self.encoder.as_ptr(),
                option,
                (&raw mut value).cast::<c_void>(),
            )
        };
        check(|| "SetOption".into(), rc)
    }

    /// Encodes one picture of the opened size (an IDR with `force_idr`) and calls `nal` with
    /// each NAL unit of it, start code included. Returns whether the picture became an IDR.
    pub fn encode(
        &mut self,
        picture: &I420<'_>,
        force_idr: bool,
        mut nal: impl FnMut(&[u8]),
    ) -> Result<bool> {
        let p = self.params;
        if (picture.width, picture.height) != (p.width as usize, p.height as usize) {
            return Err(Error::new(
                ErrorKind::Codec,
                format!(
                    "openh264: a {}x{} picture for an encoder opened at {}x{}",
                    picture.width, picture.height, p.width, p.height
                ),
            ));
        }
        let (w, h, cw) = (picture.width, picture.height, picture.width.div_ceil(2));
        if picture.y.len() < w * h || picture.u.len().min(picture.v.len()) < cw * h.div_ceil(2) {
            return Err(Error::new(
                ErrorKind::Codec,
                format!("openh264: the planes of a {w}x{h} picture are short"),
            ));
        }
        if force_idr {
            // SAFETY: the encoder is live.
            unsafe { (self.calls.force_idr)(self.encoder.as_ptr(), true) };
        }
        let source = SSourcePicture {
            iColorFormat: openh264_sys2::videoFormatI420 as c_int,
            iStride: [w as c_int, cw as c_int, cw as c_int, 0],
            // The library only reads the planes; its C signature has no const.
            pData: [
                picture.y.as_ptr().cast_mut(),
                picture.u.as_ptr().cast_mut(),
                picture.v.as_ptr().cast_mut(),
                std::ptr::null_mut(),
            ],
            iPicWidth: p.width as c_int,
            iPicHeight: p.height as c_int,
            uiTimeStamp: 0,
            bPsnrY: false,
            bPsnrU: false,
            bPsnrV: false,
        };
        // SAFETY: the planes are at least stride × rows long (checked above) and outlive the
        // call; `info` is the library's to fill.
        let rc = unsafe {
            (self.calls.encode)(
                self.encoder.as_ptr(),
                &raw const source,
                &raw mut *self.info,
            )
        };
        check(|| "EncodeFrame".into(), rc)?;
        let info = &*self.info;
        for layer in info.sLayerInfo.iter().take(info.iLayerNum.max(0) as usize) {
            let mut at = 0usize;
            for i in 0..layer.iNalCount.max(0) as usize {
                // SAFETY: the library gives iNalCount lengths, and the NAL units back to back
                // in pBsBuf, valid until the next EncodeFrame.
                let len = unsafe { *layer.pNalLengthInByte.add(i) }.max(0) as usize;
                let bytes = unsafe { std::slice::from_raw_parts(layer.pBsBuf.add(at), len) };
                nal(bytes);
                at += len;
            }
        }
        Ok(info.eFrameType == openh264_sys2::videoFrameTypeIDR)
    }
}

impl Drop for Openh264 {
    fn drop(&mut self) {
        // SAFETY: the encoder is live and dropped once; Uninitialize before Destroy, as the
        // library asks.
        unsafe {
            (self.calls.uninit)(self.encoder.as_ptr());
            self.api.WelsDestroySVCEncoder(self.encoder.as_ptr());
        }
    }
}
