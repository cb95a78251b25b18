/* The libopenh264 peer of benches/recording.rs: encodes raw I420 frames from a file to an
 * Annex B H.264 stream on stdout with the system's libopenh264 (Debian: libopenh264-dev),
 * so that `... | ffmpeg -f h264 -i - -c copy out.mp4` does the job that
 * `ffmpeg -c:v libopenh264` would do. Debian's ffmpeg is built without libopenh264, so
 * the encoder is driven here with the parameters ffmpeg 5.1's libopenh264enc.c sets.
 *
 * usage: openh264_enc FRAMES.yuv WIDTH HEIGHT FPS FRAME_COUNT BITRATE_BPS ffmpeg|benchcam [paced]
 *   ffmpeg:   what `ffmpeg -c:v libopenh264 -b:v B -g FPS -threads 1` sets (GetDefaultParams,
 *             so medium complexity, then quality rate control, adaptive quant, background
 *             detection, CAVLC, IDR every FPS frames).
 *   benchcam: what src/encode/h264.rs asks of its bundled openh264 (low complexity,
 *             bitrate rate control, one slice, no frame skipping, no adaptive quant,
 *             background or scene-change detection), with an IDR every FPS frames as the
 *             recorder's 1 s fragments force.
 *   paced:    takes frame i at start + i/FPS, as frames come from a camera (ffmpeg's -re).
 * The CPU this process and the muxing ffmpeg take is what the bench compares.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wels/codec_api.h>

int main(int argc, char **argv) {
    if (argc != 8 && !(argc == 9 && strcmp(argv[8], "paced") == 0)) {
        fprintf(stderr, "usage: %s FRAMES.yuv W H FPS COUNT BITRATE_BPS ffmpeg|benchcam [paced]\n", argv[0]);
        return 2;
    }
    /* paced: frame i is taken at start + i/FPS, as from a camera (ffmpeg's -re). */
    int paced = argc == 9;
    const char *path = argv[1];
    int w = atoi(argv[2]), h = atoi(argv[3]), fps = atoi(argv[4]), count = atoi(argv[5]);
    int bitrate = atoi(argv[6]);
    int like_benchcam = strcmp(argv[7], "benchcam") == 0;
    size_t frame_bytes = (size_t)w * h * 3 / 2;

    FILE *in = fopen(path, "rb");
    if (!in) {
        perror(path);
        return 1;
    }
    unsigned char *frames = malloc(frame_bytes * count);
    if (!frames || fread(frames, frame_bytes, count, in) != (size_t)count) {
        fprintf(stderr, "%s: could not read %d frames\n", path, count);
        return 1;
    }
    fclose(in);

    ISVCEncoder *enc = NULL;
    if (WelsCreateSVCEncoder(&enc) || !enc) {
        fprintf(stderr, "WelsCreateSVCEncoder failed\n");
        return 1;
    }
    int log_level = WELS_LOG_ERROR;
    (*enc)->SetOption(enc, ENCODER_OPTION_TRACE_LEVEL, &log_level);
    SEncParamExt p;
    memset(&p, 0, sizeof p);
    (*enc)->GetDefaultParams(enc, &p);
    p.fMaxFrameRate = (float)fps;
    p.iPicWidth = w;
    p.iPicHeight = h;
    p.iTargetBitrate = bitrate;
    p.iTemporalLayerNum = 1;
    p.iSpatialLayerNum = 1;
    p.bEnableDenoise = 0;
    p.bEnableLongTermReference = 0;
    p.iLtrMarkPeriod = 30;
    p.eSpsPpsIdStrategy = CONSTANT_ID;
    p.iMultipleThreadIdc = 1;
    p.iEntropyCodingModeFlag = 0;
    p.bEnableFrameSkip = 0;
    p.sSpatialLayers[0].iVideoWidth = w;
    p.sSpatialLayers[0].iVideoHeight = h;
    p.sSpatialLayers[0].fFrameRate = (float)fps;
    p.sSpatialLayers[0].iSpatialBitrate = bitrate;
    if (like_benchcam) {
        p.iUsageType = CAMERA_VIDEO_REAL_TIME;
        p.iRCMode = RC_BITRATE_MODE;
        p.iComplexityMode = LOW_COMPLEXITY;
        p.bEnableSceneChangeDetect = 0;
        p.bEnableAdaptiveQuant = 0;
        p.bEnableBackgroundDetection = 0;
        p.uiIntraPeriod = 0;
        p.iLoopFilterDisableIdc = 0;
        p.iMinQp = 0;
        p.iMaxQp = 51;
        p.sSpatialLayers[0].iMaxSpatialBitrate = bitrate;
        p.sSpatialLayers[0].sSliceArgument.uiSliceMode = SM_SINGLE_SLICE;
        p.sSpatialLayers[0].sSliceArgument.uiSliceNum = 1;
    } else {
        p.iMaxBitrate = bitrate;
        p.iRCMode = RC_QUALITY_MODE;
        p.bEnableBackgroundDetection = 1;
        p.bEnableAdaptiveQuant = 1;
        p.uiIntraPeriod = fps;
        p.bPrefixNalAddingCtrl = 0;
        p.iLoopFilterDisableIdc = 0;
        p.sSpatialLayers[0].iMaxSpatialBitrate = bitrate;
        p.sSpatialLayers[0].sSliceArgument.uiSliceMode = SM_FIXEDSLCNUM_SLICE;
        p.sSpatialLayers[0].sSliceArgument.uiSliceNum = 0;
        p.sSpatialLayers[0].uiVideoFormat = VF_UNDEF;
    }
    if ((*enc)->InitializeExt(enc, &p) != cmResultSuccess) {
        fprintf(stderr, "InitializeExt failed\n");
        return 1;
    }
    int format = videoFormatI420;
    (*enc)->SetOption(enc, ENCODER_OPTION_DATAFORMAT, &format);

    SSourcePicture pic;
    memset(&pic, 0, sizeof pic);
    pic.iPicWidth = w;
    pic.iPicHeight = h;
    pic.iColorFormat = videoFormatI420;
    pic.iStride[0] = w;
    pic.iStride[1] = pic.iStride[2] = w / 2;
    SFrameBSInfo info;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0; i < count; i++) {
        if (paced) {
            long long ns = start.tv_nsec + (long long)i * 1000000000LL / fps;
            struct timespec due = {start.tv_sec + ns / 1000000000LL, ns % 1000000000LL};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR) {
            }
        }
        unsigned char *f = frames + frame_bytes * i;
        pic.pData[0] = f;
        pic.pData[1] = f + (size_t)w * h;
        pic.pData[2] = f + (size_t)w * h * 5 / 4;
        pic.uiTimeStamp = (long long)i * 1000 / fps;
        if (like_benchcam && i % fps == 0)
            (*enc)->ForceIntraFrame(enc, 1);
        memset(&info, 0, sizeof info);
        if ((*enc)->EncodeFrame(enc, &pic, &info) != cmResultSuccess) {
            fprintf(stderr, "EncodeFrame failed at frame %d\n", i);
            return 1;
        }
        if (info.eFrameType == videoFrameTypeSkip)
            continue;
        for (int l = 0; l < info.iLayerNum; l++) {
            SLayerBSInfo *layer = &info.sLayerInfo[l];
            int bytes = 0;
            for (int n = 0; n < layer->iNalCount; n++)
                bytes += layer->pNalLengthInByte[n];
            fwrite(layer->pBsBuf, 1, bytes, stdout);
        }
    }
    (*enc)->Uninitialize(enc);
    WelsDestroySVCEncoder(enc);
    free(frames);
    return fflush(stdout) == 0 ? 0 : 1;
}
