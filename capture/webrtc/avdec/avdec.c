// avdec.c: see avdec.h.

#include "avdec.h"

#include <errno.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/mem.h>
#include <libavutil/pixdesc.h>
#include <libavutil/pixfmt.h>
#include <libswscale/swscale.h>

// The scaler only converts colour (source and destination sizes are equal),
// so the algorithm does not change the output: libswscale takes its unscaled
// YUV-to-RGB path for all of them. SWS_ACCURATE_RND and SWS_BITEXACT stay off:
// they force slower, more exact paths. Overridable for measurements
// (CGO_CFLAGS=-DAVDEC_SWS_FLAGS=...).
#ifndef AVDEC_SWS_FLAGS
#define AVDEC_SWS_FLAGS SWS_BILINEAR
#endif

// AVDEC_SLACK is the room left after each scratch row: more than any SIMD
// converter writes past a row's end.
#define AVDEC_SLACK 256

// conv is a swscale context and the colour details applied to it.
typedef struct {
	struct SwsContext *sws;
	struct SwsContext *tuned; // the context the details were applied to
	int cs, range;
} conv;

struct avdec {
	const AVCodec *codec;
	int threads;
	int64_t max_pixels; // 0: libavcodec's own limit
	AVCodecContext *ctx; // NULL after avdec_reset until the next decode
	AVPacket *pkt;
	AVFrame *frame; // the last picture received
	AVFrame *tmp;   // receives pictures before they replace frame
	conv top, bottom;      // converters for all but the last rows, and for those
	uint8_t *scratch;      // the last rows in BGR, AVDEC_SLACK bytes after each
	unsigned scratch_size; // av_fast_malloc's
};

// open_codec allocates and opens d->ctx for d->codec.
static int open_codec(avdec *d) {
	d->ctx = avcodec_alloc_context3(d->codec);
	if (!d->ctx) {
		return AVERROR(ENOMEM);
	}
	d->ctx->thread_count = d->threads;
	if (d->max_pixels > 0) {
		// libavcodec refuses (EINVAL) a picture larger than this before
		// allocating it.
		d->ctx->max_pixels = d->max_pixels;
	}
	// Slice threads only: frame threading delays every picture by one frame
	// per extra thread.
	d->ctx->thread_type = FF_THREAD_SLICE;
	if (d->codec->id == AV_CODEC_ID_H264) {
		// Output each picture as soon as it is decoded, without waiting
		// to reorder (WebRTC's profiles have no B-frames).
		d->ctx->flags |= AV_CODEC_FLAG_LOW_DELAY;
	}
	int err = avcodec_open2(d->ctx, d->codec, NULL);
	if (err < 0) {
		avcodec_free_context(&d->ctx);
	}
	return err;
}

avdec_open_result avdec_open(int codec, int threads) {
	avdec_open_result r = {NULL, 0};
	enum AVCodecID id;
	switch (codec) {
	case AVDEC_H264: id = AV_CODEC_ID_H264; break;
	case AVDEC_VP8: id = AV_CODEC_ID_VP8; break;
	default: r.err = AVERROR(EINVAL); return r;
	}
	const AVCodec *c = avcodec_find_decoder(id);
	if (!c) {
		r.err = AVERROR_DECODER_NOT_FOUND;
		return r;
	}
	avdec *d = av_mallocz(sizeof *d);
	if (!d) {
		r.err = AVERROR(ENOMEM);
		return r;
	}
	d->codec = c;
	d->threads = threads > 0 ? threads : 1;
	d->pkt = av_packet_alloc();
	d->frame = av_frame_alloc();
	d->tmp = av_frame_alloc();
	if (!d->pkt || !d->frame || !d->tmp) {
		avdec_close(d);
		r.err = AVERROR(ENOMEM);
		return r;
	}
	int err = open_codec(d);
	if (err < 0) {
		avdec_close(d);
		r.err = err;
		return r;
	}
	r.d = d;
	return r;
}

// drain receives every picture the decoder has ready, keeping the last in
// d->frame. It returns 1 if it received one, 0 if none, or an AVERROR code.
static int drain(avdec *d) {
	int got = 0;
	for (;;) {
		int err = avcodec_receive_frame(d->ctx, d->tmp);
		if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) {
			return got;
		}
		if (err < 0) {
			return err;
		}
		av_frame_unref(d->frame);
		av_frame_move_ref(d->frame, d->tmp);
		got = 1;
	}
}

static int is_key(const AVFrame *f) {
#ifdef AV_FRAME_FLAG_KEY
	return (f->flags & AV_FRAME_FLAG_KEY) != 0;
#else
	return f->key_frame != 0;
#endif
}

avdec_result avdec_decode(avdec *d, const uint8_t *data, int size) {
	avdec_result r;
	memset(&r, 0, sizeof r);
	if (!d->ctx) {
		int err = open_codec(d);
		if (err < 0) {
			r.err = err;
			return r;
		}
	}
	// av_new_packet allocates size + AV_INPUT_BUFFER_PADDING_SIZE bytes
	// (av_malloc, reference counted) and zeroes the padding.
	int err = av_new_packet(d->pkt, size);
	if (err < 0) {
		r.err = err;
		return r;
	}
	memcpy(d->pkt->data, data, (size_t)size);
	err = avcodec_send_packet(d->ctx, d->pkt);
	if (err == AVERROR(EAGAIN)) {
		// Not expected (every call drains), but if pictures are pending,
		// take them and send again.
		int got = drain(d);
		if (got < 0) {
			av_packet_unref(d->pkt);
			r.err = got;
			return r;
		}
		err = avcodec_send_packet(d->ctx, d->pkt);
	}
	av_packet_unref(d->pkt);
	if (err < 0) {
		r.err = err;
		r.width = d->ctx->width; // as the stream announced it
		r.height = d->ctx->height;
		return r;
	}
	int got = drain(d);
	if (got < 0) {
		r.err = got;
		r.width = d->ctx->width; // as the stream announced it
		r.height = d->ctx->height;
		return r;
	}
	if (got) {
		AVFrame *f = d->frame;
		r.got = 1;
		r.width = f->width;
		r.height = f->height;
		r.key = is_key(f);
		r.corrupt = f->decode_error_flags != 0 || (f->flags & AV_FRAME_FLAG_CORRUPT) != 0;
	}
	return r;
}

void avdec_reset(avdec *d) {
	avcodec_free_context(&d->ctx);
	av_frame_unref(d->frame);
	av_frame_unref(d->tmp);
}

// unjpeg maps the deprecated full-range YUVJ formats to their plain twins
// (the range is then set explicitly), setting *full.
static enum AVPixelFormat unjpeg(enum AVPixelFormat f, int *full) {
	switch (f) {
	case AV_PIX_FMT_YUVJ420P: *full = 1; return AV_PIX_FMT_YUV420P;
	case AV_PIX_FMT_YUVJ422P: *full = 1; return AV_PIX_FMT_YUV422P;
	case AV_PIX_FMT_YUVJ444P: *full = 1; return AV_PIX_FMT_YUV444P;
	case AV_PIX_FMT_YUVJ440P: *full = 1; return AV_PIX_FMT_YUV440P;
	case AV_PIX_FMT_YUVJ411P: *full = 1; return AV_PIX_FMT_YUV411P;
	default: return f;
	}
}

// coefficients picks libswscale's YUV matrix for a frame's colour space
// (the SWS_CS_* values are the AVCOL_SPC_* ones); unspecified means BT.601,
// as OpenCV and most decoders assume.
static int coefficients(enum AVColorSpace cs) {
	switch (cs) {
	case AVCOL_SPC_BT709:
	case AVCOL_SPC_FCC:
	case AVCOL_SPC_BT470BG:
	case AVCOL_SPC_SMPTE170M:
	case AVCOL_SPC_SMPTE240M:
	case AVCOL_SPC_BT2020_NCL:
	case AVCOL_SPC_BT2020_CL:
		return (int)cs;
	default:
		return SWS_CS_DEFAULT;
	}
}

// convert converts rows rows of f from row y0 on, as an image of their own,
// to BGR24 at dst with c. fmt and full are f's format and range (unjpeg),
// cs its matrix (coefficients).
static int convert(conv *c, const AVFrame *f, enum AVPixelFormat fmt, int full, int cs,
                   int y0, int rows, uint8_t *dst, int stride) {
	c->sws = sws_getCachedContext(c->sws, f->width, rows, fmt, f->width, rows,
	                              AV_PIX_FMT_BGR24, AVDEC_SWS_FLAGS, NULL, NULL, NULL);
	if (!c->sws) {
		return AVERROR(ENOSYS); // a pixel format libswscale cannot convert
	}
	if (c->tuned != c->sws) { // a new context starts at BT.601, limited range
		c->tuned = c->sws;
		c->cs = SWS_CS_DEFAULT;
		c->range = 0;
	}
	if (cs != c->cs || full != c->range) {
		// Fails (-1) for non-YUV sources, which have no matrix: harmless.
		sws_setColorspaceDetails(c->sws, sws_getCoefficients(cs), full,
		                         sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
		c->cs = cs;
		c->range = full;
	}
	const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(fmt);
	const uint8_t *src[4];
	for (int i = 0; i < 4; i++) {
		src[i] = f->data[i];
		if (src[i] && y0) {
			int shift = (i == 1 || i == 2) ? desc->log2_chroma_h : 0;
			src[i] += (ptrdiff_t)(y0 >> shift) * f->linesize[i];
		}
	}
	uint8_t *planes[4] = {dst, NULL, NULL, NULL};
	int strides[4] = {stride, 0, 0, 0};
	int h = sws_scale(c->sws, src, f->linesize, 0, rows, planes, strides);
	if (h != rows) {
		return h < 0 ? h : AVERROR_EXTERNAL;
	}
	return 0;
}

int avdec_convert(avdec *d, uint8_t *dst, int stride) {
	AVFrame *f = d->frame;
	if (!f->data[0] || !dst || stride < 3 * f->width) {
		return AVERROR(EINVAL);
	}
	int full = f->color_range == AVCOL_RANGE_JPEG;
	enum AVPixelFormat fmt = unjpeg((enum AVPixelFormat)f->format, &full);
	const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(fmt);
	if (!desc || (desc->flags & AV_PIX_FMT_FLAG_PAL)) {
		return AVERROR(ENOSYS);
	}
	int cs = coefficients(f->colorspace);
	int w = f->width, h = f->height, row = 3 * w;
	// libswscale's SIMD converters write whole groups of pixels (8 in
	// FFmpeg 5.1), so unless the width is a multiple of the group they
	// write past the end of each row: harmless within the picture (the
	// next row overwrites it) but past the end of dst on the last row. So
	// the top of the picture goes straight to dst and its last few rows,
	// from a chroma row on, go through scratch rows with room to spare.
	int top = (h - 2) & ~((1 << desc->log2_chroma_h) - 1);
	if (row < AVDEC_SLACK || top < 0) {
		top = 0; // small pictures go through scratch entirely
	}
	int rows = h - top, sstride = row + AVDEC_SLACK;
	av_fast_malloc(&d->scratch, &d->scratch_size, (size_t)rows * sstride + AVDEC_SLACK);
	if (!d->scratch) {
		return AVERROR(ENOMEM);
	}
	int err;
	if (top > 0 && (err = convert(&d->top, f, fmt, full, cs, 0, top, dst, stride)) < 0) {
		return err;
	}
	if ((err = convert(&d->bottom, f, fmt, full, cs, top, rows, d->scratch, sstride)) < 0) {
		return err;
	}
	for (int y = 0; y < rows; y++) {
		memcpy(dst + (ptrdiff_t)(top + y) * stride, d->scratch + (ptrdiff_t)y * sstride, (size_t)row);
	}
	return 0;
}

void avdec_close(avdec *d) {
	if (!d) {
		return;
	}
	avcodec_free_context(&d->ctx);
	av_packet_free(&d->pkt);
	av_frame_free(&d->frame);
	av_frame_free(&d->tmp);
	sws_freeContext(d->top.sws);
	sws_freeContext(d->bottom.sws);
	av_free(d->scratch);
	av_free(d);
}

void avdec_strerror(int err, char *buf, size_t size) {
	// For an unknown code av_strerror still writes "Error number N occurred".
	av_strerror(err, buf, size);
}

int avdec_enomem(void) { return AVERROR(ENOMEM); }

void avdec_set_max_pixels(avdec *d, int64_t n) {
	d->max_pixels = n;
	if (d->ctx && n > 0) {
		d->ctx->max_pixels = n;
	}
}
